package quorum

import (
	"context"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Value is the result of a read.
type Value[V any] struct {
	// Values are the live versions of the key, in dot order: several when
	// writes were concurrent (siblings), one value when Config.Merge is set,
	// none when the key was never written or is deleted.
	Values []V
	// Context is the causal context to pass to the next Put or Delete of the
	// key, so that the write replaces exactly the versions read here.
	Context clock.Vector
	// Object is the merged state the read saw, tombstones included.
	Object Object[V]
}

// Found reports whether the key has at least one live version.
func (v Value[V]) Found() bool { return len(v.Values) > 0 }

type getReply[V any] struct {
	i    int
	node string
	obj  Object[V]
	err  error
}

// readOp is one Get in flight.
type readOp[V any] struct {
	c        *Coordinator[V]
	key      string
	ts       []target
	need     int
	opCtx    context.Context
	cancel   context.CancelFunc
	ch       chan getReply[V]
	next     int // ts[:next] have been asked
	inflight int
	initial  int // replies with index >= initial came from hedges
}

func (op *readOp[V]) launch() bool {
	i := op.next
	node := op.ts[i].node
	c, ctx, key, ch := op.c, op.opCtx, op.key, op.ch
	ok := c.goFn(func() {
		start := c.clk.Now()
		r, err := c.replica(node)
		var obj Object[V]
		if err == nil {
			obj, err = r.Get(ctx, key)
		}
		c.observe(ctx, node, start, err, true)
		ch <- getReply[V]{i, node, obj, err}
	})
	if ok {
		op.next++
		op.inflight++
	}
	return ok
}

// Get reads key from its replicas: it asks as many as the read level needs
// (more on failures and, with a HedgePolicy, when they are slow), merges what
// the first ones to answer hold, and returns the surviving versions with
// their causal context. It repairs replicas found stale according to the
// repair mode.
//
// A read that cannot reach its level returns an [*Error] (errors.Is(err,
// ErrNoQuorum)); its Cause is ctx.Err() if ctx ended, ErrTimeout if
// Config.Timeout passed, ErrClosed after Close.
func (c *Coordinator[V]) Get(ctx context.Context, key string, opts ...Option) (Value[V], error) {
	c.stats.reads.Add(1)
	o := c.options(opts, c.cfg.Read)
	v, err := c.get(ctx, key, o)
	if err != nil {
		c.stats.readFailures.Add(1)
	}
	return v, err
}

func (c *Coordinator[V]) get(ctx context.Context, key string, o reqOpts) (Value[V], error) {
	if err := ctx.Err(); err != nil {
		return Value[V]{}, err
	}
	if c.life.Err() != nil {
		return Value[V]{}, ErrClosed
	}
	ts, spares := c.targets(key, o.strict)
	if len(ts) == 0 {
		return Value[V]{}, ErrNoNodes
	}
	need, err := o.level.Need(len(ts))
	if err != nil {
		return Value[V]{}, err
	}
	opCtx, cancel := c.opContext()
	unlink := context.AfterFunc(ctx, cancel)
	op := &readOp[V]{c: c, key: key, ts: ts, need: need, opCtx: opCtx, cancel: cancel,
		ch: make(chan getReply[V], len(ts)+len(spares)), initial: need}
	var got []getReply[V]
	var failed []ReplicaError
	fail := func(cause error) (Value[V], error) {
		unlink()
		if cause == nil {
			cause = stopCause(ctx, opCtx)
		}
		cancel()
		return Value[V]{}, &Error{Need: need, Succeeded: len(got), Failed: failed, Cause: cause}
	}
	for op.next < need {
		if !op.launch() {
			return fail(ErrClosed)
		}
	}
	var hedge clock.Timer
	var hedgeC <-chan time.Time
	var delay time.Duration
	if o.hedge && op.next < len(ts) {
		nodes := make([]string, len(ts))
		for i, t := range ts {
			nodes[i] = t.node
		}
		delay = c.health.hedgeDelay(nodes, c.cfg.Hedge)
		hedge = c.clk.NewTimer(delay)
		defer hedge.Stop()
		hedgeC = hedge.C()
	}
	for len(got) < need {
		select {
		case rp := <-op.ch:
			op.inflight--
			if rp.err != nil {
				failed = append(failed, ReplicaError{Index: rp.i, Node: op.ts[rp.i].node, Err: rp.err})
				if op.next == len(op.ts) && len(spares) > 0 {
					op.ts = append(op.ts, target{node: spares[0]})
					spares = spares[1:]
				}
				if op.next < len(op.ts) && !op.launch() {
					return fail(ErrClosed)
				}
				if len(got)+op.inflight < need {
					return fail(nil)
				}
				continue
			}
			got = append(got, rp)
			if rp.i >= op.initial {
				c.stats.hedgeWins.Add(1)
			}
		case <-hedgeC:
			if op.next < len(ts) && op.launch() {
				c.stats.hedges.Add(1)
			}
			if op.next < len(ts) {
				hedge.Reset(delay)
			}
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-opCtx.Done():
			return fail(causeOf(opCtx))
		}
	}
	unlink()

	merged := Object[V]{}
	for _, rp := range got {
		merged = merged.Merge(rp.obj)
	}
	v := c.value(merged)

	switch o.repair {
	case RepairOff:
		cancel()
	case RepairSync:
		c.repair(opCtx, key, merged, got)
		cancel()
	default:
		// Keep the stragglers and repair in the background, bounded by the
		// request timeout and MaxBackground.
		select {
		case c.bg <- struct{}{}:
		default:
			c.stats.repairsSkipped.Add(1)
			cancel()
			return v, nil
		}
		if !c.goFn(func() {
			defer func() { <-c.bg }()
			defer cancel()
			for op.inflight > 0 {
				select {
				case rp := <-op.ch:
					op.inflight--
					if rp.err == nil {
						merged = merged.Merge(rp.obj)
						got = append(got, rp)
					}
				case <-opCtx.Done():
					op.inflight = 0
				}
			}
			// The repair writes get their own timeout: stragglers may have
			// used up the read's.
			rctx, rcancel := c.opContext()
			defer rcancel()
			c.repair(rctx, key, merged, got)
		}) {
			<-c.bg
			cancel()
		}
	}
	return v, nil
}

// value turns a merged object into what Get returns.
func (c *Coordinator[V]) value(merged Object[V]) Value[V] {
	v := Value[V]{Values: merged.Values(), Context: merged.Context.Clone(), Object: merged}
	if c.cfg.Merge != nil && len(v.Values) > 1 {
		acc := v.Values[0]
		for _, x := range v.Values[1:] {
			acc = c.cfg.Merge(acc, x)
		}
		v.Values = []V{acc}
	}
	return v
}

// repair writes merged to every replica in got whose object differs from it,
// concurrently, and waits for those writes.
func (c *Coordinator[V]) repair(ctx context.Context, key string, merged Object[V], got []getReply[V]) {
	want := merged.Digest()
	var wg sync.WaitGroup
	for _, rp := range got {
		if rp.obj.Digest() == want {
			continue
		}
		wg.Go(func() {
			start := c.clk.Now()
			r, err := c.replica(rp.node)
			if err == nil {
				err = r.Put(ctx, key, merged)
			}
			c.observe(ctx, rp.node, start, err, false)
			if err == nil {
				c.stats.repairs.Add(1)
			} else {
				c.cfg.Logger.Debug("quorum: read repair failed", "node", rp.node, "key", key, "err", err)
			}
		})
	}
	wg.Wait()
}
