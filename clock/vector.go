package clock

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/distkit/distkit/internal/wire"
)

// Vector is a version vector (vector clock): one counter per replica id.
// Replicas absent from the vector have counter 0.
//
// Entries are kept in a slice sorted by replica id, so Compare and Merge are
// allocation-free merge walks and the binary encoding is deterministic:
// equal vectors encode to equal bytes.
//
// The zero value is the empty vector, ready to use. A Vector is not safe for
// concurrent mutation; methods with value receivers only read. Assigning a
// Vector shares its storage: use Clone for an independent copy.
type Vector struct {
	e []entry // sorted by id, counters > 0
}

type entry struct {
	id string
	n  uint64
}

// search returns the position of id in v.e and whether it is present.
func (v Vector) search(id string) (int, bool) {
	return slices.BinarySearchFunc(v.e, id, func(e entry, id string) int { return strings.Compare(e.id, id) })
}

// Tick increments the counter of replica id and returns its new value.
func (v *Vector) Tick(id string) uint64 {
	i, ok := v.search(id)
	if ok {
		v.e[i].n++
		return v.e[i].n
	}
	v.e = slices.Insert(v.e, i, entry{id, 1})
	return 1
}

// Get returns the counter of replica id, 0 if absent.
func (v Vector) Get(id string) uint64 {
	if i, ok := v.search(id); ok {
		return v.e[i].n
	}
	return 0
}

// Set sets the counter of replica id to n. Setting 0 removes the entry.
func (v *Vector) Set(id string, n uint64) {
	i, ok := v.search(id)
	switch {
	case ok && n == 0:
		v.e = slices.Delete(v.e, i, i+1)
	case ok:
		v.e[i].n = n
	case n != 0:
		v.e = slices.Insert(v.e, i, entry{id, n})
	}
}

// Len returns the number of replicas with a non-zero counter.
func (v Vector) Len() int { return len(v.e) }

// All returns an iterator over the non-zero entries in ascending replica id
// order.
func (v Vector) All() iter.Seq2[string, uint64] {
	return func(yield func(string, uint64) bool) {
		for _, e := range v.e {
			if !yield(e.id, e.n) {
				return
			}
		}
	}
}

// Merge sets v to the entry-wise maximum of v and o: the least vector that
// descends from both. It allocates only when o has replicas v lacks and v's
// storage has no room for them.
func (v *Vector) Merge(o Vector) {
	// Count the ids of o missing from v while raising the shared ones.
	missing := 0
	i, j := 0, 0
	for i < len(v.e) && j < len(o.e) {
		switch c := strings.Compare(v.e[i].id, o.e[j].id); {
		case c < 0:
			i++
		case c > 0:
			missing++
			j++
		default:
			v.e[i].n = max(v.e[i].n, o.e[j].n)
			i++
			j++
		}
	}
	missing += len(o.e) - j
	if missing == 0 {
		return
	}
	// Grow and merge from the back so no entry is overwritten before it moves.
	n := len(v.e)
	v.e = slices.Grow(v.e, missing)[:n+missing]
	i, j = n-1, len(o.e)-1
	for k := len(v.e) - 1; j >= 0; k-- {
		if i >= 0 && v.e[i].id >= o.e[j].id {
			if v.e[i].id == o.e[j].id { // already raised above
				j--
			}
			v.e[k] = v.e[i]
			i--
		} else {
			v.e[k] = o.e[j]
			j--
		}
	}
}

// Compare reports the causal relation of v to o: Equal, Before (o descends
// from v), After (v descends from o) or Concurrent.
func (v Vector) Compare(o Vector) Order {
	less, greater := false, false
	i, j := 0, 0
	for i < len(v.e) && j < len(o.e) {
		a, b := &v.e[i], &o.e[j]
		if a.id == b.id {
			if a.n < b.n {
				less = true
			} else if a.n > b.n {
				greater = true
			}
			i++
			j++
		} else if a.id < b.id {
			greater = true // v has an event o lacks
			i++
		} else {
			less = true
			j++
		}
		if less && greater {
			return Concurrent
		}
	}
	greater = greater || i < len(v.e)
	less = less || j < len(o.e)
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// Descends reports whether v has seen every event o has (v ≥ o): Compare
// returns Equal or After.
func (v Vector) Descends(o Vector) bool {
	c := v.Compare(o)
	return c == Equal || c == After
}

// Clone returns an independent copy of v.
func (v Vector) Clone() Vector {
	if len(v.e) == 0 {
		return Vector{}
	}
	return Vector{e: slices.Clone(v.e)}
}

// String formats v as {id:n id:n} in replica id order.
func (v Vector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for k, e := range v.e {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Quote(e.id))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(e.n, 10))
	}
	b.WriteByte('}')
	return b.String()
}

// vectorVersion is the first byte of a Vector's binary encoding.
const vectorVersion = 1

// AppendBinary appends the binary encoding of v to b: a version byte, the
// number of entries, then each replica id (length-prefixed) and counter, all
// as unsigned varints, in replica id order. It never returns an error.
func (v Vector) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, vectorVersion)
	return v.appendEntries(b), nil
}

func (v Vector) appendEntries(b []byte) []byte {
	b = wire.AppendUvarint(b, uint64(len(v.e)))
	for _, e := range v.e {
		b = wire.AppendString(b, e.id)
		b = wire.AppendUvarint(b, e.n)
	}
	return b
}

// MarshalBinary returns the deterministic binary encoding of v described at
// AppendBinary.
func (v Vector) MarshalBinary() ([]byte, error) { return v.AppendBinary(nil) }

// UnmarshalBinary sets v from data produced by MarshalBinary. It rejects,
// with an error wrapping ErrMalformed, an unknown version, truncated input,
// trailing bytes, non-minimal varints, ids out of order or repeated, and zero
// counters or counters above [MaxCounter], so that every accepted input is
// the unique encoding of a value whose counters can still grow.
// On error v is unchanged.
func (v *Vector) UnmarshalBinary(data []byte) error {
	d := wire.NewDecoder(data, ErrMalformed, "vector")
	d.Version(vectorVersion)
	e := entries(&d)
	if err := d.Finish(); err != nil {
		return err
	}
	v.e = e
	return nil
}

// MarshalJSON encodes v as a JSON object from replica id to counter, keys in
// ascending order.
func (v Vector) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for k, e := range v.e {
		if k > 0 {
			b = append(b, ',')
		}
		id, err := json.Marshal(e.id)
		if err != nil {
			return nil, err
		}
		b = append(b, id...)
		b = append(b, ':')
		b = strconv.AppendUint(b, e.n, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON sets v from a JSON object of replica id to non-negative
// integer counter up to [MaxCounter]. Zero counters are dropped; repeated ids
// are an error. On
// error v is unchanged. As is the convention, JSON null leaves v unchanged.
func (v *Vector) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%w: vector: %v", ErrMalformed, err)
	}
	if m == nil {
		return fmt.Errorf("%w: vector: not a JSON object", ErrMalformed)
	}
	if err := checkDuplicateKeys(data, len(m)); err != nil {
		return err
	}
	e := make([]entry, 0, len(m))
	for id, raw := range m {
		n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 63)
		if err != nil {
			return fmt.Errorf("%w: vector: counter of %q: %v", ErrMalformed, id, err)
		}
		if n != 0 {
			e = append(e, entry{id, n})
		}
	}
	slices.SortFunc(e, func(a, b entry) int { return strings.Compare(a.id, b.id) })
	v.e = e
	return nil
}

// checkDuplicateKeys reports an error if the JSON object in data has more
// keys than the distinct count unique.
func checkDuplicateKeys(data []byte, unique int) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return fmt.Errorf("%w: vector: %v", ErrMalformed, err)
	}
	keys := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil { // key
			return fmt.Errorf("%w: vector: %v", ErrMalformed, err)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("%w: vector: %v", ErrMalformed, err)
		}
		keys++
	}
	if keys != unique {
		return fmt.Errorf("%w: vector: repeated replica id", ErrMalformed)
	}
	return nil
}
