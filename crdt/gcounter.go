package crdt

import (
	"math"

	"github.com/distkit/distkit/clock"
)

// GCounter is a grow-only counter: each replica counts its own increments
// and the value is the sum over replicas. Merge takes the per-replica
// maximum.
//
// The zero value is an empty counter whose replica id is "": use it as a
// merge target or decoding target, and [NewGCounter] for a replica that
// increments. A GCounter is not safe for concurrent use.
type GCounter struct {
	replica string
	counts  clock.Vector // replica id -> its increments
}

// NewGCounter returns an empty counter for replica.
func NewGCounter(replica string) *GCounter { return &GCounter{replica: replica} }

// Replica returns the id the counter increments under.
func (c *GCounter) Replica() string { return c.replica }

// Inc adds n to the counter and returns the delta: a counter holding only
// this replica's new total. A replica's total saturates at the maximum
// uint64.
func (c *GCounter) Inc(n uint64) *GCounter {
	cur := c.counts.Get(c.replica)
	next := cur + n
	if next < cur {
		next = math.MaxUint64
	}
	c.counts.Set(c.replica, next)
	d := &GCounter{}
	d.counts.Set(c.replica, next)
	return d
}

// Value returns the sum of all replicas' increments, saturating at the
// maximum uint64.
func (c *GCounter) Value() uint64 {
	var sum uint64
	for _, n := range c.counts.All() {
		if sum+n < sum {
			return math.MaxUint64
		}
		sum += n
	}
	return sum
}

// Merge merges o, a delta or a full state, into c. A nil o is a no-op.
func (c *GCounter) Merge(o *GCounter) {
	if o != nil {
		c.counts.Merge(o.counts)
	}
}

// Counts returns each replica's increments, a copy.
func (c *GCounter) Counts() clock.Vector { return c.counts.Clone() }

// Clone returns an independent copy of c.
func (c *GCounter) Clone() *GCounter {
	return &GCounter{replica: c.replica, counts: c.counts.Clone()}
}

// Equal reports whether c and o hold the same state (replica ids aside).
func (c *GCounter) Equal(o *GCounter) bool { return c.counts.Compare(o.counts) == clock.Equal }

// AppendBinary appends the deterministic encoding of c's state: format
// version, type tag and the per-replica counts in replica order. The local
// replica id is not part of the state and is not encoded.
func (c *GCounter) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagGCounter)
	return c.counts.AppendBinary(b)
}

// MarshalBinary returns the encoding described at [GCounter.AppendBinary].
func (c *GCounter) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// UnmarshalBinary replaces c's state with the decoded one, keeping c's
// replica id. Only canonical encodings are accepted; on error, which wraps
// [ErrMalformed], c is unchanged.
func (c *GCounter) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagGCounter)
	var v clock.Vector
	if d.Err() == nil {
		d.Wrap(v.UnmarshalBinary(d.Next(d.Len())))
	}
	if err := d.finish(); err != nil {
		return err
	}
	c.counts = v
	return nil
}

// PNCounter is a counter that can go up and down: a pair of grow-only
// counters, one for increments and one for decrements.
//
// The zero value is an empty counter with replica id "" (see [GCounter]).
// A PNCounter is not safe for concurrent use.
type PNCounter struct {
	p, n GCounter
}

// NewPNCounter returns an empty counter for replica.
func NewPNCounter(replica string) *PNCounter {
	return &PNCounter{p: GCounter{replica: replica}, n: GCounter{replica: replica}}
}

// Replica returns the id the counter counts under.
func (c *PNCounter) Replica() string { return c.p.replica }

// Inc adds n and returns the delta.
func (c *PNCounter) Inc(n uint64) *PNCounter { return &PNCounter{p: *c.p.Inc(n)} }

// Dec subtracts n and returns the delta.
func (c *PNCounter) Dec(n uint64) *PNCounter { return &PNCounter{n: *c.n.Inc(n)} }

// Value returns increments minus decrements. The difference is computed in
// uint64 and converted, so it wraps if it leaves the int64 range.
func (c *PNCounter) Value() int64 { return int64(c.p.Value() - c.n.Value()) }

// Merge merges o, a delta or a full state, into c. A nil o is a no-op.
func (c *PNCounter) Merge(o *PNCounter) {
	if o != nil {
		c.p.Merge(&o.p)
		c.n.Merge(&o.n)
	}
}

// Increments returns each replica's total increments, a copy.
func (c *PNCounter) Increments() clock.Vector { return c.p.Counts() }

// Decrements returns each replica's total decrements, a copy.
func (c *PNCounter) Decrements() clock.Vector { return c.n.Counts() }

// Clone returns an independent copy of c.
func (c *PNCounter) Clone() *PNCounter { return &PNCounter{p: *c.p.Clone(), n: *c.n.Clone()} }

// Equal reports whether c and o hold the same state.
func (c *PNCounter) Equal(o *PNCounter) bool { return c.p.Equal(&o.p) && c.n.Equal(&o.n) }

// AppendBinary appends the deterministic encoding of c's state: format
// version, type tag, then the increment and decrement vectors.
func (c *PNCounter) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagPNCounter)
	p, _ := c.p.counts.MarshalBinary()
	b = appendBytes(b, p)
	return c.n.counts.AppendBinary(b)
}

// MarshalBinary returns the encoding described at [PNCounter.AppendBinary].
func (c *PNCounter) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// UnmarshalBinary replaces c's state with the decoded one, keeping c's
// replica id. On error, which wraps [ErrMalformed], c is unchanged.
func (c *PNCounter) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagPNCounter)
	var p, n clock.Vector
	pb := d.Bytes()
	if d.Err() == nil {
		d.Wrap(p.UnmarshalBinary(pb))
	}
	if d.Err() == nil {
		d.Wrap(n.UnmarshalBinary(d.Next(d.Len())))
	}
	if err := d.finish(); err != nil {
		return err
	}
	c.p.counts, c.n.counts = p, n
	return nil
}
