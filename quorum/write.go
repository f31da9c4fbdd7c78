package quorum

import (
	"context"

	"github.com/distkit/distkit/clock"
)

type putReply struct {
	i   int
	err error
}

// Put writes v under key. causal is the Context of a previous Get of the key
// (zero for a blind write): the write replaces the versions that read
// returned and stays a sibling of any it did not see.
//
// The first reachable node of the key's replicas coordinates the write: it
// stamps it with a new dot ([Replica.Update]) and the resulting object is
// sent to the other replicas ([Replica.Put]). Put returns once the write
// level is met, counting the coordinator; replication to the remaining
// replicas goes on in the background for up to Config.Timeout. Under the
// sloppy quorum, nodes standing in for failed ones count towards the level
// and the Coordinator keeps a hint to hand the object to the failed node
// when it recovers; a replica that fails during the write gets a hint too.
//
// Put returns the causal context of the new version alone: causal plus the
// new dot. Passing it to the next write makes that write replace this one
// (and only what causal covered).
//
// A write that does not reach its level returns an [*Error] (errors.Is(err,
// ErrNoQuorum)); it may still have been stored on some replicas, where it
// survives and spreads by repair like any other version.
func (c *Coordinator[V]) Put(ctx context.Context, key string, v V, causal clock.Vector, opts ...Option) (clock.Vector, error) {
	return c.write(ctx, key, Write[V]{Context: causal, Value: v}, opts)
}

// Delete deletes key: it writes a tombstone that replaces the versions
// causal covers, exactly like Put. Versions written concurrently with the
// delete survive as siblings. Tombstones are kept (see [Replica]).
func (c *Coordinator[V]) Delete(ctx context.Context, key string, causal clock.Vector, opts ...Option) (clock.Vector, error) {
	return c.write(ctx, key, Write[V]{Context: causal, Delete: true}, opts)
}

func (c *Coordinator[V]) write(ctx context.Context, key string, w Write[V], opts []Option) (clock.Vector, error) {
	c.stats.writes.Add(1)
	out, err := c.doWrite(ctx, key, w, c.options(opts, c.cfg.Write))
	if err != nil {
		c.stats.writeFailures.Add(1)
	}
	return out, err
}

func (c *Coordinator[V]) doWrite(ctx context.Context, key string, w Write[V], o reqOpts) (clock.Vector, error) {
	if err := ctx.Err(); err != nil {
		return clock.Vector{}, err
	}
	if c.life.Err() != nil {
		return clock.Vector{}, ErrClosed
	}
	ts, spares := c.targets(key, o.strict)
	if len(ts) == 0 {
		return clock.Vector{}, ErrNoNodes
	}
	need, err := o.level.Need(len(ts))
	if err != nil {
		return clock.Vector{}, err
	}
	w.Context = w.Context.Clone()
	opCtx, cancel := c.opContext()
	unlink := context.AfterFunc(ctx, cancel)
	var failed []ReplicaError
	fail := func(acks int, cause error) (clock.Vector, error) {
		unlink()
		if cause == nil {
			cause = stopCause(ctx, opCtx)
		}
		cancel()
		return clock.Vector{}, &Error{Need: need, Succeeded: acks, Failed: failed, Cause: cause}
	}

	// standIn replaces failed target t with a spare node, if there is one.
	standIn := func(t target) bool {
		if o.strict || len(spares) == 0 || c.life.Err() != nil {
			return false
		}
		owner := t.node
		if t.hintFor != "" {
			owner = t.hintFor
		}
		ts = append(ts, target{node: spares[0], hintFor: owner})
		spares = spares[1:]
		return true
	}
	// owed names the nodes that failed with no stand-in: they get a hint.
	var owed []string
	owe := func(t target) {
		if o.strict || c.life.Err() != nil {
			return
		}
		if t.hintFor != "" {
			owed = append(owed, t.hintFor)
		} else {
			owed = append(owed, t.node)
		}
	}

	// Phase 1: the first target that accepts coordinates the write.
	var obj Object[V]
	coord := -1
	for i := 0; i < len(ts); i++ {
		t := ts[i]
		start := c.clk.Now()
		r, err := c.replica(t.node)
		if err == nil {
			obj, err = r.Update(opCtx, key, w)
		}
		c.observe(opCtx, t.node, start, err, false)
		if err == nil {
			coord = i
			break
		}
		if cause := stopCause(ctx, opCtx); cause != nil {
			return fail(0, cause)
		}
		failed = append(failed, ReplicaError{Index: i, Node: t.node, Err: err})
		if !standIn(t) {
			owe(t)
		}
		if len(ts)-i-1 < need {
			return fail(0, nil)
		}
	}
	node := ts[coord].node
	if ts[coord].hintFor != "" {
		c.hint(ts[coord].hintFor, key, obj)
	}
	for _, n := range owed {
		c.hint(n, key, obj)
	}
	out := w.Context.Clone()
	out.Set(node, obj.Context.Get(node))

	// Phase 2: replicate the object to the other targets.
	ch := make(chan putReply, len(ts)+len(spares))
	pending := 0
	send := func(i int) {
		t := ts[i]
		if c.goFn(func() {
			start := c.clk.Now()
			r, err := c.replica(t.node)
			if err == nil {
				err = r.Put(opCtx, key, obj)
			}
			c.observe(opCtx, t.node, start, err, false)
			ch <- putReply{i, err}
		}) {
			pending++
		}
	}
	for i := coord + 1; i < len(ts); i++ {
		send(i)
	}
	acks := 1
	// settle records one reply: hints for stand-ins that stored the object
	// and for replicas that failed.
	settle := func(rp putReply) bool {
		t := ts[rp.i]
		if rp.err == nil {
			if t.hintFor != "" {
				c.hint(t.hintFor, key, obj)
			}
			return true
		}
		if standIn(t) {
			send(len(ts) - 1)
			return false
		}
		owed = owed[:0]
		owe(t)
		for _, n := range owed {
			c.hint(n, key, obj)
		}
		return false
	}
	for acks < need {
		if acks+pending < need {
			return fail(acks, nil)
		}
		select {
		case rp := <-ch:
			pending--
			if settle(rp) {
				acks++
			} else {
				failed = append(failed, ReplicaError{Index: rp.i, Node: ts[rp.i].node, Err: rp.err})
			}
		case <-ctx.Done():
			return fail(acks, ctx.Err())
		case <-opCtx.Done():
			return fail(acks, causeOf(opCtx))
		}
	}
	unlink()
	if pending == 0 || !c.goFn(func() {
		defer cancel()
		for ; pending > 0; pending-- {
			settle(<-ch)
		}
	}) {
		cancel()
	}
	return out, nil
}
