package crdt

import (
	"slices"

	"github.com/distkit/distkit/clock"
)

// dotVal is one entry of a dot function: a value written under a dot.
type dotVal[V any] struct {
	dot clock.Dot
	v   V
}

// dotFun is a small dot store mapping dots to values, sorted by dot. The
// registers, the causal counter and the flag use it; they hold a handful of
// entries (one per concurrent writer), so a sorted slice beats a map.
type dotFun[V any] []dotVal[V]

// join returns, in a new slice, the entries that survive the join of
// (s, c1) and (o, c2). Entries with the same dot carry the same value by
// construction, so s's copy is kept.
func (s dotFun[V]) join(o dotFun[V], c1, c2 *clock.CausalContext) dotFun[V] {
	out := make(dotFun[V], 0, max(len(s), len(o)))
	i, j := 0, 0
	for i < len(s) || j < len(o) {
		var c int
		switch {
		case j == len(o):
			c = -1
		case i == len(s):
			c = 1
		default:
			c = compareDots(s[i].dot, o[j].dot)
		}
		switch {
		case c == 0:
			out = append(out, s[i])
			i++
			j++
		case c < 0:
			if !c2.Contains(s[i].dot) {
				out = append(out, s[i])
			}
			i++
		default:
			if !c1.Contains(o[j].dot) {
				out = append(out, o[j])
			}
			j++
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// drop returns s without the entries c covers (the join with an empty
// store whose context is c).
func (s dotFun[V]) drop(c *clock.CausalContext) dotFun[V] {
	return s.join(nil, nil, c)
}

func (s dotFun[V]) has(d clock.Dot) bool {
	_, ok := slices.BinarySearchFunc(s, d, func(e dotVal[V], d clock.Dot) int { return compareDots(e.dot, d) })
	return ok
}

func (s dotFun[V]) dots(yield func(clock.Dot) bool) {
	for _, e := range s {
		if !yield(e.dot) {
			return
		}
	}
}

// addDotsTo adds every dot of s to c.
func (s dotFun[V]) addDotsTo(c *clock.CausalContext) {
	for _, e := range s {
		c.Add(e.dot)
	}
}

func (s dotFun[V]) equal(o dotFun[V], eq func(a, b V) bool) bool {
	return slices.EqualFunc(s, o, func(a, b dotVal[V]) bool { return a.dot == b.dot && eq(a.v, b.v) })
}

// appendBinary appends the entry count, then each entry's dot (through the
// context's replica table) and value (through appendV) in dot order.
func (s dotFun[V]) appendBinary(b []byte, t dotTable, appendV func([]byte, V) ([]byte, error)) ([]byte, error) {
	b = appendUvarintCount(b, len(s))
	var err error
	for _, e := range s {
		b = t.appendDot(b, e.dot)
		if b, err = appendV(b, e.v); err != nil {
			return b, err
		}
	}
	return b, nil
}

// decodeDotFun reads what appendBinary wrote (not finishing d). Every dot
// must be in ctx; minV is the smallest encoded size of a value.
func decodeDotFun[V any](d *decoder, ctx *clock.CausalContext, minV int, readV func(*decoder) V) dotFun[V] {
	n := d.Count(2 + minV)
	if d.Err() != nil || n == 0 {
		return nil
	}
	out := make(dotFun[V], 0, n)
	for k := 0; k < n && d.Err() == nil; k++ {
		dot := d.dot()
		v := readV(d)
		switch {
		case d.Err() != nil:
		case k > 0 && compareDots(out[k-1].dot, dot) >= 0:
			d.Fail("dots out of order or repeated at %v", dot)
		case !ctx.Contains(dot):
			d.Fail("dot %v not in the causal context", dot)
		default:
			out = append(out, dotVal[V]{dot, v})
		}
	}
	return out
}
