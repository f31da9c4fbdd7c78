package consensus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Members returns the group's members as of this member's last applied
// membership change, sorted by id.
func (n *Node) Members() []Member {
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	ms := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		ms = append(ms, m)
	}
	sortMembers(ms)
	return ms
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// membershipView is the applied configuration in a form the checks below use.
type membershipView struct {
	voters, learners map[uint64]bool
	joint            bool
}

func (n *Node) view() membershipView {
	n.stateMu.Lock()
	cs := n.confState
	n.stateMu.Unlock()
	v := membershipView{voters: map[uint64]bool{}, learners: map[uint64]bool{}}
	for _, id := range cs.GetVoters() {
		v.voters[id] = true
	}
	for _, id := range cs.GetLearners() {
		v.learners[id] = true
	}
	v.joint = len(cs.GetVotersOutgoing()) > 0
	return v
}

// AddLearner adds a non-voting member that receives the log (a snapshot
// first, if it is far behind). Start the new member with no Bootstrap; it
// waits to be contacted. Returns when the change is applied on this member;
// nil if id already is a learner.
func (n *Node) AddLearner(ctx context.Context, id uint64, addr string) error {
	if id == 0 {
		return fmt.Errorf("consensus: member id 0: %w", ErrUnknownMember)
	}
	return n.changeMembership(ctx, raftpb.ConfChangeAddLearnerNode, Member{ID: id, Addr: addr, Learner: true},
		func(v membershipView) (bool, error) {
			if v.voters[id] {
				return false, fmt.Errorf("consensus: %d is already a voter: %w", id, ErrUnknownMember)
			}
			return v.learners[id], nil
		})
}

// PromoteLearner makes learner id a voter once it has caught up: its log is
// within Config.PromoteLagEntries of the leader's. Catch-up is judged from
// the leader's view, so call it on the leader; elsewhere it returns a
// *NotLeaderError. It waits for catch-up until ctx ends.
func (n *Node) PromoteLearner(ctx context.Context, id uint64) error {
	v := n.view()
	if v.voters[id] {
		return nil
	}
	if !v.learners[id] {
		return fmt.Errorf("consensus: %d is not a learner: %w", id, ErrUnknownMember)
	}
	if err := n.waitCaughtUp(ctx, id); err != nil {
		return err
	}
	return n.changeMembership(ctx, raftpb.ConfChangeAddNode, Member{ID: id},
		func(v membershipView) (bool, error) {
			if !v.voters[id] && !v.learners[id] {
				return false, fmt.Errorf("consensus: %d was removed: %w", id, ErrUnknownMember)
			}
			return v.voters[id], nil
		})
}

// AddVoter adds a voting member safely: as a learner first, promoted once
// it has caught up, so the group's availability never depends on a member
// that is still receiving the log. Like PromoteLearner, call it on the
// leader.
func (n *Node) AddVoter(ctx context.Context, id uint64, addr string) error {
	if n.view().voters[id] {
		return nil
	}
	if err := n.requireLeader(); err != nil {
		return err
	}
	if err := n.AddLearner(ctx, id, addr); err != nil {
		return err
	}
	return n.PromoteLearner(ctx, id)
}

// RemoveMember removes member id. If id is the leader, leadership is first
// transferred to another voter, so the group keeps a leader throughout.
// Removing this member is allowed; afterwards it stops taking part and its
// calls fail with ErrRemoved. Returns nil if id is not a member.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	v := n.view()
	if !v.voters[id] && !v.learners[id] {
		return nil
	}
	if v.voters[id] && len(v.voters) == 1 {
		return fmt.Errorf("consensus: cannot remove the last voter %d: %w", id, ErrUnknownMember)
	}
	if n.leaderID() == id && v.voters[id] {
		target := n.transferTarget(id, v)
		if target == 0 {
			return fmt.Errorf("consensus: no voter to take over from %d: %w", id, ErrTransferFailed)
		}
		if err := n.TransferLeadership(ctx, target); err != nil {
			return err
		}
	}
	return n.changeMembership(ctx, raftpb.ConfChangeRemoveNode, Member{ID: id},
		func(v membershipView) (bool, error) {
			return !v.voters[id] && !v.learners[id], nil
		})
}

// transferTarget picks the voter (other than id) with the longest log, or
// on a follower any other voter, preferring this member.
func (n *Node) transferTarget(id uint64, v membershipView) uint64 {
	var best, bestMatch uint64
	_ = n.do(context.Background(), func() {
		st := n.rn.Status()
		for vid := range v.voters {
			if vid == id {
				continue
			}
			if pr, ok := st.Progress[vid]; ok && (best == 0 || pr.Match > bestMatch) {
				best, bestMatch = vid, pr.Match
			}
		}
	})
	if best != 0 {
		return best
	}
	if v.voters[n.id] && n.id != id {
		return n.id
	}
	for vid := range v.voters {
		if vid != id && (best == 0 || vid < best) {
			best = vid
		}
	}
	return best
}

func (n *Node) requireLeader() error {
	n.stateMu.Lock()
	role, lead := n.role, n.leader
	n.stateMu.Unlock()
	if role != raft.StateLeader {
		return &NotLeaderError{Leader: lead}
	}
	return nil
}

// waitCaughtUp waits until learner id's log is close to the leader's.
func (n *Node) waitCaughtUp(ctx context.Context, id uint64) error {
	for {
		if err := n.requireLeader(); err != nil {
			return err
		}
		var caught bool
		if err := n.do(ctx, func() {
			st := n.rn.Status()
			last, _ := n.logs.LastIndex()
			if ul := st.HardState.GetCommit(); ul > last {
				last = ul
			}
			pr, ok := st.Progress[id]
			caught = ok && pr.Match+n.cfg.PromoteLagEntries >= last && pr.State == tracker.StateReplicate
		}); err != nil {
			return err
		}
		if caught {
			return nil
		}
		if err := n.sleep(ctx, n.cfg.TickInterval); err != nil {
			return err
		}
	}
}

func (n *Node) sleep(ctx context.Context, d time.Duration) error {
	t := n.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return n.stoppedErr()
	}
}

// changeMembership proposes one change and waits until the applied
// configuration satisfies done. raft allows one pending change at a time
// and silently replaces a second one with an empty entry, so the proposal
// is retried until done reports true (every change here is idempotent).
func (n *Node) changeMembership(ctx context.Context, typ raftpb.ConfChangeType, m Member, done func(membershipView) (bool, error)) error {
	select {
	case n.membership <- struct{}{}:
		defer func() { <-n.membership }()
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return n.stoppedErr()
	}
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	for {
		v := n.view()
		ok, err := done(v)
		if err != nil {
			return err
		}
		if ok && !v.joint {
			return nil
		}
		if n.removed.Load() {
			return ErrRemoved
		}
		if !ok && !v.joint {
			p, err := n.enqueue(ctx, func(seq uint64) *proposal {
				body := encodeMembers(nil, []Member{m})
				cc := &raftpb.ConfChangeV2{
					Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(m.ID)}},
					Context: encodeEntry(entryHeader{kind: entryConfChange, epoch: n.epoch, seq: seq}, body),
				}
				return &proposal{cc: cc}
			})
			if err != nil {
				return err
			}
			wctx, cancel := context.WithTimeout(ctx, 2*electionTimeout)
			err = n.wait(wctx, p)
			cancel()
			if err == nil {
				n.stats.confChanges.Add(1)
				continue
			}
			if ctx.Err() != nil {
				return err
			}
			if isStopped(err) {
				return err
			}
		}
		if err := n.sleep(ctx, n.cfg.TickInterval); err != nil {
			return err
		}
	}
}

// TransferLeadership hands leadership to voter to and returns once to leads
// (as seen by this member). It may be called on any member. While a
// transfer runs the old leader refuses proposals (they fail with
// ErrDropped); raft abandons a transfer after an election timeout, and
// this call retries until ctx ends.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	if !n.view().voters[to] {
		return fmt.Errorf("consensus: %d is not a voter: %w", to, ErrTransferFailed)
	}
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	for {
		n.stateMu.Lock()
		lead, ch := n.leader, n.leaderChange
		n.stateMu.Unlock()
		if lead == to {
			return nil
		}
		if n.removed.Load() {
			return ErrRemoved
		}
		if lead != 0 {
			if err := n.do(ctx, func() { n.rn.TransferLeader(to) }); err != nil {
				return err
			}
		}
		t := n.cfg.Clock.NewTimer(electionTimeout)
		select {
		case <-ch:
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrTransferFailed, ctx.Err())
		case <-n.stopC:
			t.Stop()
			return n.stoppedErr()
		}
		t.Stop()
	}
}

func isStopped(err error) bool {
	return err != nil && (errorsIs(err, ErrStopped) || errorsIs(err, ErrRemoved))
}
