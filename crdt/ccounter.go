package crdt

import (
	"slices"

	"github.com/distkit/distkit/clock"
)

// CCounter is a causal counter: a counter that goes up and down, like
// [PNCounter], but whose per-replica totals are stored under dots. That
// makes it resettable: inside an [ORMap], removing the key resets the
// counter, and a replica that increments after observing the removal starts
// again from zero.
//
// Each replica keeps one entry, its running total under its latest dot, so
// the state is O(replicas). (A replica that has seen a reset delta's
// successor before the reset itself briefly holds two entries of the
// resetting replica.) Merge keeps, per replica, the entry whose dot
// the other side has not superseded.
//
// The zero value is an empty counter with replica id "": use it as a merge
// or decoding target, and [NewCCounter] for a replica that counts. A
// CCounter is not safe for concurrent use.
type CCounter struct {
	replica string
	ctx     clock.CausalContext
	vals    dotFun[int64]
}

// NewCCounter returns an empty counter for replica.
func NewCCounter(replica string) *CCounter { return &CCounter{replica: replica} }

// Replica returns the id the counter counts under.
func (c *CCounter) Replica() string { return c.replica }

// add moves this replica's total by delta under a new dot.
func (c *CCounter) add(delta int64) *CCounter {
	d := &CCounter{}
	var base int64
	keep := c.vals[:0:0]
	for _, e := range c.vals {
		if e.dot.Replica == c.replica {
			base += e.v
			d.ctx.Add(e.dot)
		} else {
			keep = append(keep, e)
		}
	}
	dot := c.ctx.Next(c.replica)
	d.ctx.Add(dot)
	e := dotVal[int64]{dot, base + delta}
	d.vals = dotFun[int64]{e}
	i, _ := slices.BinarySearchFunc(keep, dot, func(x dotVal[int64], d clock.Dot) int { return compareDots(x.dot, d) })
	c.vals = slices.Insert(keep, i, e)
	return d
}

// Inc adds n and returns the delta. Totals wrap on int64 overflow.
func (c *CCounter) Inc(n uint64) *CCounter { return c.add(int64(n)) }

// Dec subtracts n and returns the delta.
func (c *CCounter) Dec(n uint64) *CCounter { return c.add(-int64(n)) }

// Reset sets the counter to zero as far as this replica has observed and
// returns the delta. Increments made concurrently elsewhere survive.
func (c *CCounter) Reset() *CCounter {
	d := &CCounter{}
	c.vals.addDotsTo(&d.ctx)
	c.vals = nil
	return d
}

// Value returns the sum of all replicas' totals.
func (c *CCounter) Value() int64 {
	var sum int64
	for _, e := range c.vals {
		sum += e.v
	}
	return sum
}

// Merge merges o, a delta or a full state, into c. A nil o is a no-op.
func (c *CCounter) Merge(o *CCounter) {
	if o == nil || o == c {
		return
	}
	c.vals = c.vals.join(o.vals, &c.ctx, &o.ctx)
	c.ctx.Merge(o.ctx)
}

// Context returns a copy of the counter's causal context.
func (c *CCounter) Context() clock.CausalContext { return c.ctx.Clone() }

// Clone returns an independent copy of c.
func (c *CCounter) Clone() *CCounter {
	return &CCounter{replica: c.replica, ctx: c.ctx.Clone(), vals: slices.Clone(c.vals)}
}

// Equal reports whether c and o hold the same state.
func (c *CCounter) Equal(o *CCounter) bool {
	return c.ctx.Equal(o.ctx) && c.vals.equal(o.vals, func(a, b int64) bool { return a == b })
}

// AppendBinary appends the deterministic encoding of c: format version, type
// tag, causal context, a replica table, then each entry's dot and total.
func (c *CCounter) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagCCounter)
	b, t := appendContext(b, &c.ctx)
	return c.appendStore(b, t)
}

func (c *CCounter) appendStore(b []byte, t dotTable) ([]byte, error) {
	return c.vals.appendBinary(b, t, appendInt64)
}

func (c *CCounter) decodeStore(d *decoder, ctx *clock.CausalContext) (dotFun[int64], error) {
	vals := decodeDotFun(d, ctx, 1, func(d *decoder) int64 {
		u := d.Uvarint()
		return int64(u>>1) ^ -int64(u&1)
	})
	return vals, d.Err()
}

// MarshalBinary returns the encoding described at [CCounter.AppendBinary].
func (c *CCounter) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// UnmarshalBinary replaces c's state with the decoded one, keeping c's
// replica id. On error, which wraps [ErrMalformed], c is unchanged.
func (c *CCounter) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagCCounter)
	ctx := d.context()
	vals, _ := c.decodeStore(d, &ctx)
	if err := d.finish(); err != nil {
		return err
	}
	c.ctx, c.vals = ctx, vals
	return nil
}

// EWFlag is an enable-wins flag: a boolean that replicas enable and
// disable, where an enable concurrent with a disable wins. It is a set of
// dots under one causal context: enabled while any enable's dot survives.
//
// The zero value is a disabled flag with replica id "": use it as a merge
// or decoding target, and [NewEWFlag] for a replica that writes. An EWFlag
// is not safe for concurrent use.
type EWFlag struct {
	replica string
	ctx     clock.CausalContext
	dots    dotFun[struct{}]
}

// NewEWFlag returns a disabled flag for replica.
func NewEWFlag(replica string) *EWFlag { return &EWFlag{replica: replica} }

// Replica returns the id the flag writes under.
func (f *EWFlag) Replica() string { return f.replica }

// Enable enables the flag and returns the delta.
func (f *EWFlag) Enable() *EWFlag {
	d := &EWFlag{}
	f.dots.addDotsTo(&d.ctx)
	dot := f.ctx.Next(f.replica)
	d.ctx.Add(dot)
	d.dots = dotFun[struct{}]{{dot: dot}}
	f.dots = dotFun[struct{}]{{dot: dot}}
	return d
}

// Disable disables the flag as far as this replica has observed and
// returns the delta. A concurrent Enable elsewhere wins.
func (f *EWFlag) Disable() *EWFlag {
	d := &EWFlag{}
	f.dots.addDotsTo(&d.ctx)
	f.dots = nil
	return d
}

// Value reports whether the flag is enabled.
func (f *EWFlag) Value() bool { return len(f.dots) > 0 }

// Merge merges o, a delta or a full state, into f. A nil o is a no-op.
func (f *EWFlag) Merge(o *EWFlag) {
	if o == nil || o == f {
		return
	}
	f.dots = f.dots.join(o.dots, &f.ctx, &o.ctx)
	f.ctx.Merge(o.ctx)
}

// Context returns a copy of the flag's causal context.
func (f *EWFlag) Context() clock.CausalContext { return f.ctx.Clone() }

// Clone returns an independent copy of f.
func (f *EWFlag) Clone() *EWFlag {
	return &EWFlag{replica: f.replica, ctx: f.ctx.Clone(), dots: slices.Clone(f.dots)}
}

// Equal reports whether f and o hold the same state.
func (f *EWFlag) Equal(o *EWFlag) bool {
	return f.ctx.Equal(o.ctx) && f.dots.equal(o.dots, func(a, b struct{}) bool { return true })
}

// AppendBinary appends the deterministic encoding of f: format version, type
// tag, causal context, a replica table, then the enables' dots.
func (f *EWFlag) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagEWFlag)
	b, t := appendContext(b, &f.ctx)
	return f.appendStore(b, t)
}

func (f *EWFlag) appendStore(b []byte, t dotTable) ([]byte, error) {
	return f.dots.appendBinary(b, t, func(b []byte, _ struct{}) ([]byte, error) { return b, nil })
}

func (f *EWFlag) decodeStore(d *decoder, ctx *clock.CausalContext) (dotFun[struct{}], error) {
	dots := decodeDotFun(d, ctx, 0, func(*decoder) struct{} { return struct{}{} })
	return dots, d.Err()
}

// MarshalBinary returns the encoding described at [EWFlag.AppendBinary].
func (f *EWFlag) MarshalBinary() ([]byte, error) { return f.AppendBinary(nil) }

// UnmarshalBinary replaces f's state with the decoded one, keeping f's
// replica id. On error, which wraps [ErrMalformed], f is unchanged.
func (f *EWFlag) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagEWFlag)
	ctx := d.context()
	dots, _ := f.decodeStore(d, &ctx)
	if err := d.finish(); err != nil {
		return err
	}
	f.ctx, f.dots = ctx, dots
	return nil
}
