package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Every message from the network passes two sets of checks before raft's
// Step sees it. raft trusts its peers: a forged term is adopted and
// persisted (and one near the top of the range makes the next election
// overflow it), a heartbeat committing beyond the log or an append whose
// entries do not follow each other makes it panic. The checks below refuse
// such messages instead; refusals are counted (Stats.MessagesRefused),
// reported (EventMessageRefused) and logged, never persisted.
//
// decodeInbound runs on the transport's goroutine and needs nothing but
// the message: encoding, addressing, message type, term range and the
// internal consistency of appends, proposals and snapshots. checkInbound
// runs on the raft goroutine against this member's state: the sender's
// membership and incarnation, the term jump, and indexes against the log.

// inbound is a decoded message, the member that sent it and the
// incarnation that member claimed. The sender is m.From except for
// MsgTransferLeader, whose From names the member to hand leadership to.
type inbound struct {
	m      *raftpb.Message
	inc    uint64
	sender uint64
}

// errRefused wraps ErrRefused with a reason.
func errRefused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// fromPeers are the message types a peer may send through HandleMessages.
// The rest are local to a node (raft.IsLocalMsg), or, MsgSnap, only valid
// through HandleSnapshot, or, MsgForgetLeader, an instruction only this
// node's owner may give.
var fromPeers = map[raftpb.MessageType]bool{
	raftpb.MsgProp: true, raftpb.MsgApp: true, raftpb.MsgAppResp: true,
	raftpb.MsgVote: true, raftpb.MsgVoteResp: true, raftpb.MsgPreVote: true, raftpb.MsgPreVoteResp: true,
	raftpb.MsgHeartbeat: true, raftpb.MsgHeartbeatResp: true,
	raftpb.MsgTransferLeader: true, raftpb.MsgTimeoutNow: true,
	raftpb.MsgReadIndex: true, raftpb.MsgReadIndexResp: true,
}

// decodeEnvelopedMessage decodes a payload from the network: the envelope
// (which must name group) and raft's message.
func decodeEnvelopedMessage(group uint64, p []byte) (*raftpb.Message, uint64, error) {
	g, inc, body, err := decodeEnvelope(p)
	if err != nil {
		return nil, 0, err
	}
	if g != group {
		return nil, 0, errRefused("message of group %d, this is group %d", g, group)
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(body, m); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return m, inc, nil
}

// decodeInbound decodes and vets a message from the network (see above).
// An error wraps errMalformed or ErrRefused; with ErrRefused the message is
// returned too, for the report.
func decodeInbound(self, group uint64, wm Message) (inbound, error) {
	m, inc, err := decodeEnvelopedMessage(group, wm.Payload)
	if err != nil {
		return inbound{}, err
	}
	in := inbound{m: m, inc: inc, sender: wm.From}
	if m.GetType() == raftpb.MsgSnap {
		return in, errRefused("snapshot outside a snapshot stream")
	}
	if err := checkStatic(self, wm.From, m); err != nil {
		return in, err
	}
	return in, nil
}

// checkStatic checks what can be checked of a message without the node's
// state.
func checkStatic(self, from uint64, m *raftpb.Message) error {
	typ := m.GetType()
	switch {
	case m.GetTo() != self:
		return errRefused("%v addressed to %d, not this member", typ, m.GetTo())
	case from == 0 || from == self || raft.IsLocalMsgTarget(from) || m.GetFrom() == 0 || raft.IsLocalMsgTarget(m.GetFrom()) ||
		(m.GetFrom() != from && typ != raftpb.MsgTransferLeader):
		return errRefused("%v claims to be from %d, delivered from %d", typ, m.GetFrom(), from)
	case !fromPeers[typ] && typ != raftpb.MsgSnap:
		return errRefused("message type %v is not accepted from peers", typ)
	case len(m.GetResponses()) > 0:
		return errRefused("%v carries local responses", typ)
	case m.GetTerm() > MaxTerm:
		return errRefused("%v with term %d beyond MaxTerm", typ, m.GetTerm())
	}
	switch typ {
	case raftpb.MsgProp, raftpb.MsgReadIndex:
		// Forwarded to the leader without a term (raft treats them as
		// local); a term here would move the leader's.
		if m.GetTerm() != 0 {
			return errRefused("%v with term %d", typ, m.GetTerm())
		}
	default:
		// raft treats a message without a term as local: it would skip
		// every term check.
		if m.GetTerm() == 0 {
			return errRefused("%v without a term", typ)
		}
	}
	switch typ {
	case raftpb.MsgProp:
		if len(m.GetEntries()) == 0 {
			return errRefused("empty proposal") // raft panics on it
		}
		return checkEntries(m.GetEntries())
	case raftpb.MsgApp:
		return checkAppend(m)
	case raftpb.MsgSnap:
		return checkSnapshot(m)
	}
	return nil
}

// checkEntries checks that conf change entries decode (raft panics on a
// proposed one that does not, and the node stops on a committed one).
func checkEntries(ents []*raftpb.Entry) error {
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryNormal:
		case raftpb.EntryConfChange:
			if err := proto.Unmarshal(e.GetData(), &raftpb.ConfChange{}); err != nil {
				return errRefused("undecodable conf change: %v", err)
			}
		case raftpb.EntryConfChangeV2:
			if err := proto.Unmarshal(e.GetData(), &raftpb.ConfChangeV2{}); err != nil {
				return errRefused("undecodable conf change: %v", err)
			}
		default:
			return errRefused("entry type %v", e.GetType())
		}
	}
	return nil
}

// checkAppend checks that an append's entries follow its (Index, LogTerm)
// one by one, with terms that never decrease and never exceed the
// message's. raft assumes it: entries that skip or repeat an index make it
// panic ("conflict with committed entry", "out of range").
func checkAppend(m *raftpb.Message) error {
	ents := m.GetEntries()
	if m.GetLogTerm() > m.GetTerm() {
		return errRefused("MsgApp log term %d above its term %d", m.GetLogTerm(), m.GetTerm())
	}
	if m.GetIndex() > ^uint64(0)-uint64(len(ents))-1 {
		return errRefused("MsgApp index %d overflows", m.GetIndex())
	}
	prev := m.GetLogTerm()
	for i, e := range ents {
		if e.GetIndex() != m.GetIndex()+1+uint64(i) {
			return errRefused("MsgApp entry %d at index %d, want %d", i, e.GetIndex(), m.GetIndex()+1+uint64(i))
		}
		if e.GetTerm() < prev || e.GetTerm() > m.GetTerm() {
			return errRefused("MsgApp entry %d has term %d (previous %d, message %d)", e.GetIndex(), e.GetTerm(), prev, m.GetTerm())
		}
		prev = e.GetTerm()
	}
	return checkEntries(ents)
}

// checkSnapshot checks a snapshot header: raft panics restoring a
// configuration that is not valid.
func checkSnapshot(m *raftpb.Message) error {
	meta := m.GetSnapshot().GetMetadata()
	if raft.IsEmptySnap(m.GetSnapshot()) || meta.GetIndex() == 0 || meta.GetTerm() == 0 {
		return errRefused("empty snapshot")
	}
	if meta.GetTerm() > m.GetTerm() {
		return errRefused("snapshot term %d above message term %d", meta.GetTerm(), m.GetTerm())
	}
	if len(m.GetSnapshot().GetData()) > 0 {
		return errRefused("snapshot header carries data")
	}
	return validConfState(meta.GetConfState(), meta.GetIndex())
}

// validConfState reports whether raft can restore cs.
func validConfState(cs *raftpb.ConfState, index uint64) (err error) {
	for _, set := range [][]uint64{cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing(), cs.GetLearnersNext()} {
		for _, id := range set {
			if id == 0 || raft.IsLocalMsgTarget(id) {
				return errRefused("configuration names member %d", id)
			}
		}
	}
	if len(cs.GetVoters()) == 0 {
		return errRefused("configuration without voters")
	}
	defer func() {
		if r := recover(); r != nil {
			err = errRefused("invalid configuration %v: %v", cs, r)
		}
	}()
	chg := confchange.Changer{Tracker: tracker.MakeProgressTracker(1, 0), LastIndex: index}
	cfg, prs, err := confchange.Restore(chg, cs)
	if err != nil {
		return errRefused("invalid configuration %v: %v", cs, err)
	}
	// raft panics unless the configuration it ends up with is the one it
	// was given (an id both voter and learner, say, is not).
	trk := tracker.MakeProgressTracker(1, 0)
	trk.Config, trk.Progress = cfg, prs
	if err := cs.Equivalent(trk.ConfState()); err != nil {
		return errRefused("inconsistent configuration %v", cs)
	}
	return nil
}

// isLeaderMsg reports whether a message type is one only a leader sends.
func isLeaderMsg(t raftpb.MessageType) bool {
	return t == raftpb.MsgApp || t == raftpb.MsgHeartbeat || t == raftpb.MsgSnap
}

// checkInbound checks a decoded message against this member's state (raft
// goroutine). It returns a refusal, or an error wrapping ErrDataLoss when
// the message proves this member lost entries it acknowledged.
func (n *Node) checkInbound(in inbound) error {
	m := in.m
	from, typ := in.sender, m.GetType()
	if want, ok := n.incarnations()[from]; ok && want != in.inc {
		return fmt.Errorf("%w: %w: member %d sent incarnation %d, the group knows it as %d: "+
			"it restarted with empty or replaced state; remove member %d and add it back under a new id",
			ErrRefused, ErrMemberLostState, from, in.inc, want, from)
	}
	st := n.rn.BasicStatus()
	_, member := n.addrs[from]
	if _, gone := n.removedPeers[from]; gone {
		member = true // answered with its commit index (farewellAck)
	}
	if !member {
		// A member this one does not know yet may lead a group it lags
		// behind (it joined while this one was away) or is joining: accept
		// what a leader sends when this member follows no one, or follows
		// that sender already.
		if !isLeaderMsg(typ) || (st.Lead != 0 && st.Lead != from) {
			return errRefused("%v from %d, which is not a member", typ, from)
		}
	}
	local := st.HardState.GetTerm()
	if local > 0 && m.GetTerm() > local && m.GetTerm()-local > n.cfg.MaxTermJump {
		return errRefused("%v from %d jumps from term %d to %d (Config.MaxTermJump %d)", typ, from, local, m.GetTerm(), n.cfg.MaxTermJump)
	}
	if isLeaderMsg(typ) && m.GetTerm() == local && st.Lead != 0 && from != st.Lead {
		// One leader per term: raft would follow whoever sent it.
		return errRefused("%v from %d, but %d leads term %d", typ, from, st.Lead, local)
	}
	switch typ {
	case raftpb.MsgVote, raftpb.MsgPreVote:
		if n.lastIdx == 0 {
			// An empty log is a new member's or one that lost its state;
			// either way it has no vote to give (it may have given it
			// before it lost its state).
			return errRefused("%v from %d: this member has no state and does not vote", typ, from)
		}
	case raftpb.MsgTransferLeader:
		// Only a leader takes it; a follower would forward it with its
		// term set, which raft refuses with a panic.
		if st.RaftState != raft.StateLeader {
			return errRefused("MsgTransferLeader from %d to a member that does not lead", from)
		}
	case raftpb.MsgTimeoutNow:
		if from != st.Lead || m.GetTerm() != local {
			return errRefused("MsgTimeoutNow from %d, which is not the leader", from)
		}
	case raftpb.MsgProp:
		for _, e := range m.GetEntries() {
			if h, body, err := decodeEntry(e.GetData()); err == nil && h.kind == entryIncarnation {
				if id, inc, err := decodeIncarnationBody(body); err != nil || id != from || inc != in.inc {
					return errRefused("member %d announces an incarnation that is not its own", from)
				}
			}
		}
	case raftpb.MsgAppResp:
		if !m.GetReject() && st.RaftState == raft.StateLeader && m.GetIndex() > n.lastIdx {
			return errRefused("member %d acknowledges index %d beyond the log (%d)", from, m.GetIndex(), n.lastIdx)
		}
	case raftpb.MsgHeartbeat:
		if m.GetCommit() > n.lastIdx && !member {
			// Only a member's word is taken for it (a stranger could stop
			// this member otherwise); a member that lost its state knows
			// no members and sits refused by the group.
			return errRefused("heartbeat from %d, not a member here, commits to %d beyond this log (%d): "+
				"if %d leads the group, this member lost its state", from, m.GetCommit(), n.lastIdx, from)
		}
		if m.GetTerm() >= local && m.GetCommit() > n.lastIdx {
			// A leader sends a commit index no higher than what this
			// member acknowledged as durable, so this member's log once
			// reached it.
			return fmt.Errorf("%w: %w: leader %d (term %d) counts this member's log as reaching index %d, but it ends at %d: "+
				"the data directory is an older copy or was truncated; remove member %d and add it back under a new id with an empty directory",
				ErrDataLoss, ErrCorrupt, from, m.GetTerm(), m.GetCommit(), n.lastIdx, n.id)
		}
	}
	return nil
}

// refused reports a refused message: counted, an event, a log line (at
// most a few per second; the rest are counted in the next line).
func (n *Node) refused(from, term uint64, err error) {
	n.stats.msgsRefused.Add(1)
	if errors.Is(err, errMalformed) {
		n.stats.msgsBad.Add(1)
		err = fmt.Errorf("%w: %w", ErrRefused, err)
	}
	n.emit(Event{Kind: EventMessageRefused, Peer: from, Term: term, Err: err})
	now := time.Now().UnixNano()
	next := n.refuseLogAt.Load()
	if now < next || !n.refuseLogAt.CompareAndSwap(next, now+int64(refuseLogEvery)) {
		n.refuseQuiet.Add(1)
		return
	}
	level := slog.LevelWarn
	if errors.Is(err, ErrMemberLostState) {
		level = slog.LevelError
	}
	n.log.Log(context.Background(), level, "consensus: refused a message", "from", from, "term", term, "err", err,
		"suppressed", n.refuseQuiet.Swap(0))
}

// refuseLogEvery spaces log lines about refused messages.
const refuseLogEvery = 100 * time.Millisecond
