package consensus

import (
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/clock"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Command timestamps (Config.Timestamps).
//
// The leader stamps each command as it appends it to its log, with a
// reading of its hybrid logical clock: local proposals just before they are
// handed to raft, and proposals forwarded by followers as they arrive (a
// follower's raft forwards them unstamped). Every member raises its clock
// to the timestamps of the entries it appends and of the snapshots it
// restores, and at start to those in its stored log, so a new leader's
// clock is above every timestamp in its log: timestamps increase strictly
// in log order, across leader changes and restarts.
//
// The policy towards a clock off by more than MaxClockOffset, after
// CockroachDB's max-offset enforcement:
//
//   - A leader whose physical clock is behind its hybrid clock (the
//     group's replicated time) by more than MaxClockOffset refuses to
//     stamp: its local proposals fail with ErrDropped wrapping
//     ErrClockOffset, forwarded ones wait for the next leader, and it
//     hands leadership to its most up-to-date follower. Replicated time
//     never stands still behind a slow leader.
//   - A follower refuses entries its leader stamped in the current term
//     more than MaxClockOffset ahead of the follower's physical clock, and
//     ignores that leader for the rest of its term: it does not append,
//     acknowledge or count its heartbeats, so it campaigns after an
//     election timeout. A leader whose clock runs ahead of a majority
//     cannot commit a timestamp, and is replaced.
//
// Both cases are logged and reported as EventClockOffset. A timestamp that
// commits was thus accepted by a majority whose clocks were at most
// MaxClockOffset behind it.

// errSnapshotPending refuses stamping until a received snapshot, whose
// timestamp floors the clock, is restored.
var errSnapshotPending = errors.New("consensus: a received snapshot is not restored yet")

// stamper is the state of command timestamps (raft goroutine only, except
// hlc, which is safe for concurrent use).
type stamper struct {
	hlc       *clock.HLC // nil: Timestamps off
	maxOffset int64      // nanoseconds
	// refusedTerm is the last term in which this member, as leader,
	// refused to stamp (reported once per term).
	refusedTerm uint64
	// distrustLead and distrustTerm name a leader whose timestamps ran
	// ahead of this member's clock, ignored until the term changes.
	distrustLead, distrustTerm uint64
}

// physNow returns the physical time used for timestamps.
func (n *Node) physNow() int64 { return n.cfg.Clock.Now().UnixNano() }

// initStamps creates the hybrid clock, floored at every timestamp in the
// restored snapshot and the stored log.
func (n *Node) initStamps(ap *applyState) error {
	if !n.cfg.Timestamps {
		return nil
	}
	n.ts.maxOffset = int64(n.cfg.MaxClockOffset)
	n.ts.hlc = clock.NewHLC(clock.WithPhysicalClock(n.physNow), clock.WithFloor(ap.rs.ts))
	first, err := n.logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("consensus: read log: %w", err)
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("consensus: read log: %w", err)
	}
	for lo := first; lo <= last; {
		ents, err := n.logs.Entries(lo, last+1, n.cfg.MaxMsgBytes)
		if err != nil {
			return fmt.Errorf("consensus: read log: %w", err)
		}
		if len(ents) == 0 {
			break
		}
		n.observeStamps(ents)
		lo = ents[len(ents)-1].GetIndex() + 1
	}
	return nil
}

// entryStamp returns the timestamp of a stamped command entry.
func entryStamp(e *raftpb.Entry) (clock.Timestamp, bool) {
	if e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
		return clock.Timestamp{}, false
	}
	h, _, err := decodeEntry(e.GetData())
	if err != nil || h.kind != entryCommand || h.ts.IsZero() {
		return clock.Timestamp{}, false
	}
	return h.ts, true
}

// observeStamps raises the clock to the timestamps of entries entering the
// log.
func (n *Node) observeStamps(ents []*raftpb.Entry) {
	if n.ts.hlc == nil {
		return
	}
	for _, e := range ents {
		if ts, ok := entryStamp(e); ok {
			n.observeStamp(ts)
		}
	}
}

// observeStamp raises the clock to ts (concurrency-safe: the apply loop
// calls it for restored snapshots).
func (n *Node) observeStamp(ts clock.Timestamp) {
	if n.ts.hlc == nil || ts.IsZero() {
		return
	}
	_, _ = n.ts.hlc.Update(ts) // the clock has no offset bound: never fails
}

// stampEntries stamps the command entries of a proposal about to be
// appended by this member as leader. It does nothing on a follower (raft
// forwards the entries, and the leader stamps them). It fails, stamping
// nothing, when this member must not stamp: see the policy above.
func (n *Node) stampEntries(ents []*raftpb.Entry) error {
	if n.ts.hlc == nil {
		return nil
	}
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	if err := n.mayStamp(st.HardState.GetTerm()); err != nil {
		return err
	}
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			continue
		}
		h, body, err := decodeEntry(e.GetData())
		if err != nil || h.kind != entryCommand {
			continue // not ours: appended as it is
		}
		h.ts = n.ts.hlc.Now()
		e.Data = encodeEntry(h, body)
	}
	return nil
}

// mayStamp checks that this leader's physical clock is not behind the
// replicated time by more than the bound, and that every restored
// snapshot has been applied (its timestamp is the clock's floor). When the
// clock is behind, it reports once per term and hands over leadership.
func (n *Node) mayStamp(term uint64) error {
	if snapIdx, err := n.logs.FirstIndex(); err == nil && n.applied.Load() < snapIdx-1 {
		return errSnapshotPending
	}
	phys := n.physNow()
	last := n.ts.hlc.Last()
	behind := last.Wall - phys
	if behind <= n.ts.maxOffset {
		return nil
	}
	err := fmt.Errorf("%w: physical clock %v behind the replicated time %v (max %v)",
		ErrClockOffset, time.Duration(behind), last, time.Duration(n.ts.maxOffset))
	if n.ts.refusedTerm != term {
		n.ts.refusedTerm = term
		n.log.Error("consensus: refusing to stamp commands: stepping down", "err", err)
		n.emit(Event{Kind: EventClockOffset, Term: term, Err: err})
		n.handOver()
	}
	return err
}

// handOver transfers leadership to the voter whose log is most up to date.
func (n *Node) handOver() {
	st := n.rn.Status()
	var best, match uint64
	for id, pr := range st.Progress {
		if id == n.id || pr.IsLearner {
			continue
		}
		if best == 0 || pr.Match > match {
			best, match = id, pr.Match
		}
	}
	if best != 0 {
		n.rn.TransferLeader(best)
	}
}

// admitStamps vets a message from the network for timestamps. A leader
// stamps the proposals forwarded to it (refusing them, for the forwarder to
// resend, when it must not stamp). A follower refuses an append whose
// entries of the leader's current term are stamped more than the bound
// ahead of its physical clock, and from then on ignores that leader's
// appends and heartbeats for the rest of its term. It reports whether the
// message should be stepped.
func (n *Node) admitStamps(m *raftpb.Message) bool {
	if n.ts.hlc == nil {
		return true
	}
	switch m.GetType() {
	case raftpb.MsgProp:
		return n.stampEntries(m.Entries) == nil
	case raftpb.MsgApp, raftpb.MsgHeartbeat:
	default:
		return true
	}
	if m.GetFrom() == n.ts.distrustLead && m.GetTerm() == n.ts.distrustTerm {
		return false
	}
	if m.GetType() != raftpb.MsgApp {
		return true
	}
	phys := n.physNow()
	for _, e := range m.GetEntries() {
		if e.GetTerm() != m.GetTerm() {
			continue // stamped by an earlier leader, accepted by a majority then
		}
		ts, ok := entryStamp(e)
		if !ok || ts.Wall-phys <= n.ts.maxOffset {
			continue
		}
		n.ts.distrustLead, n.ts.distrustTerm = m.GetFrom(), m.GetTerm()
		err := fmt.Errorf("%w: leader %d stamped entry %d at %v, %v ahead of this member's clock (max %v)",
			ErrClockOffset, m.GetFrom(), e.GetIndex(), ts, time.Duration(ts.Wall-phys), time.Duration(n.ts.maxOffset))
		n.log.Error("consensus: refusing the leader's entries for the rest of its term", "leader", m.GetFrom(), "term", m.GetTerm(), "err", err)
		n.emit(Event{Kind: EventClockOffset, Peer: m.GetFrom(), Term: m.GetTerm(), Err: err})
		return false
	}
	return true
}

// dropStamped fails local proposals a leader refused to stamp: they were
// never appended.
func (n *Node) dropStamped(batch []*proposal, err error) {
	for _, p := range batch {
		n.dropProposal(p, err)
	}
}
