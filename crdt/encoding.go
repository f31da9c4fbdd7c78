package crdt

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/distkit/distkit/clock"
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

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

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

// decoder reads the canonical encodings of this package. The first error
// sticks; later reads return zero values.
type decoder struct {
	what string
	b    []byte
	err  error

	ids  []string // replica table
	used []bool
}

func newDecoder(data []byte, tag byte) *decoder {
	d := &decoder{what: tagNames[tag], b: data}
	if v := d.byte(); d.err == nil && v != formatVersion {
		d.fail("unknown format version %d", v)
	}
	if t := d.byte(); d.err == nil && t != tag {
		name := "unknown type"
		if int(t) < len(tagNames) && t != 0 {
			name = tagNames[t]
		}
		d.fail("tag %d (%s), want %d", t, name, tag)
	}
	return d
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrMalformed, d.what, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) wrap(err error) {
	if d.err == nil && err != nil {
		d.err = fmt.Errorf("%w: %s: %w", ErrMalformed, d.what, err)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("truncated")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// count reads an element count and rejects one that cannot fit in the
// remaining input at minSize bytes each, so a hostile count never causes a
// large allocation.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds remaining input", n)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string { return string(d.bytes()) }

// context reads what appendContext wrote, keeping the replica table for the
// dots that follow. Only canonical input is accepted: the table lists
// exactly the context's replicas, and the context itself is canonical.
func (d *decoder) context() clock.CausalContext {
	var c clock.CausalContext
	d.table()
	// Re-express the context in clock's own encoding and let it check the
	// rest (cloud dots beyond the vector, no dot the vector could absorb).
	raw := []byte{1}
	nv := d.count(2)
	raw = binary.AppendUvarint(raw, uint64(nv))
	prev := -1
	for k := 0; k < nv && d.err == nil; k++ {
		i := d.index()
		n := d.uvarint()
		switch {
		case d.err != nil:
		case i <= prev:
			d.fail("context vector out of order")
		case n == 0:
			d.fail("zero counter in context vector")
		default:
			prev = i
			raw = appendString(raw, d.ids[i])
			raw = binary.AppendUvarint(raw, n)
		}
	}
	nc := d.count(2)
	raw = binary.AppendUvarint(raw, uint64(nc))
	for k := 0; k < nc && d.err == nil; k++ {
		i := d.index()
		n := d.uvarint()
		if d.err == nil {
			raw = appendString(raw, d.ids[i])
			raw = binary.AppendUvarint(raw, n)
		}
	}
	if d.err != nil {
		return c
	}
	d.wrap(c.UnmarshalBinary(raw))
	for i, u := range d.used {
		if !u {
			d.fail("replica table entry %q not in the context", d.ids[i])
			break
		}
	}
	return c
}

// index reads a replica table index.
func (d *decoder) index() int {
	i := d.uvarint()
	if d.err == nil && i >= uint64(len(d.ids)) {
		d.fail("replica index %d out of range", i)
	}
	if d.err != nil {
		return 0
	}
	d.used[i] = true
	return int(i)
}

// table reads a replica table: sorted, distinct ids.
func (d *decoder) table() {
	n := d.count(1)
	if d.err != nil {
		return
	}
	d.ids = make([]string, 0, n)
	for k := 0; k < n && d.err == nil; k++ {
		id := d.string()
		if d.err == nil && k > 0 && strings.Compare(d.ids[k-1], id) >= 0 {
			d.fail("replica table out of order or repeated at %q", id)
		}
		d.ids = append(d.ids, id)
	}
	d.used = make([]bool, len(d.ids))
}

// dot reads a dot that refers to the replica table.
func (d *decoder) dot() clock.Dot {
	i := d.index()
	c := d.uvarint()
	if d.err != nil {
		return clock.Dot{}
	}
	if c == 0 {
		d.fail("dot with counter 0")
		return clock.Dot{}
	}
	return clock.Dot{Replica: d.ids[i], Counter: c}
}

// finish returns the first error, or an error if input remains.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// elem reads one length-prefixed encoded element and checks that it sorts
// strictly after prev (unless it is the first); the caller decodes it.
func (d *decoder) elem(prev []byte, first bool) []byte {
	p := d.bytes()
	if d.err == nil && !first && string(prev) >= string(p) {
		d.fail("elements out of order or repeated")
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
	if d.err != nil {
		return zero
	}
	e, err := codec.Decode(p)
	if err != nil {
		d.wrap(err)
		return zero
	}
	again, err := codec.Append(nil, e)
	if err != nil || string(again) != string(p) {
		d.fail("element encoding is not canonical")
		return zero
	}
	return e
}

func compareBytes(a, b []byte) int { return strings.Compare(string(a), string(b)) }
