package crdt

import (
	"github.com/distkit/distkit/clock"
)

// LWWRegister is a last-writer-wins register: each write is stamped with a
// hybrid logical clock timestamp and the writer's replica id, and merge
// keeps the write with the greater timestamp. Equal timestamps are broken
// by the higher replica id, so every replica picks the same winner.
// Concurrent writes other than the winner are discarded; use [MVRegister]
// to keep them.
//
// A write is identified by its (timestamp, replica id) pair, which is unique
// as long as each replica uses its own id and a monotonic clock.
//
// The zero value is an unset register with replica id "" and no clock: use
// it as a merge or decoding target, and [NewLWWRegister] for a replica that
// writes. An LWWRegister is not safe for concurrent use; the HLC may be
// shared.
type LWWRegister[V any] struct {
	replica string
	clk     *clock.HLC

	set    bool
	val    V
	ts     clock.Timestamp
	writer string

	codec elemCodec[V]
}

// NewLWWRegister returns an unset register for replica, stamping writes with
// clk. A nil clk means a new [clock.HLC] on the system clock.
func NewLWWRegister[V any](replica string, clk *clock.HLC) *LWWRegister[V] {
	if clk == nil {
		clk = clock.NewHLC()
	}
	return &LWWRegister[V]{replica: replica, clk: clk}
}

// Replica returns the id the register writes under.
func (r *LWWRegister[V]) Replica() string { return r.replica }

// SetCodec sets the codec used to encode and decode values, needed only for
// value types the package cannot encode by itself (see [Codec]).
func (r *LWWRegister[V]) SetCodec(c Codec[V]) { r.codec.user = c }

// wins reports whether the write (ts, writer) beats r's current one.
func (r *LWWRegister[V]) wins(ts clock.Timestamp, writer string) bool {
	if !r.set {
		return true
	}
	if c := ts.Compare(r.ts); c != 0 {
		return c > 0
	}
	return writer > r.writer
}

// Set writes v and returns the delta, a register holding just this write.
// The write's timestamp is taken from the clock and is always greater than
// the timestamp of the value it overwrites, so a local write is never lost
// to an older one the replica has already seen.
func (r *LWWRegister[V]) Set(v V) *LWWRegister[V] {
	if r.clk == nil {
		r.clk = clock.NewHLC()
	}
	ts := r.clk.Now()
	if r.set && !r.ts.Less(ts) {
		var err error
		if ts, err = r.clk.Update(r.ts); err != nil {
			ts = r.ts.Next()
		}
	}
	r.set, r.val, r.ts, r.writer = true, v, ts, r.replica
	return &LWWRegister[V]{set: true, val: v, ts: ts, writer: r.replica, codec: r.codec}
}

// Get returns the current value and whether the register was ever written.
// Values that hold references (slices, maps, pointers) share them with the
// register.
func (r *LWWRegister[V]) Get() (V, bool) { return r.val, r.set }

// Timestamp returns the timestamp of the current write (zero if unset).
func (r *LWWRegister[V]) Timestamp() clock.Timestamp { return r.ts }

// Writer returns the replica id of the current write ("" if unset).
func (r *LWWRegister[V]) Writer() string { return r.writer }

// Merge keeps the later of r's and o's writes. When r has a clock, it is
// advanced past o's timestamp (within the clock's maximum offset) so that
// later local writes follow it. A nil o is a no-op.
func (r *LWWRegister[V]) Merge(o *LWWRegister[V]) {
	if o == nil || o == r || !o.set {
		return
	}
	if r.clk != nil {
		_, _ = r.clk.Update(o.ts) // an offset error only means the clock is not advanced
	}
	if r.wins(o.ts, o.writer) {
		r.set, r.val, r.ts, r.writer = true, o.val, o.ts, o.writer
	}
}

// Clone returns a copy of r sharing its clock; the value is copied as by
// assignment.
func (r *LWWRegister[V]) Clone() *LWWRegister[V] {
	c := *r
	return &c
}

// Equal reports whether r and o hold the same write: the same timestamp and
// writer (which identify a write), whatever their values.
func (r *LWWRegister[V]) Equal(o *LWWRegister[V]) bool {
	return r.set == o.set && r.ts == o.ts && r.writer == o.writer
}

// AppendBinary appends the deterministic encoding of r: format version, type
// tag, then 0 for an unset register, or 1, the 12-byte timestamp, the
// writer's id and the value.
func (r *LWWRegister[V]) AppendBinary(b []byte) ([]byte, error) {
	if !r.set {
		return append(appendHeader(b, tagLWWRegister), 0), nil
	}
	codec, err := r.codec.get()
	if err != nil {
		return b, err
	}
	p, err := codec.Append(nil, r.val)
	if err != nil {
		return b, err
	}
	b = append(appendHeader(b, tagLWWRegister), 1)
	b, _ = r.ts.AppendBinary(b)
	b = appendString(b, r.writer)
	return appendBytes(b, p), nil
}

// MarshalBinary returns the encoding described at [LWWRegister.AppendBinary].
func (r *LWWRegister[V]) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// UnmarshalBinary replaces r's state with the decoded one, keeping r's
// replica id, clock and codec. On error, which wraps [ErrMalformed] or
// [ErrNoCodec], r is unchanged.
func (r *LWWRegister[V]) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagLWWRegister)
	var (
		val    V
		ts     clock.Timestamp
		writer string
	)
	set := d.Byte()
	switch {
	case d.Err() != nil:
	case set > 1:
		d.Fail("bad presence byte %d", set)
	case set == 1:
		if d.Len() < clock.TimestampSize {
			d.Fail("truncated")
			break
		}
		d.Wrap(ts.UnmarshalBinary(d.Next(clock.TimestampSize)))
		writer = d.String()
		p := d.Bytes()
		if d.Err() == nil {
			codec, err := r.codec.get()
			if err != nil {
				return err
			}
			val = decodeElem(d, codec, p)
		}
	}
	if err := d.finish(); err != nil {
		return err
	}
	r.set, r.val, r.ts, r.writer = set == 1, val, ts, writer
	return nil
}
