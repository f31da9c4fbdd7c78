package crdt

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/distkit/distkit/clock"
)

func TestCounters(t *testing.T) {
	a, b, c := NewGCounter("a"), NewGCounter("b"), NewGCounter("c")
	da := a.Inc(3)
	a.Inc(2)
	b.Inc(10)
	c.Merge(da)
	c.Merge(a)
	c.Merge(b)
	c.Merge(da) // late duplicate
	if got := c.Value(); got != 15 {
		t.Fatalf("GCounter Value = %d, want 15", got)
	}
	if got := da.Value(); got != 3 {
		t.Fatalf("delta of Inc(3) has Value %d, want 3", got)
	}
	if got := c.Counts(); got.Get("a") != 5 || got.Get("b") != 10 || got.Len() != 2 {
		t.Fatalf("Counts = %v", got)
	}
	sat := NewGCounter("s")
	sat.Inc(math.MaxUint64 - 1)
	sat.Inc(5)
	if sat.Value() != math.MaxUint64 {
		t.Fatalf("saturating Inc: %d", sat.Value())
	}
	sat.Merge(a)
	if sat.Value() != math.MaxUint64 {
		t.Fatalf("saturating Value: %d", sat.Value())
	}

	p, q := NewPNCounter("p"), NewPNCounter("q")
	d1 := p.Inc(5)
	d2 := q.Dec(8)
	p.Merge(d2)
	q.Merge(d1)
	q.Merge(d2)
	if p.Value() != -3 || q.Value() != -3 {
		t.Fatalf("PNCounter values %d, %d, want -3", p.Value(), q.Value())
	}
	if p.Increments().Get("p") != 5 || p.Decrements().Get("q") != 8 {
		t.Fatalf("Increments %v Decrements %v", p.Increments(), p.Decrements())
	}
	var zero PNCounter
	zero.Merge(p)
	if zero.Value() != -3 || !zero.Equal(p) {
		t.Fatalf("zero value merge: %d", zero.Value())
	}
}

func TestGSet(t *testing.T) {
	var s GSet[int]
	d := s.Add(3)
	s.Add(1)
	s.Add(3)
	if s.Len() != 2 || !s.Contains(1) || s.Contains(2) {
		t.Fatalf("GSet %v", s.Elements())
	}
	if got := s.Elements(); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("Elements = %v, want [1 3]", got)
	}
	if d.Len() != 1 || !d.Contains(3) {
		t.Fatalf("delta of Add(3) = %v", d.Elements())
	}
	o := NewGSet[int]()
	o.Merge(d)
	o.Merge(&s)
	if !o.Equal(&s) {
		t.Fatalf("merge: %v vs %v", o.Elements(), s.Elements())
	}
}

func TestLWWRegisterTies(t *testing.T) {
	// Both clocks read the same physical time: the first writes of a and b
	// carry equal timestamps, and the higher replica id must win everywhere.
	a := NewLWWRegister[string]("a", coarseHLC())
	b := NewLWWRegister[string]("b", coarseHLC())
	da, db := a.Set("from a"), b.Set("from b")
	if da.Timestamp() != db.Timestamp() {
		t.Fatalf("test needs equal timestamps: %v %v", da.Timestamp(), db.Timestamp())
	}
	a.Merge(db)
	b.Merge(da)
	for _, r := range []*LWWRegister[string]{a, b} {
		if v, ok := r.Get(); !ok || v != "from b" || r.Writer() != "b" {
			t.Fatalf("replica %s: Get = %q, %v (writer %q), want the higher replica id's write", r.Replica(), v, ok, r.Writer())
		}
	}
	// A write after seeing another wins even though the physical clock has
	// not moved.
	d := a.Set("later from a")
	b.Merge(d)
	if v, _ := b.Get(); v != "later from a" {
		t.Fatalf("causally later write lost: %q", v)
	}
	// Unset register.
	var z LWWRegister[string]
	if _, ok := z.Get(); ok {
		t.Fatal("zero register reports a value")
	}
	z.Merge(&LWWRegister[string]{})
	if _, ok := z.Get(); ok {
		t.Fatal("merging an unset register set a value")
	}
	// nil clock falls back to a real HLC.
	r := NewLWWRegister[int]("r", nil)
	r.Set(4)
	if v, ok := r.Get(); !ok || v != 4 || r.Timestamp().IsZero() {
		t.Fatalf("nil clock: %v %v %v", v, ok, r.Timestamp())
	}
}

func TestLWWRegisterOldWriteLoses(t *testing.T) {
	now := int64(2000)
	fast := NewLWWRegister[string]("a", clock.NewHLC(clock.WithPhysicalClock(func() int64 { return now })))
	slow := NewLWWRegister[string]("b", clock.NewHLC(clock.WithPhysicalClock(func() int64 { return 10 })))
	slow.Merge(fast.Set("fast"))
	slow.Set("slow but later") // its HLC must move past the merged write
	if v, _ := slow.Get(); v != "slow but later" {
		t.Fatalf("local write after merge lost to an earlier one: %q", v)
	}
}

func TestMVRegisterSiblings(t *testing.T) {
	a, b := NewMVRegister[string]("a"), NewMVRegister[string]("b")
	da, db := a.Set("x"), b.Set("y")
	a.Merge(db)
	b.Merge(da)
	for _, r := range []*MVRegister[string]{a, b} {
		if got := r.Values(); !slices.Equal(got, []string{"x", "y"}) {
			t.Fatalf("concurrent writes: Values = %v, want [x y]", got)
		}
	}
	d := a.Set("z") // has seen both
	b.Merge(d)
	if got := b.Values(); !slices.Equal(got, []string{"z"}) {
		t.Fatalf("later write: Values = %v, want [z]", got)
	}
	// Equal concurrent values are reported once.
	c, e := NewMVRegister[string]("c"), NewMVRegister[string]("e")
	c.Merge(e.Set("same"))
	c2 := NewMVRegister[string]("c2")
	c.Merge(c2.Set("same"))
	if got := c.Values(); !slices.Equal(got, []string{"same"}) {
		t.Fatalf("duplicate siblings: %v", got)
	}
	c.Merge(c.Clear())
	if got := c.Values(); len(got) != 0 {
		t.Fatalf("after Clear: %v", got)
	}
}

func TestCCounterAndFlag(t *testing.T) {
	a, b := NewCCounter("a"), NewCCounter("b")
	b.Merge(a.Inc(5))
	b.Merge(a.Dec(2))
	b.Merge(b.Inc(10))
	if b.Value() != 13 {
		t.Fatalf("CCounter Value = %d, want 13", b.Value())
	}
	r := b.Reset()
	inc := a.Inc(1) // concurrent with the reset: a's total (4) survives it
	a.Merge(r)
	b.Merge(inc)
	if a.Value() != 4 || b.Value() != 4 {
		t.Fatalf("reset concurrent with inc: %d, %d, want 4", a.Value(), b.Value())
	}

	f, g := NewEWFlag("f"), NewEWFlag("g")
	g.Merge(f.Enable())
	dis := g.Disable()
	en := f.Enable() // concurrent with the disable: enable wins
	f.Merge(dis)
	g.Merge(en)
	if !f.Value() || !g.Value() {
		t.Fatal("enable concurrent with disable did not win")
	}
	f.Merge(g.Disable())
	if f.Value() {
		t.Fatal("observed disable did not disable")
	}
}

func TestORMapSemantics(t *testing.T) {
	inc := func(n uint64) func(*CCounter) *CCounter { return func(c *CCounter) *CCounter { return c.Inc(n) } }
	add := func(e string) func(*ORSet[string]) *ORSet[string] {
		return func(s *ORSet[string]) *ORSet[string] { return s.Add(e) }
	}

	t.Run("remove does not resurrect from an old copy", func(t *testing.T) {
		a, b := NewORMap[string, *CCounter]("a"), NewORMap[string, *CCounter]("b")
		b.Merge(a.Update("k", inc(5)))
		old := b.Clone() // a stale copy of b holding k=5
		b.Merge(a.Remove("k"))
		b.Merge(old)
		a.Merge(old)
		if a.Contains("k") || b.Contains("k") {
			t.Fatal("removed key came back from an old state")
		}
		b.Merge(b.Update("k", inc(1)))
		if c, _ := b.Get("k"); c.Value() != 1 {
			t.Fatalf("re-created counter = %d, want 1 (reset)", c.Value())
		}
	})

	t.Run("update concurrent with remove wins, keeps only unobserved writes", func(t *testing.T) {
		a, b := NewORMap[string, *ORSet[string]]("a"), NewORMap[string, *ORSet[string]]("b")
		b.Merge(a.Update("k", add("old")))
		rm := a.Remove("k")
		up := b.Update("k", add("new"))
		a.Merge(up)
		b.Merge(rm)
		for _, m := range []*ORMap[string, *ORSet[string]]{a, b} {
			s, ok := m.Get("k")
			if !ok || !slices.Equal(s.Elements(), []string{"new"}) {
				t.Fatalf("replica %s: k = %v, %v, want [new]", m.Replica(), s, ok)
			}
		}
		sameState(t, "a vs b", a, b)
	})

	t.Run("nested remove empties key", func(t *testing.T) {
		m := NewORMap[string, *ORSet[string]]("a")
		m.Update("k", add("x"))
		d := m.Update("k", func(s *ORSet[string]) *ORSet[string] { return s.Remove("x") })
		if m.Contains("k") || m.Len() != 0 {
			t.Fatal("key with empty set still present")
		}
		o := NewORMap[string, *ORSet[string]]("o")
		o.Merge(d)
		if o.Len() != 0 {
			t.Fatal("delta of a removal created a key")
		}
	})

	t.Run("Get returns a copy", func(t *testing.T) {
		m := NewORMap[string, *ORSet[string]]("a")
		m.Update("k", add("x"))
		s, _ := m.Get("k")
		s.Add("y")
		if got, _ := m.Get("k"); got.Contains("y") {
			t.Fatal("mutating Get's result changed the map")
		}
		if ks := m.Keys(); !slices.Equal(ks, []string{"k"}) {
			t.Fatalf("Keys = %v", ks)
		}
		n := 0
		for k, v := range m.All() {
			n++
			if k != "k" || !v.Contains("x") {
				t.Fatalf("All yielded %q %v", k, v.Elements())
			}
		}
		if n != 1 {
			t.Fatalf("All yielded %d entries", n)
		}
	})

	t.Run("no tombstones", func(t *testing.T) {
		m := NewORMap[int, *CCounter]("a")
		for i := range 1000 {
			m.Update(i, inc(1))
		}
		for i := range 1000 {
			m.Remove(i)
		}
		b := mustEncode(t, m)
		if m.Len() != 0 || len(b) > 16 {
			t.Fatalf("after removing all keys: %d keys, %d bytes", m.Len(), len(b))
		}
	})

	t.Run("nil delta from f", func(t *testing.T) {
		m := NewORMap[string, *CCounter]("a")
		d := m.Update("k", func(*CCounter) *CCounter { return nil })
		if m.Len() != 0 || d.Len() != 0 || !d.ctx.IsZero() {
			t.Fatal("nil delta changed something")
		}
	})
}

// point is a comparable type the package cannot encode by itself.
type point struct{ X, Y int8 }

type pointCodec struct{}

func (pointCodec) Append(b []byte, p point) ([]byte, error) {
	return append(b, byte(p.X), byte(p.Y)), nil
}

func (pointCodec) Decode(d []byte) (point, error) {
	if len(d) != 2 {
		return point{}, errors.New("point: want 2 bytes")
	}
	return point{int8(d[0]), int8(d[1])}, nil
}

// celsius is a named basic kind: encoded with no setup.
type celsius float32

type userID string

// stamp implements encoding.BinaryMarshaler: encoded with no setup.
type stamp struct{ n uint16 }

func (s stamp) MarshalBinary() ([]byte, error) { return []byte{byte(s.n >> 8), byte(s.n)}, nil }
func (s *stamp) UnmarshalBinary(d []byte) error {
	if len(d) != 2 {
		return errors.New("stamp: want 2 bytes")
	}
	s.n = uint16(d[0])<<8 | uint16(d[1])
	return nil
}

func roundTrip[T crdtLike[T]](t *testing.T, x, into T) {
	t.Helper()
	b := mustEncode(t, x)
	if err := into.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	sameState(t, "round trip", into, x)
}

func TestCodecs(t *testing.T) {
	s := NewORSet[point]("a")
	s.Add(point{1, 2})
	if _, err := s.MarshalBinary(); !errors.Is(err, ErrNoCodec) {
		t.Fatalf("MarshalBinary without codec: %v, want ErrNoCodec", err)
	}
	s.SetCodec(pointCodec{})
	s.Add(point{-1, 0})
	dst := NewORSet[point]("b")
	dst.SetCodec(pointCodec{})
	roundTrip(t, s, dst)
	var noCodec ORSet[point]
	b := mustEncode(t, s)
	if err := noCodec.UnmarshalBinary(b); !errors.Is(err, ErrNoCodec) {
		t.Fatalf("UnmarshalBinary without codec: %v, want ErrNoCodec", err)
	}
	if got := s.Elements(); !slices.Equal(got, []point{{1, 2}, {-1, 0}}) {
		t.Fatalf("Elements sorted by encoding = %v", got)
	}

	g := NewGSet[celsius]()
	g.Add(-3.5)
	g.Add(20)
	roundTrip(t, g, NewGSet[celsius]())
	u := NewGSet[userID]()
	u.Add("bob")
	roundTrip(t, u, NewGSet[userID]())
	st := NewGSet[stamp]()
	st.Add(stamp{300})
	roundTrip(t, st, NewGSet[stamp]())
	bs := NewGSet[bool]()
	bs.Add(true)
	bs.Add(false)
	roundTrip(t, bs, NewGSet[bool]())
	for _, f := range []func() error{
		func() error { x := NewGSet[int8](); x.Add(-128); return roundTripErr(x, NewGSet[int8]()) },
		func() error { x := NewGSet[uint16](); x.Add(65535); return roundTripErr(x, NewGSet[uint16]()) },
		func() error { x := NewGSet[float64](); x.Add(math.Inf(-1)); return roundTripErr(x, NewGSet[float64]()) },
		func() error { x := NewGSet[int](); x.Add(math.MinInt); return roundTripErr(x, NewGSet[int]()) },
		func() error { x := NewGSet[uint64](); x.Add(math.MaxUint64); return roundTripErr(x, NewGSet[uint64]()) },
		func() error { x := NewGSet[int64](); x.Add(-7); return roundTripErr(x, NewGSet[int64]()) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	// Out-of-range value for a narrower type is rejected.
	wide := NewGSet[int64]()
	wide.Add(1000)
	if err := NewGSet[int8]().UnmarshalBinary(mustEncode(t, wide)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("int8 out of range: %v", err)
	}

	l := NewLWWRegister[[]byte]("a", coarseHLC())
	l.Set([]byte{1, 2, 3})
	l2 := &LWWRegister[[]byte]{}
	roundTrip(t, l, l2)
	if v, _ := l2.Get(); !slices.Equal(v, []byte{1, 2, 3}) {
		t.Fatalf("[]byte value %v", v)
	}
	mv := NewMVRegister[point]("a")
	mv.SetCodec(pointCodec{})
	mv.Set(point{3, 4})
	mv2 := &MVRegister[point]{}
	mv2.SetCodec(pointCodec{})
	roundTrip(t, mv, mv2)
	m := NewORMap[point, *EWFlag]("a")
	m.SetCodec(pointCodec{})
	m.Update(point{1, 1}, (*EWFlag).Enable)
	m2 := &ORMap[point, *EWFlag]{}
	m2.SetCodec(pointCodec{})
	roundTrip(t, m, m2)
}

func roundTripErr[T crdtLike[T]](x, into T) error {
	b, err := x.MarshalBinary()
	if err != nil {
		return err
	}
	if err := into.UnmarshalBinary(b); err != nil {
		return err
	}
	if !into.Equal(x) {
		return errors.New("round trip changed the value")
	}
	return nil
}

func TestDecodeErrors(t *testing.T) {
	s := NewORSet[string]("a")
	s.Add("x")
	good := mustEncode(t, s)
	gset := mustEncode(t, NewGSet[string]())
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"other type's tag", gset},
		{"unknown tag", append([]byte{1, 200}, good[2:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(slices.Clone(good), 0)},
		{"hostile count", []byte{1, tagORSet, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Clone()
			if err := s.UnmarshalBinary(tt.data); !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnmarshalBinary(%x) = %v, want ErrMalformed", tt.data, err)
			}
			sameState(t, "unchanged after error", s, before)
		})
	}
	// A dot outside the context is invalid state.
	bad := &ORSet[string]{}
	bad.dots.set("x", []clock.Dot{{Replica: "a", Counter: 1}})
	if err := (&ORSet[string]{}).UnmarshalBinary(mustEncode(t, bad)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("dot outside the context accepted: %v", err)
	}
}
