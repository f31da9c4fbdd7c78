package crdt_test

import (
	"fmt"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/crdt"
)

func ExampleGCounter() {
	a, b := crdt.NewGCounter("a"), crdt.NewGCounter("b")
	d := a.Inc(2) // the delta carries only a's new total
	b.Inc(3)
	b.Merge(d)
	b.Merge(d) // duplicates are harmless
	a.Merge(b)
	fmt.Println(a.Value(), b.Value())
	// Output: 5 5
}

func ExamplePNCounter() {
	stock := crdt.NewPNCounter("warehouse-1")
	other := crdt.NewPNCounter("warehouse-2")
	other.Merge(stock.Inc(10))
	stock.Merge(other.Dec(3))
	fmt.Println(stock.Value(), other.Value())
	// Output: 7 7
}

func ExampleGSet() {
	seen := crdt.NewGSet[string]()
	seen.Add("req-2")
	d := seen.Add("req-1")
	peer := crdt.NewGSet[string]()
	peer.Merge(d)
	fmt.Println(seen.Elements(), peer.Elements())
	// Output: [req-1 req-2] [req-1]
}

func ExampleORSet() {
	a := crdt.NewORSet[string]("a")
	b := crdt.NewORSet[string]("b")
	b.Merge(a.Add("x"))

	// a removes x while b, concurrently, adds it again: the add wins.
	rm := a.Remove("x")
	add := b.Add("x")
	a.Merge(add)
	b.Merge(rm)
	fmt.Println(a.Elements(), b.Elements())
	// Output: [x] [x]
}

func ExampleORSet_Merge() {
	src := crdt.NewORSet[int]("src")
	d1 := src.Add(1)
	d2 := src.Add(2)
	d3 := src.Remove(1)

	// Deltas delivered out of order and duplicated still converge.
	dst := crdt.NewORSet[int]("dst")
	for _, d := range []*crdt.ORSet[int]{d3, d2, d3, d1} {
		dst.Merge(d)
	}
	fmt.Println(dst.Elements(), dst.Equal(src))
	// Output: [2] true
}

func ExampleORSet_MarshalBinary() {
	s := crdt.NewORSet[string]("a")
	d := s.Add("hello")
	wire, _ := d.MarshalBinary()

	var in crdt.ORSet[string]
	if err := in.UnmarshalBinary(wire); err != nil {
		fmt.Println(err)
		return
	}
	peer := crdt.NewORSet[string]("b")
	peer.Merge(&in)
	fmt.Println(peer.Elements())
	// Output: [hello]
}

func ExampleLWWRegister() {
	// A fixed physical clock makes both writes carry the same timestamp:
	// the tie goes to the higher replica id.
	fixed := func() int64 { return 1_700_000_000_000_000_000 }
	a := crdt.NewLWWRegister[string]("a", clock.NewHLC(clock.WithPhysicalClock(fixed)))
	b := crdt.NewLWWRegister[string]("b", clock.NewHLC(clock.WithPhysicalClock(fixed)))
	da, db := a.Set("blue"), b.Set("green")
	a.Merge(db)
	b.Merge(da)
	va, _ := a.Get()
	vb, _ := b.Get()
	fmt.Println(va, vb)
	// Output: green green
}

func ExampleMVRegister() {
	a := crdt.NewMVRegister[string]("a")
	b := crdt.NewMVRegister[string]("b")
	da, db := a.Set("draft by a"), b.Set("draft by b")
	a.Merge(db)
	b.Merge(da)
	fmt.Println(a.Values())

	// A write that has seen both siblings replaces them.
	b.Merge(a.Set("merged draft"))
	fmt.Println(b.Values())
	// Output:
	// [draft by a draft by b]
	// [merged draft]
}

func ExampleCCounter() {
	a := crdt.NewCCounter("a")
	b := crdt.NewCCounter("b")
	b.Merge(a.Inc(5))
	b.Merge(b.Dec(2))
	fmt.Println(b.Value())
	a.Merge(b.Reset())
	fmt.Println(a.Value())
	// Output:
	// 3
	// 0
}

func ExampleEWFlag() {
	a := crdt.NewEWFlag("a")
	b := crdt.NewEWFlag("b")
	b.Merge(a.Enable())
	off := b.Disable()
	on := a.Enable() // concurrent with the disable: enable wins
	a.Merge(off)
	b.Merge(on)
	fmt.Println(a.Value(), b.Value())
	// Output: true true
}

func ExampleORMap() {
	// A map of causal counters: page -> visits.
	a := crdt.NewORMap[string, *crdt.CCounter]("a")
	b := crdt.NewORMap[string, *crdt.CCounter]("b")
	inc := func(c *crdt.CCounter) *crdt.CCounter { return c.Inc(1) }

	b.Merge(a.Update("/home", inc))
	b.Merge(b.Update("/home", inc))
	b.Merge(b.Update("/about", inc))
	a.Merge(b)
	for page, visits := range a.All() {
		fmt.Println(page, visits.Value())
	}

	// Removing a key resets it; a stale copy does not bring it back.
	stale := b.Clone()
	a.Merge(a.Remove("/home"))
	a.Merge(stale)
	fmt.Println(a.Keys())
	// Output:
	// /about 1
	// /home 2
	// [/about]
}

func ExampleORMap_Update() {
	// A map of sets: user -> roles.
	roles := crdt.NewORMap[string, *crdt.ORSet[string]]("a")
	d := roles.Update("alice", func(s *crdt.ORSet[string]) *crdt.ORSet[string] {
		d := s.Add("admin")
		d.Merge(s.Add("dev")) // several changes: merge their deltas
		return d
	})
	peer := crdt.NewORMap[string, *crdt.ORSet[string]]("b")
	peer.Merge(d)
	s, _ := peer.Get("alice")
	fmt.Println(s.Elements())
	// Output: [admin dev]
}

// rgb is a type the package cannot encode by itself.
type rgb struct{ R, G, B uint8 }

type rgbCodec struct{}

func (rgbCodec) Append(b []byte, c rgb) ([]byte, error) { return append(b, c.R, c.G, c.B), nil }

func (rgbCodec) Decode(d []byte) (rgb, error) {
	if len(d) != 3 {
		return rgb{}, fmt.Errorf("rgb: %d bytes, want 3", len(d))
	}
	return rgb{d[0], d[1], d[2]}, nil
}

func ExampleCodec() {
	palette := crdt.NewORSet[rgb]("a")
	palette.SetCodec(rgbCodec{})
	palette.Add(rgb{255, 0, 0})
	wire, _ := palette.MarshalBinary()

	restored := crdt.NewORSet[rgb]("b")
	restored.SetCodec(rgbCodec{})
	err := restored.UnmarshalBinary(wire)
	fmt.Println(restored.Elements(), err)
	// Output: [{255 0 0}] <nil>
}

func ExampleDeltaLog() {
	src := crdt.NewORSet[string]("src")
	log := crdt.NewDeltaLog[*crdt.ORSet[string]](1024)
	peer := crdt.NewORSet[string]("peer")

	log.Append(src.Add("a"))
	log.Append(src.Add("b"))

	// First contact: the peer is unknown, so it gets the full state.
	_, upTo, _, full := log.Since("peer")
	if full {
		peer.Merge(src.Clone())
		log.Ack("peer", upTo) // once the peer confirms
	}

	log.Append(src.Remove("a"))
	log.Append(src.Add("c"))
	d, upTo, pending, _ := log.Since("peer") // one joined delta for both
	if pending {
		peer.Merge(d)
		log.Ack("peer", upTo)
	}
	fmt.Println(peer.Elements(), log.Len())
	// Output: [b c] 0
}
