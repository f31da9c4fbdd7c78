package clock_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

type dotSet map[clock.Dot]bool

var replicas = []string{"a", "b", "c"}

// genContext draws a context and the model set of dots it must contain.
func genContext(t *rapid.T, label string) (clock.CausalContext, dotSet) {
	var c clock.CausalContext
	model := dotSet{}
	for _, d := range rapid.SliceOfN(rapid.Custom(func(t *rapid.T) clock.Dot {
		return clock.Dot{Replica: rapid.SampledFrom(replicas).Draw(t, "r"), Counter: rapid.Uint64Range(1, 8).Draw(t, "n")}
	}), 0, 20).Draw(t, label) {
		c.Add(d)
		model[d] = true
	}
	return c, model
}

func checkContext(t *rapid.T, c clock.CausalContext, model dotSet) {
	for _, r := range replicas {
		for n := uint64(1); n <= 10; n++ {
			d := clock.Dot{Replica: r, Counter: n}
			if c.Contains(d) != model[d] {
				t.Fatalf("%v: Contains(%v) = %v; model says %v", c, d, c.Contains(d), model[d])
			}
		}
	}
	// Canonical form: a vector entry n means 1..n are all in; the cloud
	// holds only dots beyond a gap.
	for d := range c.Cloud() {
		if d.Counter <= c.Vector().Get(d.Replica)+1 {
			t.Fatalf("%v: cloud dot %v is not beyond a gap", c, d)
		}
	}
}

func TestCausalContextAddMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c, model := genContext(t, "dots")
		checkContext(t, c, model)
		r := rapid.SampledFrom(replicas).Draw(t, "next")
		before := c.Clone()
		d := c.Next(r)
		if before.Contains(d) {
			t.Fatalf("Next(%q) = %v, already in %v", r, d, before)
		}
		if !c.Contains(d) {
			t.Fatalf("Next(%q) = %v not added", r, d)
		}
		model[d] = true
		checkContext(t, c, model)
	})
}

func TestCausalContextMergeIsUnion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, ma := genContext(t, "a")
		b, mb := genContext(t, "b")
		c, mc := genContext(t, "c")
		ab := a.Clone()
		ab.Merge(b)
		union := dotSet{}
		for d := range ma {
			union[d] = true
		}
		for d := range mb {
			union[d] = true
		}
		checkContext(t, ab, union)
		ba := b.Clone()
		ba.Merge(a)
		if !ab.Equal(ba) {
			t.Fatalf("not commutative: %v vs %v", ab, ba)
		}
		aa := a.Clone()
		aa.Merge(a)
		if !aa.Equal(a) {
			t.Fatalf("not idempotent: %v vs %v", aa, a)
		}
		l := a.Clone()
		bc := b.Clone()
		bc.Merge(c)
		l.Merge(bc)
		r := ab.Clone()
		r.Merge(c)
		if !l.Equal(r) {
			t.Fatalf("not associative: %v vs %v", l, r)
		}
		_ = mc
		// Equal contexts encode identically and round-trip.
		el, _ := l.MarshalBinary()
		er, _ := r.MarshalBinary()
		if !bytes.Equal(el, er) {
			t.Fatalf("equal contexts encode differently")
		}
		var back clock.CausalContext
		if err := back.UnmarshalBinary(el); err != nil || !back.Equal(l) {
			t.Fatalf("round trip of %v: %v, %v", l, back, err)
		}
		if a.Equal(ab) != (len(union) == len(ma)) {
			t.Fatalf("Equal disagrees with the model")
		}
	})
}

func TestCausalContextOutOfOrder(t *testing.T) {
	var c clock.CausalContext
	c.Add(clock.Dot{Replica: "a", Counter: 3})
	c.Add(clock.Dot{Replica: "a", Counter: 2})
	if c.Vector().Get("a") != 0 || c.Max("a") != 3 || c.Contains(clock.Dot{Replica: "a", Counter: 1}) {
		t.Fatalf("gap not respected: %v", c)
	}
	c.Add(clock.Dot{Replica: "a", Counter: 1})
	if c.Vector().Get("a") != 3 {
		t.Fatalf("cloud not absorbed after the gap filled: %v", c)
	}
	if n := len(collect(c)); n != 0 {
		t.Fatalf("cloud still has %d dots: %v", n, c)
	}
	if got := c.String(); got != `{"a":3}` {
		t.Fatalf("String() = %s", got)
	}
	c.Add(clock.Dot{Replica: "b", Counter: 5})
	if got := c.String(); got != `{"a":3}+["b":5]` {
		t.Fatalf("String() = %s", got)
	}
	if got := c.Next("b"); got != (clock.Dot{Replica: "b", Counter: 6}) {
		t.Fatalf("Next(b) = %v; want b:6", got)
	}
}

func collect(c clock.CausalContext) []clock.Dot {
	var ds []clock.Dot
	for d := range c.Cloud() {
		ds = append(ds, d)
	}
	return ds
}

func TestCausalContextUnmarshalRejectsNonCanonical(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad version", []byte{9, 0, 0}},
		{"missing cloud", []byte{1, 0}},
		{"cloud dot covered by vector", []byte{1, 1, 1, 'a', 3, 1, 1, 'a', 2}},
		{"cloud dot absorbable", []byte{1, 1, 1, 'a', 3, 1, 1, 'a', 4}},
		{"cloud unsorted", []byte{1, 0, 2, 1, 'b', 5, 1, 'a', 5}},
		{"cloud repeated", []byte{1, 0, 2, 1, 'a', 5, 1, 'a', 5}},
		{"zero dot", []byte{1, 0, 1, 1, 'a', 0}},
		{"trailing", []byte{1, 0, 0, 0}},
		{"huge cloud count", []byte{1, 0, 0xff, 0xff, 0x7f}},
		{"cloud dot above MaxCounter", []byte{1, 0, 1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c clock.CausalContext
			c.Add(clock.Dot{Replica: "keep", Counter: 1})
			if err := c.UnmarshalBinary(tt.data); !errors.Is(err, clock.ErrMalformed) {
				t.Fatalf("UnmarshalBinary(%x) = %v; want ErrMalformed", tt.data, err)
			}
			if !c.Contains(clock.Dot{Replica: "keep", Counter: 1}) {
				t.Fatal("failed UnmarshalBinary changed the context")
			}
		})
	}
	var c clock.CausalContext
	if err := c.UnmarshalBinary([]byte{1, 1, 1, 'a', 3, 1, 1, 'a', 5}); err != nil {
		t.Fatalf("valid encoding rejected: %v", err)
	}
	if !c.Contains(clock.Dot{Replica: "a", Counter: 5}) || c.Contains(clock.Dot{Replica: "a", Counter: 4}) {
		t.Fatalf("decoded %v", c)
	}
}
