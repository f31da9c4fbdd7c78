package idempotency

import (
	"context"
	"sync"
	"sync/atomic"
)

// In-process coordination.
//
// A caller that finds its key in progress must tell whether the holder is
// in this process (then it waits for it) or elsewhere (then it fails with
// ErrInProgress or polls the store). Holders here are listed in a map, but
// a holder registers only after its Claim returns, so a Claim begun here
// earlier may have been given the token and not yet said so.
//
// Rather than register every caller before its Claim (a lock, a map entry
// and an allocation on every replay), callers announce Claims in flight on
// a per-shard pair of epoch counters, which costs a few atomic operations.
// A caller that needs certainty starts a grace period: it flips the epoch
// and waits until every Claim announced in the old epoch has finished and,
// if it won, registered. Claims begun after the flip began after the
// caller saw the token, so they cannot have been given it.
//
// golang.org/x/sync/singleflight is not used: it would put every key of a
// Guard behind one mutex and allocate per call even on replays, its
// waiters cannot give up when their ctx ends, and it hands the leader's
// error to every waiter, where a waiter here runs fn itself if the
// leader's outcome was not recorded. BenchmarkDo and BenchmarkDoParallel
// measure a singleflight-based Guard beside this one.

const guardShards = 64

type flightShard struct {
	mu      sync.Mutex
	leaders map[string]*leader // holders here, by key
	drained chan struct{}      // made by a grace period; closed by exit

	epoch   atomic.Uint32
	pending [2]atomic.Int64 // Claims in flight, by epoch
	waiting atomic.Bool     // a grace period waits on drained
	gp      chan struct{}   // one grace period at a time

	stats [numStats]atomic.Uint64

	_ [64]byte
}

// Counters of GuardStats, kept per shard so that counting does not
// contend across keys.
const (
	statExecuted = iota
	statReplayed
	statReused
	statInProgress
	statWaited
	statNotRecorded
	numStats
)

func (sh *flightShard) count(stat int) { sh.stats[stat].Add(1) }

// leader is a caller here that holds the claim with token on a key.
type leader struct {
	token uint64
	done  chan struct{} // made by waiters; closed when the holder finishes
}

func (sh *flightShard) init() {
	sh.leaders = make(map[string]*leader)
	sh.gp = make(chan struct{}, 1)
}

// enter announces a Claim and returns its epoch, to be passed to exit once
// the Claim's outcome is known and, if it won, registered.
func (sh *flightShard) enter() uint32 {
	for {
		e := sh.epoch.Load()
		sh.pending[e].Add(1)
		if sh.epoch.Load() == e {
			return e
		}
		// A grace period flipped the epoch meanwhile: count in the new one.
		sh.exit(e)
	}
}

func (sh *flightShard) exit(e uint32) {
	if sh.pending[e].Add(-1) == 0 && sh.waiting.Load() {
		sh.mu.Lock()
		wake(&sh.drained)
		sh.mu.Unlock()
	}
}

// gracePeriod waits until every Claim announced before the call has
// finished and registered its outcome.
func (sh *flightShard) gracePeriod(ctx context.Context) error {
	select {
	case sh.gp <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sh.gp }()
	old := sh.epoch.Load()
	sh.epoch.Store(old ^ 1)
	defer sh.waiting.Store(false)
	for {
		sh.mu.Lock()
		ch := waitOn(&sh.drained)
		sh.waiting.Store(true)
		sh.mu.Unlock()
		if sh.pending[old].Load() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lead registers l as the holder of key here.
func (sh *flightShard) lead(key string, l *leader) {
	sh.mu.Lock()
	sh.leaders[key] = l
	sh.mu.Unlock()
}

// finish unregisters l and wakes its waiters.
func (sh *flightShard) finish(key string, l *leader) {
	sh.mu.Lock()
	if sh.leaders[key] == l {
		delete(sh.leaders, key)
	}
	wake(&l.done)
	sh.mu.Unlock()
}

// holder returns a channel closed when the holder here of key with token
// finishes, or nil if there is no such holder here.
func (sh *flightShard) holder(key string, token uint64) <-chan struct{} {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l := sh.leaders[key]; l != nil && l.token == token {
		return waitOn(&l.done)
	}
	return nil
}

// wake closes *ch if a waiter made it. The shard lock is held.
func wake(ch *chan struct{}) {
	if *ch != nil {
		close(*ch)
		*ch = nil
	}
}

// waitOn returns a channel closed on the next wake of *ch. The shard lock
// is held.
func waitOn(ch *chan struct{}) <-chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
	}
	return *ch
}
