package crdt

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/internal/wire"
)

// Every encoding starts with the format version and a tag naming the type,
// so bytes of one type are never accepted as another.
const formatVersion = 1

const (
	tagGCounter byte = iota + 1
	tagPNCounter
	tagGSet
	tagORSet
	tagLWWRegister
	tagMVRegister
	tagCCounter
	tagEWFlag
	tagORMap
)

var tagNames = [...]string{"", "GCounter", "PNCounter", "GSet", "ORSet", "LWWRegister", "MVRegister", "CCounter", "EWFlag", "ORMap"}

func appendHeader(b []byte, tag byte) []byte { return append(b, formatVersion, tag) }

func appendBytes(b, p []byte) []byte { return wire.AppendBytes(b, p) }

func appendString(b []byte, s string) []byte { return wire.AppendString(b, s) }

// appendContext appends a causal context and returns the replica table it
// wrote: the sorted ids of every replica in c, then c's vector entries and
// cloud dots as (table index, counter) pairs. The dot stores that follow
// refer to the same table, so each replica id is written once.
func appendContext(b []byte, c *clock.CausalContext) ([]byte, dotTable) {
	vv := c.Vector()
	ids := make([]string, 0, vv.Len())
	for id := range vv.All() {
		ids = append(ids, id)
	}
	for d := range c.Cloud() {
		if i, ok := slices.BinarySearch(ids, d.Replica); !ok {
			ids = slices.Insert(ids, i, d.Replica)
		}
	}
	t := dotTable{ids}
	b = t.append(b)
	b = appendUvarintCount(b, vv.Len())
	for id, n := range vv.All() {
		b = t.appendDot(b, clock.Dot{Replica: id, Counter: n})
	}
	var cloud []clock.Dot
	for d := range c.Cloud() {
		cloud = append(cloud, d)
	}
	b = appendUvarintCount(b, len(cloud))
	for _, d := range cloud {
		b = t.appendDot(b, d)
	}
	return b, t
}

// dotTable numbers replica ids so that each dot encodes as a small index
// and a counter.
type dotTable struct {
	ids []string // sorted
}

func (t dotTable) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(t.ids)))
	for _, id := range t.ids {
		b = appendString(b, id)
	}
	return b
}

func (t dotTable) appendDot(b []byte, d clock.Dot) []byte {
	i, _ := slices.BinarySearch(t.ids, d.Replica)
	b = binary.AppendUvarint(b, uint64(i))
	return binary.AppendUvarint(b, d.Counter)
}

// decoder reads the canonical encodings of this package: the shared
// primitives of wire.Decoder plus the replica table that dots refer to.
type decoder struct {
	wire.Decoder
	ids  []string // replica table
	used []bool
}

func newDecoder(data []byte, tag byte) *decoder {
	d := &decoder{Decoder: wire.NewDecoder(data, ErrMalformed, tagNames[tag])}
	if v := d.Byte(); d.Err() == nil && v != formatVersion {
		d.Fail("unknown format version %d", v)
	}
	if t := d.Byte(); d.Err() == nil && t != tag {
		name := "unknown type"
		if int(t) < len(tagNames) && t != 0 {
			name = tagNames[t]
		}
		d.Fail("tag %d (%s), want %d", t, name, tag)
	}
	return d
}

// context reads what appendContext wrote, keeping the replica table for the
// dots that follow. Only canonical input is accepted: the table lists
// exactly the context's replicas, and the context itself is canonical.
func (d *decoder) context() clock.CausalContext {
	var c clock.CausalContext
	d.table()
	// Re-express the context in clock's own encoding and let it check the
	// rest (cloud dots beyond the vector, no dot the vector could absorb).
	raw := []byte{1}
	nv := d.Count(2)
	raw = binary.AppendUvarint(raw, uint64(nv))
	prev := -1
	for k := 0; k < nv && d.Err() == nil; k++ {
		i := d.index()
		n := d.Uvarint()
		switch {
		case d.Err() != nil:
		case i <= prev:
			d.Fail("context vector out of order")
		case n == 0:
			d.Fail("zero counter in context vector")
		default:
			prev = i
			raw = appendString(raw, d.ids[i])
			raw = binary.AppendUvarint(raw, n)
		}
	}
	nc := d.Count(2)
	raw = binary.AppendUvarint(raw, uint64(nc))
	for k := 0; k < nc && d.Err() == nil; k++ {
		i := d.index()
		n := d.Uvarint()
		if d.Err() == nil {
			raw = appendString(raw, d.ids[i])
			raw = binary.AppendUvarint(raw, n)
		}
	}
	if d.Err() != nil {
		return c
	}
	d.Wrap(c.UnmarshalBinary(raw))
	for i, u := range d.used {
		if !u {
			d.Fail("replica table entry %q not in the context", d.ids[i])
			break
		}
	}
	return c
}

// index reads a replica table index.
func (d *decoder) index() int {
	i := d.Uvarint()
	if d.Err() == nil && i >= uint64(len(d.ids)) {
		d.Fail("replica index %d out of range", i)
	}
	if d.Err() != nil {
		return 0
	}
	d.used[i] = true
	return int(i)
}

// table reads a replica table: sorted, distinct ids.
func (d *decoder) table() {
	n := d.Count(1)
	if d.Err() != nil {
		return
	}
	d.ids = make([]string, 0, n)
	for k := 0; k < n && d.Err() == nil; k++ {
		id := d.String()
		if d.Err() == nil && k > 0 && strings.Compare(d.ids[k-1], id) >= 0 {
			d.Fail("replica table out of order or repeated at %q", id)
		}
		d.ids = append(d.ids, id)
	}
	d.used = make([]bool, len(d.ids))
}

// dot reads a dot that refers to the replica table.
func (d *decoder) dot() clock.Dot {
	i := d.index()
	c := d.Uvarint()
	if d.Err() != nil {
		return clock.Dot{}
	}
	if c == 0 {
		d.Fail("dot with counter 0")
		return clock.Dot{}
	}
	return clock.Dot{Replica: d.ids[i], Counter: c}
}

// finish returns the first error, or an error if input remains.
func (d *decoder) finish() error { return d.Finish() }

// elem reads one length-prefixed encoded element and checks that it sorts
// strictly after prev (unless it is the first); the caller decodes it.
func (d *decoder) elem(prev []byte, first bool) []byte {
	p := d.Bytes()
	if d.Err() == nil && !first && string(prev) >= string(p) {
		d.Fail("elements out of order or repeated")
	}
	return p
}

// compareDots orders dots by replica id, then counter.
func compareDots(a, b clock.Dot) int {
	if c := strings.Compare(a.Replica, b.Replica); c != 0 {
		return c
	}
	switch {
	case a.Counter < b.Counter:
		return -1
	case a.Counter > b.Counter:
		return 1
	}
	return 0
}

func appendUvarintCount(b []byte, n int) []byte { return binary.AppendUvarint(b, uint64(n)) }

// encodeSorted encodes each element and returns the encodings in ascending
// byte order.
func encodeSorted[E any](es []E, c elemCodec[E]) ([][]byte, error) {
	if len(es) == 0 {
		return nil, nil
	}
	codec, err := c.get()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(es))
	for i, e := range es {
		if out[i], err = codec.Append(nil, e); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	return out, nil
}

// decodeElem decodes one element with codec and checks that it re-encodes to
// the same bytes, so only canonical encodings are accepted.
func decodeElem[E any](d *decoder, codec Codec[E], p []byte) E {
	var zero E
	if d.Err() != nil {
		return zero
	}
	e, err := codec.Decode(p)
	if err != nil {
		d.Wrap(err)
		return zero
	}
	again, err := codec.Append(nil, e)
	if err != nil || string(again) != string(p) {
		d.Fail("element encoding is not canonical")
		return zero
	}
	return e
}

func compareBytes(a, b []byte) int { return strings.Compare(string(a), string(b)) }
