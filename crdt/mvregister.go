package crdt

import (
	"slices"

	"github.com/distkit/distkit/clock"
)

// MVRegister is a multi-value register. A write replaces every value the
// writer has seen; writes that are concurrent (neither saw the other) are
// all kept as siblings until a later write that has seen them replaces
// them. Nothing is lost silently, and the application resolves siblings.
//
// Each value is stored under the dot of its write, with one causal context,
// so deltas merge correctly in any order, duplicated or late.
//
// The zero value is an empty register with replica id "": use it as a merge
// or decoding target, and [NewMVRegister] for a replica that writes. An
// MVRegister is not safe for concurrent use.
type MVRegister[V comparable] struct {
	replica string
	ctx     clock.CausalContext
	vals    dotFun[V]
	codec   elemCodec[V]
}

// NewMVRegister returns an empty register for replica.
func NewMVRegister[V comparable](replica string) *MVRegister[V] {
	return &MVRegister[V]{replica: replica}
}

// Replica returns the id the register writes under.
func (r *MVRegister[V]) Replica() string { return r.replica }

// SetCodec sets the codec used to encode and decode values, needed only for
// value types the package cannot encode by itself (see [Codec]).
func (r *MVRegister[V]) SetCodec(c Codec[V]) { r.codec.user = c }

// Set writes v, replacing every value r holds, and returns the delta: v
// under a new dot, with a context of that dot and the replaced ones.
func (r *MVRegister[V]) Set(v V) *MVRegister[V] {
	d := &MVRegister[V]{codec: r.codec}
	r.vals.addDotsTo(&d.ctx)
	dot := r.ctx.Next(r.replica)
	d.ctx.Add(dot)
	d.vals = dotFun[V]{{dot, v}}
	r.vals = dotFun[V]{{dot, v}}
	return d
}

// Clear removes every value r holds and returns the delta. Values written
// concurrently elsewhere survive.
func (r *MVRegister[V]) Clear() *MVRegister[V] {
	d := &MVRegister[V]{codec: r.codec}
	r.vals.addDotsTo(&d.ctx)
	r.vals = nil
	return d
}

// Values returns the current values, without duplicates, in a new slice:
// one value after a write that has seen all others, several after
// concurrent writes, none if never written or cleared. The order is the
// one described at [GSet.Elements].
func (r *MVRegister[V]) Values() []V {
	out := make([]V, 0, len(r.vals))
	for _, e := range r.vals {
		if !slices.Contains(out, e.v) {
			out = append(out, e.v)
		}
	}
	sortElems(out, r.codec)
	return out
}

// Merge merges o, a delta or a full state, into r: a value survives if both
// sides hold it, or one does and the other has not seen its write. A nil o
// is a no-op.
func (r *MVRegister[V]) Merge(o *MVRegister[V]) {
	if o == nil || o == r {
		return
	}
	r.vals = r.vals.join(o.vals, &r.ctx, &o.ctx)
	r.ctx.Merge(o.ctx)
}

// Context returns a copy of the register's causal context.
func (r *MVRegister[V]) Context() clock.CausalContext { return r.ctx.Clone() }

// Clone returns an independent copy of r.
func (r *MVRegister[V]) Clone() *MVRegister[V] {
	return &MVRegister[V]{replica: r.replica, ctx: r.ctx.Clone(), vals: slices.Clone(r.vals), codec: r.codec}
}

// Equal reports whether r and o hold the same state.
func (r *MVRegister[V]) Equal(o *MVRegister[V]) bool {
	return r.ctx.Equal(o.ctx) && r.vals.equal(o.vals, func(a, b V) bool { return a == b })
}

// AppendBinary appends the deterministic encoding of r: format version, type
// tag, causal context, a replica table, then each write's dot and value in
// dot order.
func (r *MVRegister[V]) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagMVRegister)
	b, t := appendContext(b, &r.ctx)
	return r.appendStore(b, t)
}

func (r *MVRegister[V]) appendStore(b []byte, t dotTable) ([]byte, error) {
	var codec Codec[V]
	if len(r.vals) > 0 {
		var err error
		if codec, err = r.codec.get(); err != nil {
			return b, err
		}
	}
	return r.vals.appendBinary(b, t, func(b []byte, v V) ([]byte, error) {
		p, err := codec.Append(nil, v)
		return appendBytes(b, p), err
	})
}

func (r *MVRegister[V]) decodeStore(d *decoder, ctx *clock.CausalContext) (dotFun[V], error) {
	codec, cerr := r.codec.get()
	vals := decodeDotFun(d, ctx, 1, func(d *decoder) V {
		p := d.Bytes()
		if cerr != nil && d.Err() == nil {
			d.SetErr(cerr)
		}
		return decodeElem(d, codec, p)
	})
	return vals, d.Err()
}

// MarshalBinary returns the encoding described at [MVRegister.AppendBinary].
func (r *MVRegister[V]) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// UnmarshalBinary replaces r's state with the decoded one, keeping r's
// replica id and codec. On error, which wraps [ErrMalformed] or
// [ErrNoCodec], r is unchanged.
func (r *MVRegister[V]) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagMVRegister)
	ctx := d.context()
	vals, err := r.decodeStore(d, &ctx)
	if err != nil {
		return err
	}
	if err := d.finish(); err != nil {
		return err
	}
	r.ctx, r.vals = ctx, vals
	return nil
}
