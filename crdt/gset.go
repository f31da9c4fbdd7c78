package crdt

import (
	"iter"
	"maps"
	"slices"
)

// GSet is a grow-only set: elements can be added, never removed. Merge is
// set union.
//
// The zero value is an empty set, ready to use. A GSet is not safe for
// concurrent use.
type GSet[E comparable] struct {
	m     map[E]struct{}
	codec elemCodec[E]
}

// NewGSet returns an empty set.
func NewGSet[E comparable]() *GSet[E] { return &GSet[E]{} }

// SetCodec sets the codec used to encode and decode elements. It is needed
// only for element types the package cannot encode by itself (see [Codec]).
// Deltas returned by s inherit it.
func (s *GSet[E]) SetCodec(c Codec[E]) { s.codec.user = c }

// Add adds e and returns the delta: a set holding only e.
func (s *GSet[E]) Add(e E) *GSet[E] {
	if s.m == nil {
		s.m = map[E]struct{}{}
	}
	s.m[e] = struct{}{}
	return &GSet[E]{m: map[E]struct{}{e: {}}, codec: s.codec}
}

// Contains reports whether e is in the set.
func (s *GSet[E]) Contains(e E) bool { _, ok := s.m[e]; return ok }

// Len returns the number of elements.
func (s *GSet[E]) Len() int { return len(s.m) }

// Elements returns the elements in a new slice, sorted: in natural order for
// predeclared ordered types, otherwise by encoded bytes when a codec is
// available; else the order is unspecified.
func (s *GSet[E]) Elements() []E {
	es := slices.Collect(maps.Keys(s.m))
	sortElems(es, s.codec)
	return es
}

// All returns an iterator over the elements in unspecified order. The set
// must not be modified during iteration.
func (s *GSet[E]) All() iter.Seq[E] { return maps.Keys(s.m) }

// Merge adds every element of o, a delta or a full state, to s. A nil o is a
// no-op.
func (s *GSet[E]) Merge(o *GSet[E]) {
	if o == nil || len(o.m) == 0 {
		return
	}
	if s.m == nil {
		s.m = make(map[E]struct{}, len(o.m))
	}
	for e := range o.m {
		s.m[e] = struct{}{}
	}
}

// Clone returns an independent copy of s.
func (s *GSet[E]) Clone() *GSet[E] { return &GSet[E]{m: maps.Clone(s.m), codec: s.codec} }

// Equal reports whether s and o hold the same elements.
func (s *GSet[E]) Equal(o *GSet[E]) bool {
	return maps.Equal(s.m, o.m)
}

// AppendBinary appends the deterministic encoding of s: format version,
// type tag, the element count, then each element length-prefixed, in
// ascending order of encoded bytes.
func (s *GSet[E]) AppendBinary(b []byte) ([]byte, error) {
	enc, err := encodeSorted(slices.Collect(maps.Keys(s.m)), s.codec)
	if err != nil {
		return b, err
	}
	b = appendHeader(b, tagGSet)
	b = appendUvarintCount(b, len(enc))
	for _, p := range enc {
		b = appendBytes(b, p)
	}
	return b, nil
}

// MarshalBinary returns the encoding described at [GSet.AppendBinary].
func (s *GSet[E]) MarshalBinary() ([]byte, error) { return s.AppendBinary(nil) }

// UnmarshalBinary replaces s's elements with the decoded ones. Only
// canonical encodings are accepted; on error s is unchanged.
func (s *GSet[E]) UnmarshalBinary(data []byte) error {
	codec, err := s.codec.get()
	if err != nil {
		return err
	}
	d := newDecoder(data, tagGSet)
	n := d.Count(1)
	m := make(map[E]struct{}, n)
	var prev []byte
	for k := 0; k < n && d.Err() == nil; k++ {
		p := d.elem(prev, k == 0)
		prev = p
		if d.Err() != nil {
			break
		}
		e := decodeElem(d, codec, p)
		if _, dup := m[e]; dup && d.Err() == nil {
			d.Fail("element decoded twice")
		}
		m[e] = struct{}{}
	}
	if err := d.finish(); err != nil {
		return err
	}
	if len(m) == 0 {
		m = nil
	}
	s.m = m
	return nil
}
