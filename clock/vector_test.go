package clock_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

// vec builds a vector from alternating id, counter pairs.
func vec(pairs ...any) clock.Vector {
	var v clock.Vector
	for i := 0; i < len(pairs); i += 2 {
		v.Set(pairs[i].(string), uint64(pairs[i+1].(int)))
	}
	return v
}

func toMap(v clock.Vector) map[string]uint64 {
	m := map[string]uint64{}
	for id, n := range v.All() {
		m[id] = n
	}
	return m
}

func TestVectorCompareTable(t *testing.T) {
	tests := []struct {
		name string
		a, b clock.Vector
		want clock.Order
	}{
		{"both empty", vec(), vec(), clock.Equal},
		{"equal", vec("a", 1, "b", 2), vec("b", 2, "a", 1), clock.Equal},
		{"explicit zero equals absent", vec("a", 1, "z", 0), vec("a", 1), clock.Equal},
		{"empty before any", vec(), vec("a", 1), clock.Before},
		{"any after empty", vec("a", 1), vec(), clock.After},
		{"smaller counter", vec("a", 1, "b", 2), vec("a", 2, "b", 2), clock.Before},
		{"larger counter", vec("a", 3, "b", 2), vec("a", 2, "b", 2), clock.After},
		{"subset of ids", vec("b", 1), vec("a", 1, "b", 1), clock.Before},
		{"superset of ids", vec("a", 1, "b", 1, "c", 1), vec("b", 1), clock.After},
		{"crossed counters", vec("a", 2, "b", 1), vec("a", 1, "b", 2), clock.Concurrent},
		{"disjoint ids", vec("a", 1), vec("b", 1), clock.Concurrent},
		{"extra id vs larger counter", vec("a", 1, "c", 1), vec("a", 2), clock.Concurrent},
		{"extra id at end of other", vec("a", 2), vec("a", 2, "z", 1), clock.Before},
		{"extra id at start of other", vec("m", 2), vec("a", 1, "m", 2), clock.Before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Compare(tt.b); got != tt.want {
				t.Errorf("%v.Compare(%v) = %v; want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestVectorTickGetSet(t *testing.T) {
	var v clock.Vector
	if got := v.Tick("b"); got != 1 {
		t.Fatalf("Tick(b) = %d; want 1", got)
	}
	v.Tick("a")
	if got := v.Tick("b"); got != 2 {
		t.Fatalf("second Tick(b) = %d; want 2", got)
	}
	if v.Get("a") != 1 || v.Get("b") != 2 || v.Get("c") != 0 {
		t.Fatalf("Get: got %v", v)
	}
	v.Set("a", 0)
	if v.Len() != 1 || v.Get("a") != 0 {
		t.Fatalf("Set(a, 0) left %v", v)
	}
	if got, want := v.String(), `{"b":2}`; got != want {
		t.Fatalf("String() = %s; want %s", got, want)
	}
}

func TestVectorCloneSharesNothing(t *testing.T) {
	a := vec("a", 1, "b", 1)
	c := a.Clone()
	c.Tick("a")
	c.Merge(vec("z", 5))
	if a.Get("a") != 1 || a.Get("z") != 0 {
		t.Fatalf("mutating a clone changed the original: %v", a)
	}
}

// genVector draws a vector over a small id alphabet so vectors often share ids.
func genVector(t *rapid.T, label string) clock.Vector {
	m := rapid.MapOf(rapid.SampledFrom([]string{"", "a", "b", "c", "d", "e", "ff", "é"}), rapid.Uint64Range(0, 4)).Draw(t, label)
	var v clock.Vector
	for id, n := range m {
		v.Set(id, n)
	}
	return v
}

// modelCompare is the naive definition of the order on maps.
func modelCompare(a, b map[string]uint64) clock.Order {
	less, greater := false, false
	for id := range mapsUnion(a, b) {
		if a[id] < b[id] {
			less = true
		}
		if a[id] > b[id] {
			greater = true
		}
	}
	switch {
	case less && greater:
		return clock.Concurrent
	case less:
		return clock.Before
	case greater:
		return clock.After
	}
	return clock.Equal
}

func mapsUnion(a, b map[string]uint64) map[string]bool {
	u := map[string]bool{}
	for id := range a {
		u[id] = true
	}
	for id := range b {
		u[id] = true
	}
	return u
}

func TestVectorCompareMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genVector(t, "a"), genVector(t, "b")
		got, want := a.Compare(b), modelCompare(toMap(a), toMap(b))
		if got != want {
			t.Fatalf("%v.Compare(%v) = %v; model says %v", a, b, got, want)
		}
		// Antisymmetry.
		back := b.Compare(a)
		switch got {
		case clock.Before:
			if back != clock.After {
				t.Fatalf("a<b but b.Compare(a) = %v", back)
			}
		case clock.After:
			if back != clock.Before {
				t.Fatalf("a>b but b.Compare(a) = %v", back)
			}
		default:
			if back != got {
				t.Fatalf("%v is not symmetric: got %v back", got, back)
			}
		}
		if (got == clock.Equal) != maps.Equal(toMap(a), toMap(b)) {
			t.Fatalf("Equal disagrees with entry equality: %v vs %v", a, b)
		}
	})
}

func TestVectorMergeIsLeastUpperBound(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genVector(t, "a"), genVector(t, "b"), genVector(t, "c")
		m := a.Clone()
		m.Merge(b)
		if !m.Descends(a) || !m.Descends(b) {
			t.Fatalf("merge %v of %v and %v does not descend from both", m, a, b)
		}
		if c.Descends(a) && c.Descends(b) && !c.Descends(m) {
			t.Fatalf("%v is an upper bound of %v and %v but not of their merge %v", c, a, b, m)
		}
		// Commutative, idempotent, associative.
		m2 := b.Clone()
		m2.Merge(a)
		if m.Compare(m2) != clock.Equal {
			t.Fatalf("merge not commutative: %v vs %v", m, m2)
		}
		m3 := m.Clone()
		m3.Merge(m)
		if m3.Compare(m) != clock.Equal {
			t.Fatalf("merge not idempotent")
		}
		l := a.Clone()
		bc := b.Clone()
		bc.Merge(c)
		l.Merge(bc)
		r := m.Clone()
		r.Merge(c)
		if l.Compare(r) != clock.Equal {
			t.Fatalf("merge not associative: %v vs %v", l, r)
		}
		// Entry-wise max against the model.
		for id := range mapsUnion(toMap(a), toMap(b)) {
			if got, want := m.Get(id), max(a.Get(id), b.Get(id)); got != want {
				t.Fatalf("merged[%q] = %d; want %d", id, got, want)
			}
		}
		// Tick moves strictly after.
		id := rapid.SampledFrom([]string{"a", "q"}).Draw(t, "tick")
		ticked := m.Clone()
		ticked.Tick(id)
		if ticked.Compare(m) != clock.After {
			t.Fatalf("after Tick(%q), %v.Compare(%v) != After", id, ticked, m)
		}
	})
}

func TestVectorBeforeIsTransitive(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genVector(t, "a")
		b := a.Clone()
		b.Merge(genVector(t, "db"))
		b.Tick("x")
		c := b.Clone()
		c.Merge(genVector(t, "dc"))
		c.Tick("y")
		if a.Compare(b) != clock.Before || b.Compare(c) != clock.Before || a.Compare(c) != clock.Before {
			t.Fatalf("transitivity: %v %v %v", a, b, c)
		}
	})
}

func TestVectorEncodingRoundTripAndDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genVector(t, "a")
		// Build an equal vector in a different insertion order.
		var b clock.Vector
		ids := rapid.Permutation(keys(toMap(a))).Draw(t, "order")
		for _, id := range ids {
			b.Set(id, a.Get(id))
		}
		ea, _ := a.MarshalBinary()
		eb, _ := b.MarshalBinary()
		if !bytes.Equal(ea, eb) {
			t.Fatalf("equal vectors encode differently: %x vs %x", ea, eb)
		}
		var d clock.Vector
		if err := d.UnmarshalBinary(ea); err != nil {
			t.Fatalf("UnmarshalBinary(%x): %v", ea, err)
		}
		if d.Compare(a) != clock.Equal {
			t.Fatalf("round trip: got %v; want %v", d, a)
		}
		ja, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var dj clock.Vector
		if err := json.Unmarshal(ja, &dj); err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", ja, err)
		}
		if dj.Compare(a) != clock.Equal {
			t.Fatalf("JSON round trip: got %v; want %v", dj, a)
		}
	})
}

func keys(m map[string]uint64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestVectorUnmarshalBinaryRejectsMalformed(t *testing.T) {
	good, _ := vec("a", 1, "b", 300).MarshalBinary()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{2, 0}},
		{"truncated count", []byte{1}},
		{"truncated entry", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"unsorted ids", []byte{1, 2, 1, 'b', 1, 1, 'a', 1}},
		{"repeated id", []byte{1, 2, 1, 'a', 1, 1, 'a', 2}},
		{"zero counter", []byte{1, 1, 1, 'a', 0}},
		{"non-minimal varint", []byte{1, 1, 1, 'a', 0x81, 0x00}},
		{"varint overflow", []byte{1, 1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"huge count", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"counter above MaxCounter", []byte{1, 1, 1, 'a', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
		{"huge id length", []byte{1, 1, 0xff, 0xff, 0x03, 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vec("keep", 7)
			err := v.UnmarshalBinary(tt.data)
			if !errors.Is(err, clock.ErrMalformed) {
				t.Fatalf("UnmarshalBinary(%x) = %v; want ErrMalformed", tt.data, err)
			}
			if v.Get("keep") != 7 || v.Len() != 1 {
				t.Fatalf("failed UnmarshalBinary changed the vector to %v", v)
			}
		})
	}
}

func TestVectorJSON(t *testing.T) {
	b, err := json.Marshal(vec("b", 2, "a", 1, "q\"", 3))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"a":1,"b":2,"q\"":3}`; got != want {
		t.Fatalf("MarshalJSON = %s; want %s", got, want)
	}
	var v clock.Vector
	if err := json.Unmarshal([]byte(`{"x": 0, "y": 5}`), &v); err != nil || v.Len() != 1 || v.Get("y") != 5 {
		t.Fatalf("UnmarshalJSON with zero entry: %v, %v", v, err)
	}
	for _, bad := range []string{`[]`, `{"a":-1}`, `{"a":1.5}`, `{"a":"1"}`, `{"a":1,"a":2}`, `{"a":18446744073709551616}`, `{"a":9223372036854775808}`, `{`} {
		v := vec("keep", 1)
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("UnmarshalJSON(%s) accepted; got %v", bad, v)
		}
		if v.Get("keep") != 1 {
			t.Errorf("failed UnmarshalJSON(%s) changed the vector to %v", bad, v)
		}
	}
}
