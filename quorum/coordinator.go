package quorum

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
)

// Coordinator runs reads and writes against the replicas of each key,
// Dynamo-style: no leader, a consistency level per request, sloppy quorum
// with hinted handoff, read repair, hedged reads and Merkle anti-entropy.
// Any number of Coordinators (one per node, or one per client) may serve the
// same replicas at once.
//
// NewCoordinator starts one goroutine for hint delivery and, if
// Config.AntiEntropyInterval is set, one for anti-entropy; requests start a
// goroutine per replica call, and leave some running after they return
// (write replication beyond W, read repair), each bounded by
// Config.Timeout. Close stops them all and waits for them.
type Coordinator[V any] struct {
	cfg    Config[V]
	clk    clock.Clock
	health *health
	hints  *hintStore[V]

	// life is the Coordinator's own lifetime, not a caller's context: made
	// by NewCoordinator, cancelled by Close, parent of all background work.
	life   context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
	bg     chan struct{} // semaphore for background read repairs

	stats stats
}

// Stats counts what a Coordinator did since it was made.
type Stats struct {
	Reads, Writes             uint64 // requests started
	ReadFailures              uint64 // reads that did not reach their level
	WriteFailures             uint64 // writes that did not reach their level
	Hedges                    uint64 // extra replica reads started by the hedge timer
	HedgeWins                 uint64 // hedged replies that counted towards a read's level
	Repairs                   uint64 // objects written back by read repair
	RepairsSkipped            uint64 // reads whose background repair was skipped (MaxBackground)
	HintsStored               uint64 // hints recorded for a failed or stood-in node
	HintsDelivered            uint64 // hints written to their node
	HintsDropped              uint64 // hints not stored because MaxHints was reached
	HintsPending              int    // hints waiting now
	AntiEntropyRounds         uint64 // anti-entropy passes completed
	AntiEntropyRepairs        uint64 // objects written by anti-entropy
	AntiEntropyPartitionsDiff uint64 // partitions whose Merkle roots differed
}

type stats struct {
	reads, writes, readFailures, writeFailures, hedges, hedgeWins, repairs, repairsSkipped atomic.Uint64
	hintsStored, hintsDelivered, hintsDropped, aeRounds, aeRepairs, aeDiff                 atomic.Uint64
}

// NewCoordinator validates cfg, applies defaults and starts the
// Coordinator's background goroutines; call Close to stop them.
func NewCoordinator[V any](cfg Config[V]) (*Coordinator[V], error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	c := &Coordinator[V]{
		cfg:    cfg,
		clk:    cfg.Clock,
		health: newHealth(cfg.Hedge.Window),
		hints:  newHintStore[V](cfg.MaxHints),
		life:   life,
		cancel: cancel,
		bg:     make(chan struct{}, cfg.MaxBackground),
	}
	c.goLoop(cfg.HintInterval, func(ctx context.Context) { c.DeliverHints(ctx) })
	if cfg.AntiEntropyInterval > 0 {
		c.goLoop(cfg.AntiEntropyInterval, func(ctx context.Context) {
			if _, err := c.AntiEntropy(ctx); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn("quorum: anti-entropy pass failed", "err", err)
			}
		})
	}
	return c, nil
}

// Close stops the Coordinator's goroutines, cancelling the replica calls
// still running, and waits for them to exit. Requests made after Close fail
// with ErrClosed. Close is safe to call more than once.
func (c *Coordinator[V]) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Stats returns a snapshot of the Coordinator's counters.
func (c *Coordinator[V]) Stats() Stats {
	s := &c.stats
	return Stats{
		Reads: s.reads.Load(), Writes: s.writes.Load(),
		ReadFailures: s.readFailures.Load(), WriteFailures: s.writeFailures.Load(),
		Hedges: s.hedges.Load(), HedgeWins: s.hedgeWins.Load(),
		Repairs: s.repairs.Load(), RepairsSkipped: s.repairsSkipped.Load(),
		HintsStored: s.hintsStored.Load(), HintsDelivered: s.hintsDelivered.Load(),
		HintsDropped: s.hintsDropped.Load(), HintsPending: c.hints.len(),
		AntiEntropyRounds: s.aeRounds.Load(), AntiEntropyRepairs: s.aeRepairs.Load(),
		AntiEntropyPartitionsDiff: s.aeDiff.Load(),
	}
}

// goFn runs f in a goroutine owned by the Coordinator; it reports false,
// without running f, after Close.
func (c *Coordinator[V]) goFn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Coordinator[V]) goLoop(every time.Duration, f func(ctx context.Context)) {
	c.goFn(func() {
		t := c.clk.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-c.life.Done():
				return
			case <-t.C():
				f(c.life)
				t.Reset(every)
			}
		}
	})
}

// opContext returns a context for a request's replica calls: ended by Close,
// by the request timeout on the Coordinator's clock, or by cancel.
func (c *Coordinator[V]) opContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(c.life)
	t := c.clk.AfterFunc(c.cfg.Timeout, func() { cancel(ErrTimeout) })
	return ctx, func() { t.Stop(); cancel(context.Canceled) }
}

// callContext bounds one replica call made on behalf of ctx by the request
// timeout and Close as well.
func (c *Coordinator[V]) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	opCtx, cancel := c.opContext()
	stop := context.AfterFunc(ctx, cancel)
	return opCtx, func() { stop(); cancel() }
}

func (c *Coordinator[V]) options(opts []Option, level Level) reqOpts {
	o := reqOpts{level: level, repair: c.cfg.Repair, hedge: c.cfg.Hedge.Percentile > 0, strict: c.cfg.Strict}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.level == Default {
		o.level = level
	}
	return o
}

// target is a node a request uses; hintFor names the failed node it stands
// in for, if any.
type target struct{ node, hintFor string }

// targets returns the key's first N nodes, with failed ones replaced by the
// next healthy nodes of the preference list, and the healthy nodes left over
// to stand in for targets that fail during the request. Strict requests get
// the first N nodes and no spares.
func (c *Coordinator[V]) targets(key string, strict bool) (ts []target, spares []string) {
	n := c.cfg.N
	extra := c.cfg.Fallbacks
	if strict {
		extra = 0
	}
	pref := c.cfg.Ring.Lookup(key, n+extra)
	prim := pref[:min(n, len(pref))]
	ts = make([]target, 0, len(prim))
	now := c.clk.Now()
	var down []string
	for _, p := range prim {
		if strict || c.health.up(p, now) {
			ts = append(ts, target{node: p})
		} else {
			down = append(down, p)
		}
	}
	for _, f := range pref[len(prim):] {
		if !c.health.up(f, now) {
			continue
		}
		if len(down) > 0 {
			ts = append(ts, target{node: f, hintFor: down[0]})
			down = down[1:]
		} else {
			spares = append(spares, f)
		}
	}
	// No healthy stand-in left: try the failed primaries themselves.
	for _, d := range down {
		ts = append(ts, target{node: d})
	}
	return ts, spares
}

func (c *Coordinator[V]) replica(node string) (Replica[V], error) {
	r, err := c.cfg.Replica(node)
	if err == nil && r == nil {
		err = fmt.Errorf("quorum: no replica for node %q", node)
	}
	return r, err
}

// observe records the outcome of one replica call: its latency when it is
// a read (the hedging percentile is about reads), and a failure unless the
// call was cut short by the Coordinator's own cancellation.
func (c *Coordinator[V]) observe(ctx context.Context, node string, start time.Time, err error, read bool) {
	switch {
	case err == nil && read:
		c.health.success(node, c.clk.Since(start))
	case err == nil:
		c.health.markUp(node)
	case ctx.Err() == nil:
		c.health.failure(node, c.clk.Now().Add(c.cfg.HintInterval))
		c.cfg.Logger.Debug("quorum: replica failed", "node", node, "err", err)
	}
}

// stopCause explains why replica calls stopped early: the caller's context
// ended, the request timed out or the Coordinator closed; nil if none.
func stopCause(ctx, opCtx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if opCtx.Err() != nil {
		return causeOf(opCtx)
	}
	return nil
}

func causeOf(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ErrClosed
}
