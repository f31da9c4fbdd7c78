package crdt

import (
	"slices"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

// orsetModel computes the add-wins value from the deltas of a history alone:
// an element is present iff one of its add dots is covered by no other
// delta's context (no remove observed it and no later add replaced it).
func orsetModel(deltas []*ORSet[string]) []string {
	var out []string
	for i, d := range deltas {
		for e, dots := range d.dots.elems {
			for _, dot := range dots {
				covered := false
				for j, o := range deltas {
					if j != i && o.ctx.Contains(dot) {
						covered = true
						break
					}
				}
				if !covered && !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkContext asserts that a context which has merged every delta is the
// compact vector of all dots created: nothing lost, nothing left in the
// cloud, whatever the delivery order.
func checkContext(t *rapid.T, ctx clock.CausalContext, deltas []*ORSet[string]) {
	t.Helper()
	var want clock.Vector
	for _, d := range deltas {
		for dot := range d.dots.allDots {
			if dot.Counter > want.Get(dot.Replica) {
				want.Set(dot.Replica, dot.Counter)
			}
		}
	}
	if n := len(slices.Collect(ctx.Cloud())); n != 0 {
		t.Fatalf("context %v keeps %d dots in its cloud after all deltas arrived", ctx, n)
	}
	if got := ctx.Vector(); got.Compare(want) != clock.Equal {
		t.Fatalf("context vector %v, want %v", got, want)
	}
}

func TestORSetConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		reps, deltas := checkConvergence(t, orsetSubject)
		want := orsetModel(deltas)
		for i, r := range reps {
			if got := r.Elements(); !slices.Equal(got, want) {
				t.Fatalf("replica %d: elements %v, add-wins model %v", i, got, want)
			}
			checkContext(t, r.ctx, deltas)
		}
	})
}

// TestORSetDeltasAnyOrder delivers one replica's deltas to another in a
// random permutation, with duplicates, checking after every step that the
// receiver's context holds exactly the dots delivered so far.
func TestORSetDeltasAnyOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := NewORSet[string]("src")
		var deltas []*ORSet[string]
		for range rapid.IntRange(1, 30).Draw(t, "ops") {
			deltas = append(deltas, orsetOp(t, src))
		}
		order := rapid.Permutation(append(slices.Clone(deltas), deltas[:len(deltas)/2]...)).Draw(t, "order")
		dst := NewORSet[string]("dst")
		var seen clock.CausalContext
		for _, d := range order {
			dst.Merge(d)
			seen.Merge(d.ctx)
			if !dst.ctx.Equal(seen) {
				t.Fatalf("context %v after merging, want the union of delivered contexts %v", dst.ctx, seen)
			}
			for dot := range dst.dots.allDots {
				if !dst.ctx.Contains(dot) {
					t.Fatalf("live dot %v outside the context %v", dot, dst.ctx)
				}
			}
		}
		sameState(t, "receiver vs source", dst, src)
	})
}

func TestORSetAddWins(t *testing.T) {
	tests := []struct {
		name string
		run  func(a, b *ORSet[string])
		want []string
	}{
		{"concurrent add and remove: add wins", func(a, b *ORSet[string]) {
			b.Merge(a.Add("x"))
			ra := a.Remove("x")
			ab := b.Add("x")
			a.Merge(ab)
			b.Merge(ra)
		}, []string{"x"}},
		{"remove removes only observed adds", func(a, b *ORSet[string]) {
			da := a.Add("x")
			rb := b.Remove("x") // b has not seen a's add: a no-op
			b.Merge(da)
			a.Merge(rb)
		}, []string{"x"}},
		{"observed remove removes", func(a, b *ORSet[string]) {
			b.Merge(a.Add("x"))
			a.Merge(b.Remove("x"))
		}, nil},
		{"remove delivered before its add", func(a, b *ORSet[string]) {
			add := a.Add("x")
			rm := a.Remove("x")
			b.Merge(rm)
			b.Merge(add)
			a.Merge(b)
		}, nil},
		{"re-add after remove", func(a, b *ORSet[string]) {
			b.Merge(a.Add("x"))
			b.Merge(a.Remove("x"))
			b.Merge(a.Add("x"))
		}, []string{"x"},
		},
		{"concurrent adds, one remove observing one", func(a, b *ORSet[string]) {
			da, db := a.Add("x"), b.Add("x")
			a.Merge(a.Remove("x"))
			a.Merge(db)
			b.Merge(da)
			b.Merge(a)
		}, []string{"x"}},
		{"clear removes everything observed", func(a, b *ORSet[string]) {
			b.Merge(a.Add("x"))
			b.Merge(a.Add("y"))
			a.Merge(b.Clear())
			b.Merge(a)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewORSet[string]("a"), NewORSet[string]("b")
			tt.run(a, b)
			a.Merge(b.Clone())
			b.Merge(a.Clone())
			for _, s := range []*ORSet[string]{a, b} {
				if got := s.Elements(); !slices.Equal(got, tt.want) && (len(got) > 0 || len(tt.want) > 0) {
					t.Errorf("replica %s: Elements() = %v, want %v", s.Replica(), got, tt.want)
				}
			}
		})
	}
}

// TestORSetNoTombstones: after many add/remove cycles on several replicas
// and a full sync, removed elements leave nothing: the element store holds
// the live elements only, the context is a plain vector, and the encoded
// size is independent of how many elements ever existed.
func TestORSetNoTombstones(t *testing.T) {
	reps := []*ORSet[int]{NewORSet[int]("a"), NewORSet[int]("b"), NewORSet[int]("c")}
	sync := func() {
		for _, r := range reps {
			reps[0].Merge(r)
		}
		for _, r := range reps[1:] {
			r.Merge(reps[0])
		}
	}
	const cycles = 3000
	for i := range cycles {
		r := reps[i%len(reps)]
		d := r.Add(i)
		for _, o := range reps {
			o.Merge(d)
		}
		if i%7 != 0 { // keep every 7th element
			rm := reps[(i+1)%len(reps)].Remove(i)
			for _, o := range reps {
				o.Merge(rm)
			}
		}
	}
	sync()
	live := (cycles + 6) / 7
	for _, r := range reps {
		if r.Len() != live || len(r.dots.elems) != live {
			t.Fatalf("replica %s: %d elements (%d in store), want %d", r.Replica(), r.Len(), len(r.dots.elems), live)
		}
		idx := 0
		for _, m := range r.dots.byDot {
			idx += len(m)
		}
		if idx != live {
			t.Fatalf("dot index holds %d dots, want %d", idx, live)
		}
		if n := len(slices.Collect(r.ctx.Cloud())); n != 0 || r.ctx.Vector().Len() != len(reps) {
			t.Fatalf("context %v: want a vector of %d entries and no cloud", r.ctx, len(reps))
		}
	}
	// Remove the rest: the state shrinks to one small context.
	for _, e := range reps[0].Elements() {
		d := reps[0].Remove(e)
		reps[1].Merge(d)
		reps[2].Merge(d)
	}
	sync()
	for _, r := range reps {
		b := mustEncode(t, r)
		// header 2 + context (len 1, version 1, count 1, 3 × (id 2 + counter ≤ 3),
		// cloud 1) + empty table 1 + element count 1
		if r.Len() != 0 || len(b) > 2+1+1+1+3*5+1+1+1 {
			t.Fatalf("replica %s: %d elements, %d encoded bytes after removing everything", r.Replica(), r.Len(), len(b))
		}
	}
}

func TestORSetDeltaSize(t *testing.T) {
	s := NewORSet[int]("replica-1")
	for i := range 10000 {
		s.Add(i)
	}
	full := len(mustEncode(t, s))
	add := len(mustEncode(t, s.Add(10001)))
	rm := len(mustEncode(t, s.Remove(5)))
	if add > 30 || rm > 24 {
		t.Fatalf("delta sizes: add %d bytes, remove %d bytes; want them independent of the %d-byte state", add, rm, full)
	}
}

func TestORSetAccessorsCopy(t *testing.T) {
	s := NewORSet[string]("a")
	s.Add("b")
	s.Add("a")
	es := s.Elements()
	if !slices.Equal(es, []string{"a", "b"}) {
		t.Fatalf("Elements() = %v, want [a b]", es)
	}
	es[0] = "zzz"
	if !s.Contains("a") || s.Contains("zzz") {
		t.Fatal("mutating the Elements slice changed the set")
	}
	ctx := s.Context()
	ctx.Add(clock.Dot{Replica: "q", Counter: 9})
	if s.ctx.Contains(clock.Dot{Replica: "q", Counter: 9}) {
		t.Fatal("mutating the Context copy changed the set")
	}
	c := s.Clone()
	c.Remove("a")
	if !s.Contains("a") {
		t.Fatal("mutating a clone changed the original")
	}
}
