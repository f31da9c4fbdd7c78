package consensus

import (
	"context"
	"fmt"
)

// ProposeOption adjusts one proposal.
type ProposeOption func(*proposeOptions)

type proposeOptions struct {
	reqID string
}

// WithRequestID attaches a request id to the proposal. The group remembers
// the outcome of the last Config.DedupEntries ids in its replicated state
// (the log and snapshots), so a proposal retried with the same id, on any
// member and after any failover, is applied at most once and returns the
// first attempt's result. Use it to retry after ErrUnknownOutcome. The id
// must be non-empty and at most 1024 bytes.
func WithRequestID(id string) ProposeOption {
	return func(o *proposeOptions) { o.reqID = id }
}

// Applied describes a command applied by the group.
type Applied struct {
	// Index is the command's log index. Pass it to WaitApplied on any
	// member to read your own write there.
	Index uint64
	// Result is what StateMachine.Apply set for the command.
	Result []byte
}

// Propose replicates cmd through the group's log and waits until it has
// been applied on this member, returning the result the state machine set.
// Any member accepts proposals: a follower forwards them to the leader.
// While no leader is known (during an election) proposals wait for one
// until ctx ends, and then fail with ErrDropped. A command lost on the way
// to the leader, or whose log entry a new leader overwrote, is proposed
// again with the same identity while ctx lasts; the group applies only the
// first copy that commits, so it still applies once.
//
// Errors: ErrDropped (will never apply; safe to retry), ErrUnknownOutcome (may
// still apply: retry only with WithRequestID), ErrBusy (too many pending
// proposals), ErrTooLarge, ErrStopped, or the state machine's own error for
// the command.
func (n *Node) Propose(ctx context.Context, cmd []byte, opts ...ProposeOption) ([]byte, error) {
	a, err := n.Submit(ctx, cmd, opts...)
	return a.Result, err
}

// Submit is Propose returning also the command's log index, a token for
// read-your-writes reads on other members (WaitApplied).
func (n *Node) Submit(ctx context.Context, cmd []byte, opts ...ProposeOption) (Applied, error) {
	var o proposeOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.reqID) > maxRequestIDLen {
		return Applied{}, fmt.Errorf("consensus: request id of %d bytes exceeds %d: %w", len(o.reqID), maxRequestIDLen, ErrTooLarge)
	}
	if len(cmd) > n.cfg.MaxEntryBytes {
		return Applied{}, fmt.Errorf("consensus: command of %d bytes exceeds MaxEntryBytes %d: %w", len(cmd), n.cfg.MaxEntryBytes, ErrTooLarge)
	}
	p, err := n.enqueue(ctx, func(seq uint64) *proposal {
		return &proposal{data: encodeEntry(entryHeader{kind: entryCommand, epoch: n.epoch, seq: seq, reqID: o.reqID}, cmd)}
	})
	if err != nil {
		return Applied{}, err
	}
	if err := n.wait(ctx, p); err != nil {
		return Applied{Index: p.index}, err
	}
	return Applied{Index: p.index, Result: p.res}, nil
}

// enqueue registers a proposal and wakes the raft loop.
func (n *Node) enqueue(ctx context.Context, mk func(seq uint64) *proposal) (*proposal, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-n.stopC:
		return nil, fmt.Errorf("%w: %w", n.stoppedErr(), ErrDropped)
	default:
	}
	if n.removed.Load() {
		return nil, fmt.Errorf("%w: %w", ErrRemoved, ErrDropped)
	}
	n.propMu.Lock()
	if n.propClosed {
		n.propMu.Unlock()
		return nil, fmt.Errorf("%w: %w", n.stoppedErr(), ErrDropped)
	}
	if len(n.waiters) >= n.cfg.MaxPendingProposals {
		n.propMu.Unlock()
		n.stats.busy.Add(1)
		return nil, ErrBusy
	}
	n.seq++
	p := mk(n.seq)
	p.seq = n.seq
	p.done = make(chan struct{})
	n.waiters[p.seq] = p
	n.propQ = append(n.propQ, p)
	n.propMu.Unlock()
	wake(n.propC)
	return p, nil
}

// wait blocks until p completes, ctx ends or the node stops.
func (n *Node) wait(ctx context.Context, p *proposal) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return n.abandon(p, ctx.Err())
	case <-n.stopC:
		// The raft loop completes every waiter as it exits.
		select {
		case <-p.done:
			return p.err
		case <-ctx.Done():
			return n.abandon(p, ctx.Err())
		}
	}
}

// abandon withdraws the caller from p after its context ended.
func (n *Node) abandon(p *proposal, cause error) error {
	n.propMu.Lock()
	if _, ok := n.waiters[p.seq]; !ok {
		n.propMu.Unlock()
		<-p.done // already completed, or completing
		return p.err
	}
	delete(n.waiters, p.seq)
	taken := p.taken
	if !taken {
		p.cancel = true
	}
	n.propMu.Unlock()
	if !taken {
		return fmt.Errorf("%w: %w", ErrDropped, cause)
	}
	n.stats.unknown.Add(1)
	return fmt.Errorf("%w: %w", ErrUnknownOutcome, cause)
}
