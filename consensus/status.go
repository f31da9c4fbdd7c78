package consensus

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
)

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// Role is a member's raft role.
type Role int

// Roles.
const (
	RoleFollower Role = iota
	RoleCandidate
	RoleLeader
	RolePreCandidate
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	case RolePreCandidate:
		return "pre-candidate"
	}
	return "unknown"
}

func roleOf(s raft.StateType) Role {
	switch s {
	case raft.StateCandidate:
		return RoleCandidate
	case raft.StateLeader:
		return RoleLeader
	case raft.StatePreCandidate:
		return RolePreCandidate
	}
	return RoleFollower
}

// PeerProgress is the leader's view of one member's replication.
type PeerProgress struct {
	Match   uint64 // highest index known replicated there
	Next    uint64 // next index to send
	State   string // "probe", "replicate" or "snapshot"
	Lag     uint64 // entries behind the leader's last index
	Learner bool
	Active  bool // heard from within the last election timeout
}

// Status is a point-in-time view of a member.
type Status struct {
	ID       uint64
	Role     Role
	Term     uint64
	Leader   uint64 // 0 if unknown
	Commit   uint64 // highest committed index known here
	Applied  uint64 // highest index applied to the state machine here
	Members  []Member
	Progress map[uint64]PeerProgress // only on the leader
	Removed  bool
	Stats    Stats
	// Vote is the member this member voted for in Term (0 if none).
	Vote uint64
	// Incarnation is this member's incarnation: a random number created
	// with its state (see Config.GroupID and doc "Faults and hostile peers").
	Incarnation uint64
	// Incarnations maps each member id to the incarnation the group
	// recorded for it, as applied here.
	Incarnations map[uint64]uint64
}

// Stats are cumulative counters since Start.
type Stats struct {
	Proposals            uint64 // commands handed to raft
	ProposalBatches      uint64 // proposal batches handed to raft
	Dropped              uint64 // proposals that failed with ErrDropped
	Unknown              uint64 // proposals that ended with ErrUnknownOutcome
	Busy                 uint64 // proposals refused with ErrBusy
	Resubmitted          uint64 // forwarded proposals sent again after a leader change or loss
	Applied              uint64 // commands applied to the state machine
	ApplyBatches         uint64 // StateMachine.Apply calls
	Syncs                uint64 // durable log writes
	SyncedEntries        uint64 // entries written by them
	SyncTotal            time.Duration
	SyncMax              time.Duration
	Reads                uint64 // ReadIndex calls answered
	ReadRounds           uint64 // ReadIndex rounds issued to raft
	MessagesSent         uint64
	MessagesReceived     uint64
	MessagesDropped      uint64 // inbound messages dropped under overload
	MessagesRejected     uint64 // inbound messages that failed to decode (also counted in MessagesRefused)
	MessagesRefused      uint64 // inbound messages refused before reaching raft (EventMessageRefused)
	LeaderChanges        uint64
	ConfChanges          uint64
	SnapshotsTaken       uint64
	SnapshotsSent        uint64
	SnapshotSendFailures uint64
	SnapshotsReceived    uint64
	EventsDropped        uint64
}

type counters struct {
	proposals, proposalBatches, dropped, unknown, busy    atomic.Uint64
	resubmitted                                           atomic.Uint64
	applied, applyBatches, syncs, syncedEntries           atomic.Uint64
	syncNanos, syncMaxNanos                               atomic.Int64
	reads, readRounds                                     atomic.Uint64
	msgsSent, msgsRecv, msgsDropped, msgsBad, msgsRefused atomic.Uint64
	leaderChanges, confChanges                            atomic.Uint64
	snapshotsTaken, snapshotsSent, snapshotSendFailures   atomic.Uint64
	snapshotsReceived, eventsDropped                      atomic.Uint64
}

func (c *counters) observeSync(d time.Duration, entries int) {
	c.syncs.Add(1)
	c.syncedEntries.Add(uint64(entries))
	c.syncNanos.Add(int64(d))
	for {
		old := c.syncMaxNanos.Load()
		if int64(d) <= old || c.syncMaxNanos.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		Proposals: c.proposals.Load(), ProposalBatches: c.proposalBatches.Load(),
		Dropped: c.dropped.Load(), Unknown: c.unknown.Load(), Busy: c.busy.Load(),
		Resubmitted: c.resubmitted.Load(),
		Applied:     c.applied.Load(), ApplyBatches: c.applyBatches.Load(),
		Syncs: c.syncs.Load(), SyncedEntries: c.syncedEntries.Load(),
		SyncTotal: time.Duration(c.syncNanos.Load()), SyncMax: time.Duration(c.syncMaxNanos.Load()),
		Reads: c.reads.Load(), ReadRounds: c.readRounds.Load(),
		MessagesSent: c.msgsSent.Load(), MessagesReceived: c.msgsRecv.Load(),
		MessagesDropped: c.msgsDropped.Load(), MessagesRejected: c.msgsBad.Load(),
		MessagesRefused: c.msgsRefused.Load(),
		LeaderChanges:   c.leaderChanges.Load(), ConfChanges: c.confChanges.Load(),
		SnapshotsTaken: c.snapshotsTaken.Load(), SnapshotsSent: c.snapshotsSent.Load(),
		SnapshotSendFailures: c.snapshotSendFailures.Load(), SnapshotsReceived: c.snapshotsReceived.Load(),
		EventsDropped: c.eventsDropped.Load(),
	}
}

// Leader returns the leader this member knows of, and whether it knows one.
func (n *Node) Leader() (uint64, bool) {
	l := n.leaderID()
	return l, l != 0
}

// ID returns this member's id.
func (n *Node) ID() uint64 { return n.id }

// Status returns a view of the member. Per-peer progress is filled in on
// the leader. On a stopped node it returns the last known basic state.
func (n *Node) Status() Status {
	n.stateMu.Lock()
	st := Status{
		ID: n.id, Role: roleOf(n.role), Term: n.term, Leader: n.leader, Commit: n.commit, Vote: n.vote,
	}
	n.stateMu.Unlock()
	st.Members = n.Members()
	st.Applied = n.applied.Load()
	st.Removed = n.removed.Load()
	st.Stats = n.Stats()
	st.Incarnation = n.inc
	st.Incarnations = maps.Clone(n.incarnations())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// The raft goroutine fills a copy: if the node stops while it runs, do
	// returns before it finishes, and st must not be shared.
	var mu sync.Mutex
	var fresh *Status
	_ = n.do(ctx, func() {
		rs := n.rn.Status()
		f := Status{
			Role: roleOf(rs.RaftState), Term: rs.HardState.GetTerm(), Leader: rs.Lead,
			Commit: rs.HardState.GetCommit(), Vote: rs.HardState.GetVote(),
		}
		if rs.RaftState == raft.StateLeader {
			last, _ := n.logs.LastIndex()
			f.Progress = make(map[uint64]PeerProgress, len(rs.Progress))
			for id, pr := range rs.Progress {
				p := PeerProgress{Match: pr.Match, Next: pr.Next, State: pr.State.String(), Learner: pr.IsLearner, Active: pr.RecentActive}
				if last > pr.Match {
					p.Lag = last - pr.Match
				}
				f.Progress[id] = p
			}
		}
		mu.Lock()
		fresh = &f
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	if fresh != nil {
		st.Role, st.Term, st.Leader, st.Commit, st.Vote = fresh.Role, fresh.Term, fresh.Leader, fresh.Commit, fresh.Vote
		st.Progress = fresh.Progress
	}
	return st
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventLeaderChanged     EventKind = iota + 1 // Leader, Term
	EventApplied                                // Index: the new applied index
	EventMembershipChanged                      // Index, Members
	EventSnapshotTaken                          // Index
	EventSnapshotSent                           // Index, Peer
	EventSnapshotReceived                       // Index, Peer
	EventSnapshotRestored                       // Index
	EventFailed                                 // Err
	// EventMessageRefused reports an inbound message refused before it
	// reached raft: Peer (the sender it claims), Term (the term it
	// carries) and Err (wrapping ErrRefused, and ErrMemberLostState for a
	// member that lost its state).
	EventMessageRefused
	// EventClockOffset reports a clock beyond Config.MaxClockOffset: this
	// member's, when as leader it refused to stamp (Peer 0), or the
	// leader Peer's, whose timestamps this member refused (Term). Err
	// wraps ErrClockOffset.
	EventClockOffset
)

func (k EventKind) String() string {
	switch k {
	case EventLeaderChanged:
		return "leader-changed"
	case EventApplied:
		return "applied"
	case EventMembershipChanged:
		return "membership-changed"
	case EventSnapshotTaken:
		return "snapshot-taken"
	case EventSnapshotSent:
		return "snapshot-sent"
	case EventSnapshotReceived:
		return "snapshot-received"
	case EventSnapshotRestored:
		return "snapshot-restored"
	case EventFailed:
		return "failed"
	case EventMessageRefused:
		return "message-refused"
	case EventClockOffset:
		return "clock-offset"
	}
	return "unknown"
}

// Event is a notification delivered to Config.OnEvent.
type Event struct {
	Kind    EventKind
	Leader  uint64
	Term    uint64
	Index   uint64
	Peer    uint64
	Members []Member
	Err     error
}

func (n *Node) emit(e Event) {
	if n.cfg.OnEvent == nil {
		return
	}
	select {
	case n.events <- e:
	default:
		n.stats.eventsDropped.Add(1)
	}
}

func (n *Node) runEvents() {
	defer n.wg.Done()
	for {
		select {
		case e := <-n.events:
			if n.cfg.OnEvent != nil {
				n.cfg.OnEvent(e)
			}
		case <-n.stopC:
			return
		}
	}
}
