package crdt

import (
	"iter"
	"maps"
	"slices"

	"github.com/distkit/distkit/clock"
)

// ORSet is an add-wins observed-remove set in the optimised delta-state
// form: every add is tagged with a fresh [clock.Dot], the set keeps the dots
// of live elements only, and one [clock.CausalContext] records every dot the
// replica has seen. A remove deletes the element's dots; the context still
// covers them, which is what tells a later merge that the element was
// removed rather than not yet added. Removed elements leave nothing behind,
// so the state is O(live elements + context), and the context stays a
// version vector once replicas have exchanged everything.
//
// Semantics: Remove removes only the adds it has observed; an Add
// concurrent with a Remove of the same element survives (add wins).
//
// Deltas (the results of Add, Remove and Clear) are ORSets holding only the
// change. They merge correctly in any order, duplicated or late, because
// the context's dot cloud records exactly which dots a delta covers; causal
// delivery is not needed.
//
// The zero value is an empty set with replica id "": use it as a merge or
// decoding target, and [NewORSet] for a replica that writes. Deltas have
// replica id "" too and are meant to be merged or sent, not mutated. An
// ORSet is not safe for concurrent use.
type ORSet[E comparable] struct {
	replica string
	ctx     clock.CausalContext
	dots    dotIndex[E]
	codec   elemCodec[E]
}

// NewORSet returns an empty set for replica. Every replica must have a
// distinct id, and a replica id must not be reused after its state is lost.
func NewORSet[E comparable](replica string) *ORSet[E] { return &ORSet[E]{replica: replica} }

// Replica returns the id the set writes under.
func (s *ORSet[E]) Replica() string { return s.replica }

// SetCodec sets the codec used to encode and decode elements, needed only
// for element types the package cannot encode by itself (see [Codec]).
// Deltas returned by s inherit it.
func (s *ORSet[E]) SetCodec(c Codec[E]) { s.codec.user = c }

func (s *ORSet[E]) delta() *ORSet[E] { return &ORSet[E]{codec: s.codec} }

// Add adds e and returns the delta: e with one new dot, and a context of
// that dot plus the dots of e it replaces.
func (s *ORSet[E]) Add(e E) *ORSet[E] {
	d := s.delta()
	old := s.dots.elems[e]
	for _, od := range old {
		d.ctx.Add(od)
	}
	dot := s.ctx.Next(s.replica)
	d.ctx.Add(dot)
	d.dots.set(e, []clock.Dot{dot})
	s.dots.set(e, []clock.Dot{dot})
	return d
}

// Remove removes e, if present, and returns the delta: no elements, and a
// context holding the dots of e that this replica had observed. Adds of e
// that this replica has not seen are not affected.
func (s *ORSet[E]) Remove(e E) *ORSet[E] {
	d := s.delta()
	for _, od := range s.dots.elems[e] {
		d.ctx.Add(od)
	}
	s.dots.set(e, nil)
	return d
}

// Clear removes every element this replica has observed and returns the
// delta.
func (s *ORSet[E]) Clear() *ORSet[E] {
	d := s.delta()
	for _, ds := range s.dots.elems {
		for _, od := range ds {
			d.ctx.Add(od)
		}
	}
	s.dots = dotIndex[E]{}
	return d
}

// Contains reports whether e is in the set.
func (s *ORSet[E]) Contains(e E) bool { _, ok := s.dots.elems[e]; return ok }

// Len returns the number of elements.
func (s *ORSet[E]) Len() int { return len(s.dots.elems) }

// Elements returns the elements in a new slice, sorted as described at
// [GSet.Elements].
func (s *ORSet[E]) Elements() []E {
	es := slices.Collect(maps.Keys(s.dots.elems))
	sortElems(es, s.codec)
	return es
}

// All returns an iterator over the elements in unspecified order. The set
// must not be modified during iteration.
func (s *ORSet[E]) All() iter.Seq[E] { return maps.Keys(s.dots.elems) }

// Context returns a copy of the set's causal context: every dot it has seen.
func (s *ORSet[E]) Context() clock.CausalContext { return s.ctx.Clone() }

// Merge merges o, a delta or a full state, into s: an element's dot
// survives if both sides have it, or if one side has it and the other has
// not seen it. A nil o is a no-op.
func (s *ORSet[E]) Merge(o *ORSet[E]) {
	if o == nil || o == s {
		return
	}
	s.dots.join(&o.dots, &s.ctx, &o.ctx)
	s.ctx.Merge(o.ctx)
}

// Clone returns an independent copy of s.
func (s *ORSet[E]) Clone() *ORSet[E] {
	return &ORSet[E]{replica: s.replica, ctx: s.ctx.Clone(), dots: s.dots.clone(), codec: s.codec}
}

// Equal reports whether s and o hold the same state: the same elements with
// the same dots, and the same causal context.
func (s *ORSet[E]) Equal(o *ORSet[E]) bool { return s.ctx.Equal(o.ctx) && s.dots.equal(&o.dots) }

// AppendBinary appends the deterministic encoding of s: format version, type
// tag, the causal context, a table of the replica ids of the elements' dots,
// then each element (length-prefixed, in ascending order of encoded bytes)
// with its dots. The local replica id is not encoded.
func (s *ORSet[E]) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagORSet)
	b, t := appendContext(b, &s.ctx)
	return s.dots.appendBinary(b, t, s.codec)
}

// MarshalBinary returns the encoding described at [ORSet.AppendBinary].
func (s *ORSet[E]) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// UnmarshalBinary replaces s's state with the decoded one, keeping s's
// replica id and codec. It accepts only canonical encodings of valid states
// (every dot in the context, no dot under two elements); on error, which
// wraps [ErrMalformed] or [ErrNoCodec], s is unchanged.
//
// Restoring a writing replica from an encoding is safe only if the encoding
// holds every dot the replica ever created; otherwise use a new replica id.
func (s *ORSet[E]) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagORSet)
	ctx := d.context()
	var dots dotIndex[E]
	if err := dots.decode(d, s.codec, &ctx); err != nil {
		return err
	}
	s.ctx, s.dots = ctx, dots
	return nil
}
