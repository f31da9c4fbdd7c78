package crdt

import (
	"maps"
	"slices"

	"github.com/distkit/distkit/clock"
)

// dotIndex is the dot store of an ORSet (a map from element to its live
// dots) together with a reverse index from dot to element. The index lets a
// delta that covers a few dots remove them in time proportional to the
// delta rather than to the set. It is built the first time a store larger
// than smallStore receives a merge, and maintained from then on; deltas and
// small sets never pay for it.
type dotIndex[E comparable] struct {
	elems map[E][]clock.Dot       // dots sorted by compareDots, never empty
	byDot map[string]map[uint64]E // replica -> counter -> element; nil until built
}

func (x *dotIndex[E]) index(ds []clock.Dot, e E) {
	for _, d := range ds {
		m := x.byDot[d.Replica]
		if m == nil {
			m = map[uint64]E{}
			x.byDot[d.Replica] = m
		}
		m[d.Counter] = e
	}
}

func (x *dotIndex[E]) buildIndex() {
	x.byDot = map[string]map[uint64]E{}
	for e, ds := range x.elems {
		x.index(ds, e)
	}
}

func (x *dotIndex[E]) unindex(ds []clock.Dot) {
	if x.byDot == nil {
		return
	}
	for _, d := range ds {
		m := x.byDot[d.Replica]
		delete(m, d.Counter)
		if len(m) == 0 {
			delete(x.byDot, d.Replica)
		}
	}
}

// set replaces the dots of e; no dots removes e. ds must be sorted and is
// retained.
func (x *dotIndex[E]) set(e E, ds []clock.Dot) {
	if old, ok := x.elems[e]; ok {
		x.unindex(old)
	}
	if len(ds) == 0 {
		delete(x.elems, e)
		return
	}
	if x.elems == nil {
		x.elems = map[E][]clock.Dot{}
	}
	x.elems[e] = ds
	if x.byDot != nil {
		x.index(ds, e)
	}
}

// join sets x to the join of (x, c1) and (o, c2) for the dot store; the
// caller merges the contexts afterwards.
func (x *dotIndex[E]) join(o *dotIndex[E], c1, c2 *clock.CausalContext) {
	for e, od := range o.elems {
		sd := x.elems[e]
		if nd := joinDots(sd, od, c1, c2); !slices.Equal(nd, sd) {
			x.set(e, nd)
		}
	}
	// Elements o does not hold lose the dots c2 covers.
	x.dropCovered(c2, func(e E) bool { _, ok := o.elems[e]; return ok })
}

// smallStore is the size up to which dropCovered simply tests every live
// dot against the context.
const smallStore = 8

// dropCovered removes from x every dot that c covers, except the dots of
// elements for which keep returns true. It visits, per replica, either the
// dots c's vector covers or x's dots of that replica, whichever is fewer.
func (x *dotIndex[E]) dropCovered(c *clock.CausalContext, keep func(E) bool) {
	if len(x.elems) == 0 {
		return
	}
	type hit struct {
		e E
		d clock.Dot
	}
	var drop []hit
	if len(x.elems) <= smallStore {
		for e, ds := range x.elems {
			for _, d := range ds {
				if c.Contains(d) && (keep == nil || !keep(e)) {
					drop = append(drop, hit{e, d})
				}
			}
		}
	} else {
		if x.byDot == nil {
			x.buildIndex()
		}
		for r, n := range c.Vector().All() {
			m := x.byDot[r]
			switch {
			case len(m) == 0:
			case uint64(len(m)) <= n:
				for k, e := range m {
					if k <= n && (keep == nil || !keep(e)) {
						drop = append(drop, hit{e, clock.Dot{Replica: r, Counter: k}})
					}
				}
			default:
				for k := uint64(1); k <= n; k++ {
					if e, ok := m[k]; ok && (keep == nil || !keep(e)) {
						drop = append(drop, hit{e, clock.Dot{Replica: r, Counter: k}})
					}
				}
			}
		}
		for d := range c.Cloud() {
			if e, ok := x.byDot[d.Replica][d.Counter]; ok && (keep == nil || !keep(e)) {
				drop = append(drop, hit{e, d})
			}
		}
	}
	for _, h := range drop {
		old := x.elems[h.e]
		nd := make([]clock.Dot, 0, len(old))
		for _, od := range old {
			if od != h.d {
				nd = append(nd, od)
			}
		}
		x.set(h.e, nd)
	}
}

// joinDots returns, in a new slice, the dots of one element after a join:
// those both sides hold, plus those one side holds and the other's context
// has not seen.
// When both sides hold the same dots, s itself is returned.
func joinDots(s, o []clock.Dot, c1, c2 *clock.CausalContext) []clock.Dot {
	if slices.Equal(s, o) {
		return s
	}
	out := make([]clock.Dot, 0, max(len(s), len(o)))
	i, j := 0, 0
	for i < len(s) || j < len(o) {
		var c int
		switch {
		case j == len(o):
			c = -1
		case i == len(s):
			c = 1
		default:
			c = compareDots(s[i], o[j])
		}
		switch {
		case c == 0:
			out = append(out, s[i])
			i++
			j++
		case c < 0:
			if !c2.Contains(s[i]) {
				out = append(out, s[i])
			}
			i++
		default:
			if !c1.Contains(o[j]) {
				out = append(out, o[j])
			}
			j++
		}
	}
	return out
}

// has reports whether d is a live dot.
func (x *dotIndex[E]) has(d clock.Dot) bool {
	if len(x.elems) <= smallStore {
		for _, ds := range x.elems {
			if slices.Contains(ds, d) {
				return true
			}
		}
		return false
	}
	if x.byDot == nil {
		x.buildIndex()
	}
	_, ok := x.byDot[d.Replica][d.Counter]
	return ok
}

func (x *dotIndex[E]) clone() dotIndex[E] {
	var c dotIndex[E]
	if len(x.elems) == 0 {
		return c
	}
	c.elems = make(map[E][]clock.Dot, len(x.elems))
	for e, ds := range x.elems {
		c.elems[e] = slices.Clone(ds)
	}
	return c
}

func (x *dotIndex[E]) equal(o *dotIndex[E]) bool {
	return maps.EqualFunc(x.elems, o.elems, slices.Equal[[]clock.Dot])
}

func (x *dotIndex[E]) allDots(yield func(clock.Dot) bool) {
	for _, ds := range x.elems {
		for _, d := range ds {
			if !yield(d) {
				return
			}
		}
	}
}

// appendBinary appends the element count, then each element in ascending
// order of encoded bytes with its dots (through the context's replica table).
func (x *dotIndex[E]) appendBinary(b []byte, t dotTable, c elemCodec[E]) ([]byte, error) {
	type entry struct {
		k  []byte
		ds []clock.Dot
	}
	entries := make([]entry, 0, len(x.elems))
	if len(x.elems) > 0 {
		codec, err := c.get()
		if err != nil {
			return b, err
		}
		for e, ds := range x.elems {
			k, err := codec.Append(nil, e)
			if err != nil {
				return b, err
			}
			entries = append(entries, entry{k, ds})
		}
		slices.SortFunc(entries, func(a, b entry) int { return compareBytes(a.k, b.k) })
	}
	b = appendUvarintCount(b, len(entries))
	for _, en := range entries {
		b = appendBytes(b, en.k)
		b = appendUvarintCount(b, len(en.ds))
		for _, d := range en.ds {
			b = t.appendDot(b, d)
		}
	}
	return b, nil
}

// decode reads what appendBinary wrote and finishes d. Every dot must be in
// ctx and belong to one element only.
func (x *dotIndex[E]) decode(d *decoder, c elemCodec[E], ctx *clock.CausalContext) error {
	n := d.Count(4)
	var codec Codec[E]
	if n > 0 && d.Err() == nil {
		var err error
		if codec, err = c.get(); err != nil {
			return err
		}
	}
	var prev []byte
	seen := map[clock.Dot]struct{}{}
	for k := 0; k < n && d.Err() == nil; k++ {
		p := d.elem(prev, k == 0)
		prev = p
		e := decodeElem(d, codec, p)
		m := d.Count(2)
		if d.Err() == nil && m == 0 {
			d.Fail("element without dots")
		}
		ds := make([]clock.Dot, 0, m)
		for i := 0; i < m && d.Err() == nil; i++ {
			dot := d.dot()
			switch {
			case d.Err() != nil:
			case i > 0 && compareDots(ds[i-1], dot) >= 0:
				d.Fail("dots out of order or repeated at %v", dot)
			case !ctx.Contains(dot):
				d.Fail("dot %v not in the causal context", dot)
			default:
				if _, dup := seen[dot]; dup {
					d.Fail("dot %v held by two elements", dot)
				}
				seen[dot] = struct{}{}
				ds = append(ds, dot)
			}
		}
		if d.Err() == nil {
			if _, dup := x.elems[e]; dup {
				d.Fail("element decoded twice")
			}
			x.set(e, ds)
		}
	}
	return d.finish()
}
