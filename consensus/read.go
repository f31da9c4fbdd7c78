package consensus

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
)

// ReadIndex returns a linearizable read point: a log index such that every
// write acknowledged before the call is at or below it. Reads of the state
// machine are linearizable once this member has applied the index (see
// ReadBarrier). Concurrent calls share one confirmation round with the
// leader. It works on any member, including followers and learners; with
// no leader it waits (retrying with fresh requests each election timeout)
// until ctx ends.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := &readReq{done: make(chan struct{})}
	n.readMu.Lock()
	if n.readClosed {
		n.readMu.Unlock()
		return 0, n.stoppedErr()
	}
	n.readQ = append(n.readQ, r)
	n.readMu.Unlock()
	wake(n.readC)
	select {
	case <-r.done:
		if r.err == nil {
			n.stats.reads.Add(1)
		}
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// ReadBarrier waits until this member's state machine reflects every write
// acknowledged before the call, on any member. After it returns nil, reads
// of the local state machine are linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, idx)
}

// WaitApplied waits until this member has applied index. With the index of
// a write (Applied.Index) it gives read-your-writes on any member without
// a round trip to the leader.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		n.appliedMu.Lock()
		ch := n.appliedCh
		n.appliedMu.Unlock()
		if n.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopC:
			return n.stoppedErr()
		}
	}
}

// AppliedIndex returns the index of the last command applied on this member.
// Reading the state machine without any barrier gives this member's local,
// possibly stale, view.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// StaleRead waits until this member's state is no older than maxStaleness
// and returns nil, or returns ErrStale at once when it cannot promise that.
// A follower promises it when it heard from the leader within maxStaleness
// and has applied everything the leader had committed at that moment; the
// leader (with CheckQuorum, the default) promises it when maxStaleness is
// at least one election timeout, the longest it may lead without a quorum.
// Cheaper than ReadBarrier (no round trip), but not linearizable.
func (n *Node) StaleRead(ctx context.Context, maxStaleness time.Duration) error {
	n.stateMu.Lock()
	role, at, idx, commit := n.role, n.contactAt, n.contactIdx, n.commit
	n.stateMu.Unlock()
	electionTimeout := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	if role == raft.StateLeader {
		if n.cfg.DisableCheckQuorum || maxStaleness < electionTimeout {
			return fmt.Errorf("%w: leader staleness bound is the election timeout %v", ErrStale, electionTimeout)
		}
		return n.WaitApplied(ctx, commit)
	}
	if at.IsZero() {
		return fmt.Errorf("%w: no contact with a leader", ErrStale)
	}
	if age := n.cfg.Clock.Since(at); age > maxStaleness {
		return fmt.Errorf("%w: last leader contact %v ago", ErrStale, age)
	}
	return n.WaitApplied(ctx, idx)
}

// submitReads starts one ReadIndex round for every read queued since the
// last round. A round started before a read arrived never serves it.
func (n *Node) submitReads() {
	n.readMu.Lock()
	reqs := n.readQ
	n.readQ = nil
	n.readMu.Unlock()
	if len(reqs) == 0 {
		return
	}
	n.issueRead(reqs)
}

func (n *Node) issueRead(reqs []*readReq) {
	n.readSeq++
	rctx := make([]byte, 16)
	binary.LittleEndian.PutUint64(rctx, n.epoch)
	binary.LittleEndian.PutUint64(rctx[8:], n.readSeq)
	n.rounds[string(rctx)] = &readRound{reqs: reqs, issue: n.tickCount}
	n.stats.readRounds.Add(1)
	n.rn.ReadIndex(rctx)
}

// retryReads re-issues rounds that got no answer within an election
// timeout (raft drops them silently without a leader) with fresh contexts,
// so a late answer to an old context can never be mistaken for a new one.
func (n *Node) retryReads() {
	for k, r := range n.rounds {
		if n.tickCount-r.issue >= uint64(n.cfg.ElectionTicks) {
			delete(n.rounds, k)
			n.issueRead(r.reqs)
		}
	}
}

func (n *Node) resolveReads(rs []raft.ReadState) {
	for _, s := range rs {
		r, ok := n.rounds[string(s.RequestCtx)]
		if !ok {
			continue
		}
		delete(n.rounds, string(s.RequestCtx))
		for _, q := range r.reqs {
			q.index = s.Index
			close(q.done)
		}
	}
}
