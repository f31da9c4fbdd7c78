package quorum

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/distkit/distkit/clock"
)

// Object is the replicated state of one key: the versions written
// concurrently (siblings), each identified by a dot, and the causal context
// that covers every dot the object has seen. It is a dotted version clock.Vector
// set: a sibling survives a merge unless the other side has seen its dot
// without keeping it, so concurrent writes are never lost and a write that
// saw a version replaces it.
//
// The zero Object is the state of a key never written. Objects are values:
// methods return new Objects and never modify their receiver; the values V
// inside are copied shallowly and must be treated as immutable.
type Object[V any] struct {
	// Context covers every dot the object has seen, kept or superseded.
	Context clock.Vector
	// Siblings are the surviving versions, ordered by dot.
	Siblings []Sibling[V]
}

// Sibling is one version of a key.
type Sibling[V any] struct {
	Dot     clock.Dot // the write that made this version: (coordinating replica, counter)
	Value   V         // the value written; zero for a delete
	Deleted bool      // a tombstone: the key was deleted by this write
}

// Write is a new version of a key as a client asks for it: the value (or a
// delete) and the causal context the client read, which names the versions
// this write replaces.
type Write[V any] struct {
	Context clock.Vector // from a previous read; zero for a blind write
	Value   V
	Delete  bool
}

// Update applies w as a write coordinated by replica and returns the new
// object: siblings covered by w.Context are dropped, and the new version gets
// the next dot of replica. replica must name the replica that stores the
// result, and a replica must coordinate the writes of a key one at a time
// (Replica.Update's contract), so dots are never reused.
func (o Object[V]) Update(replica string, w Write[V]) Object[V] {
	out := Object[V]{Context: o.Context.Clone()}
	for _, s := range o.Siblings {
		if !covers(w.Context, s.Dot) {
			out.Siblings = append(out.Siblings, s)
		}
	}
	n := max(o.Context.Get(replica), w.Context.Get(replica)) + 1
	out.Context.Merge(w.Context)
	out.Context.Set(replica, n)
	s := Sibling[V]{Dot: clock.Dot{Replica: replica, Counter: n}, Deleted: w.Delete}
	if !w.Delete {
		s.Value = w.Value
	}
	out.Siblings = append(out.Siblings, s)
	slices.SortFunc(out.Siblings, cmpSibling[V])
	return out
}

// Merge returns the join of o and p: the union of what both have seen, with
// every sibling that one side superseded dropped. Merge is commutative,
// associative and idempotent.
func (o Object[V]) Merge(p Object[V]) Object[V] {
	out := Object[V]{Context: o.Context.Clone()}
	out.Context.Merge(p.Context)
	i, j := 0, 0
	for i < len(o.Siblings) || j < len(p.Siblings) {
		var c int
		switch {
		case i == len(o.Siblings):
			c = 1
		case j == len(p.Siblings):
			c = -1
		default:
			c = cmpDot(o.Siblings[i].Dot, p.Siblings[j].Dot)
		}
		switch {
		case c == 0: // both kept it
			out.Siblings = append(out.Siblings, o.Siblings[i])
			i++
			j++
		case c < 0:
			if !covers(p.Context, o.Siblings[i].Dot) {
				out.Siblings = append(out.Siblings, o.Siblings[i])
			}
			i++
		default:
			if !covers(o.Context, p.Siblings[j].Dot) {
				out.Siblings = append(out.Siblings, p.Siblings[j])
			}
			j++
		}
	}
	return out
}

// Values returns the values of the live (not deleted) siblings, in dot order.
func (o Object[V]) Values() []V {
	var out []V
	for _, s := range o.Siblings {
		if !s.Deleted {
			out = append(out, s.Value)
		}
	}
	return out
}

// Deleted reports whether the object holds versions and all of them are
// tombstones.
func (o Object[V]) Deleted() bool {
	for _, s := range o.Siblings {
		if !s.Deleted {
			return false
		}
	}
	return len(o.Siblings) > 0
}

// IsZero reports whether the object has seen no write.
func (o Object[V]) IsZero() bool { return o.Context.Len() == 0 && len(o.Siblings) == 0 }

// Digest returns a 64-bit hash of the object's causal state: its context and
// its siblings' dots and tombstone flags. Since a dot names exactly one
// write, equal digests mean equal objects (up to hash collisions) without
// hashing the values. Anti-entropy compares digests.
func (o Object[V]) Digest() uint64 {
	h := uint64(fnvOffset)
	add := func(x uint64) { h = mix64(h ^ x) }
	for id, n := range o.Context.All() {
		add(hashKey(id))
		add(n)
	}
	add(uint64(len(o.Siblings)))
	for _, s := range o.Siblings {
		add(hashKey(s.Dot.Replica))
		add(s.Dot.Counter)
		if s.Deleted {
			add(1)
		} else {
			add(2)
		}
	}
	return h
}

// Clone returns a copy of o that shares no slices with it (values V are
// copied shallowly).
func (o Object[V]) Clone() Object[V] {
	return Object[V]{Context: o.Context.Clone(), Siblings: slices.Clone(o.Siblings)}
}

func covers(v clock.Vector, d clock.Dot) bool { return v.Get(d.Replica) >= d.Counter }

func cmpDot(a, b clock.Dot) int {
	if c := strings.Compare(a.Replica, b.Replica); c != 0 {
		return c
	}
	return cmp.Compare(a.Counter, b.Counter)
}

func cmpSibling[V any](a, b Sibling[V]) int { return cmpDot(a.Dot, b.Dot) }

// Validate reports whether o is well formed, as every Object built by
// Update and Merge is: siblings in strictly increasing dot order, each dot
// with a non-empty replica and a positive counter covered by the context.
// Decoders of objects received from outside should call it; the other
// methods assume it.
func (o Object[V]) Validate() error {
	for i, s := range o.Siblings {
		if s.Dot.Replica == "" || s.Dot.Counter == 0 {
			return fmt.Errorf("%w: sibling %d has invalid dot %v", ErrMalformed, i, s.Dot)
		}
		if !covers(o.Context, s.Dot) {
			return fmt.Errorf("%w: sibling dot %v not covered by context %v", ErrMalformed, s.Dot, o.Context)
		}
		if i > 0 && cmpDot(o.Siblings[i-1].Dot, s.Dot) >= 0 {
			return fmt.Errorf("%w: siblings out of order at %d", ErrMalformed, i)
		}
	}
	return nil
}
