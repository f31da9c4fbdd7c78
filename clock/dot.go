package clock

import (
	"cmp"
	"iter"
	"slices"
	"strconv"
	"strings"

	"github.com/distkit/distkit/internal/wire"
)

// Dot names one event: the Counter-th event of a replica. Delta-state CRDTs
// tag every write with a fresh dot.
type Dot struct {
	Replica string
	Counter uint64
}

// String formats d as replica:counter.
func (d Dot) String() string {
	return strconv.Quote(d.Replica) + ":" + strconv.FormatUint(d.Counter, 10)
}

func compareDots(a, b Dot) int {
	return cmp.Or(strings.Compare(a.Replica, b.Replica), cmp.Compare(a.Counter, b.Counter))
}

// CausalContext is a set of dots: the events a replica has seen. It is kept
// compact as a version vector (every dot up to the vector's counter is
// included) plus a "dot cloud" of dots seen out of order, so a CRDT can merge
// deltas that arrive out of order, duplicated or late without requiring
// causal delivery. Dots in the cloud move into the vector as soon as the gap
// before them fills.
//
// The zero value is the empty context, ready to use. A CausalContext is not
// safe for concurrent mutation; assigning one shares storage, use Clone for
// an independent copy.
type CausalContext struct {
	vv    Vector
	cloud []Dot // sorted; every dot d has d.Counter > vv.Get(d.Replica)+1
}

// Contains reports whether the context includes d.
func (c CausalContext) Contains(d Dot) bool {
	if d.Counter <= c.vv.Get(d.Replica) {
		return true
	}
	_, ok := slices.BinarySearchFunc(c.cloud, d, compareDots)
	return ok
}

// Next returns the next dot of replica, one past the highest it has seen,
// and adds it to the context. The returned dot was not in the context before.
func (c *CausalContext) Next(replica string) Dot {
	d := Dot{Replica: replica, Counter: c.Max(replica) + 1}
	c.Add(d)
	return d
}

// Max returns the highest counter of replica in the context, counting dots
// seen out of order.
func (c CausalContext) Max(replica string) uint64 {
	i, _ := slices.BinarySearchFunc(c.cloud, Dot{Replica: replica, Counter: 1<<64 - 1}, compareDots)
	if i > 0 && c.cloud[i-1].Replica == replica {
		return c.cloud[i-1].Counter
	}
	return c.vv.Get(replica)
}

// Add adds d to the context. A dot with counter 0 is ignored.
func (c *CausalContext) Add(d Dot) {
	base := c.vv.Get(d.Replica)
	switch {
	case d.Counter <= base:
		return
	case d.Counter == base+1:
		c.vv.Set(d.Replica, d.Counter)
		c.absorb(d.Replica)
	default:
		i, ok := slices.BinarySearchFunc(c.cloud, d, compareDots)
		if !ok {
			c.cloud = slices.Insert(c.cloud, i, d)
		}
	}
}

// absorb moves the dots of replica that now continue the vector out of the
// cloud and drops those the vector already covers.
func (c *CausalContext) absorb(replica string) {
	i, _ := slices.BinarySearchFunc(c.cloud, Dot{Replica: replica}, compareDots)
	j := i
	n := c.vv.Get(replica)
	for j < len(c.cloud) && c.cloud[j].Replica == replica && c.cloud[j].Counter <= n+1 {
		n = max(n, c.cloud[j].Counter)
		j++
	}
	if j > i {
		c.vv.Set(replica, n)
		c.cloud = slices.Delete(c.cloud, i, j)
	}
}

// Merge sets c to the union of c and o.
func (c *CausalContext) Merge(o CausalContext) {
	c.vv.Merge(o.vv)
	if len(o.cloud) > 0 {
		merged := make([]Dot, 0, len(c.cloud)+len(o.cloud))
		i, j := 0, 0
		for i < len(c.cloud) || j < len(o.cloud) {
			switch {
			case j == len(o.cloud) || (i < len(c.cloud) && compareDots(c.cloud[i], o.cloud[j]) < 0):
				merged = append(merged, c.cloud[i])
				i++
			case i == len(c.cloud) || compareDots(c.cloud[i], o.cloud[j]) > 0:
				merged = append(merged, o.cloud[j])
				j++
			default:
				merged = append(merged, c.cloud[i])
				i++
				j++
			}
		}
		c.cloud = merged
	}
	c.compact()
}

// compact restores the invariant after the vector or cloud changed in bulk.
func (c *CausalContext) compact() {
	if len(c.cloud) == 0 {
		return
	}
	out := c.cloud[:0]
	for k := 0; k < len(c.cloud); {
		r := c.cloud[k].Replica
		n := c.vv.Get(r)
		for ; k < len(c.cloud) && c.cloud[k].Replica == r; k++ {
			switch d := c.cloud[k]; {
			case d.Counter <= n:
			case d.Counter == n+1:
				n++
			default:
				out = append(out, d)
			}
		}
		c.vv.Set(r, n)
	}
	clear(c.cloud[len(out):])
	c.cloud = out
	if len(c.cloud) == 0 {
		c.cloud = nil
	}
}

// Vector returns the compact part of the context: for each replica, the
// highest counter up to which every dot is included. Dots seen out of order
// are not in it. The result shares no storage with c.
func (c CausalContext) Vector() Vector { return c.vv.Clone() }

// Cloud returns an iterator over the dots seen out of order, in replica and
// counter order.
func (c CausalContext) Cloud() iter.Seq[Dot] { return slices.Values(c.cloud) }

// IsZero reports whether the context is empty.
func (c CausalContext) IsZero() bool { return c.vv.Len() == 0 && len(c.cloud) == 0 }

// Equal reports whether c and o contain the same dots.
func (c CausalContext) Equal(o CausalContext) bool {
	return c.vv.Compare(o.vv) == Equal && slices.Equal(c.cloud, o.cloud)
}

// Clone returns an independent copy of c.
func (c CausalContext) Clone() CausalContext {
	return CausalContext{vv: c.vv.Clone(), cloud: slices.Clone(c.cloud)}
}

// String formats c as its vector followed by the cloud, if any.
func (c CausalContext) String() string {
	if len(c.cloud) == 0 {
		return c.vv.String()
	}
	parts := make([]string, len(c.cloud))
	for i, d := range c.cloud {
		parts[i] = d.String()
	}
	return c.vv.String() + "+[" + strings.Join(parts, " ") + "]"
}

const contextVersion = 1

// AppendBinary appends the deterministic binary encoding of c: a version
// byte, the vector's entries as in [Vector.AppendBinary], then the number of
// cloud dots and each dot's replica id and counter. It never returns an error.
func (c CausalContext) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, contextVersion)
	b = c.vv.appendEntries(b)
	b = wire.AppendUvarint(b, uint64(len(c.cloud)))
	for _, d := range c.cloud {
		b = wire.AppendString(b, d.Replica)
		b = wire.AppendUvarint(b, d.Counter)
	}
	return b, nil
}

// MarshalBinary returns the encoding described at AppendBinary.
func (c CausalContext) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// UnmarshalBinary sets c from data produced by MarshalBinary. Only the
// canonical encoding is accepted: an input whose cloud is out of order,
// repeats a dot, or holds a dot the vector covers or could absorb is an error
// wrapping ErrMalformed. On error c is unchanged.
func (c *CausalContext) UnmarshalBinary(data []byte) error {
	d := wire.NewDecoder(data, ErrMalformed, "causal context")
	d.Version(contextVersion)
	vv := Vector{e: entries(&d)}
	n := d.Count(2)
	var cloud []Dot
	if n > 0 {
		cloud = make([]Dot, 0, n)
	}
	for k := 0; k < n && d.Err() == nil; k++ {
		dot := Dot{Replica: d.String(), Counter: d.Uvarint()}
		switch {
		case d.Err() != nil:
		case k > 0 && compareDots(cloud[k-1], dot) >= 0:
			d.Fail("cloud out of order or repeated at %v", dot)
		case dot.Counter > MaxCounter:
			d.Fail("cloud dot %v above MaxCounter", dot)
		case dot.Counter <= vv.Get(dot.Replica)+1:
			d.Fail("cloud dot %v is not beyond the vector", dot)
		default:
			cloud = append(cloud, dot)
		}
	}
	if err := d.Finish(); err != nil {
		return err
	}
	c.vv, c.cloud = vv, cloud
	return nil
}
