package quorum_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
	"pgregory.net/rapid"
)

// genObjects builds objects as replicas would: a few replicas apply writes
// (blind or with the context of some replica's state) and merge each other's
// states at random, so every generated object is reachable.
func genObjects(t *rapid.T) []quorum.Object[string] {
	reps := []string{"r0", "r1", "r2"}
	state := make([]quorum.Object[string], len(reps))
	n := rapid.IntRange(0, 25).Draw(t, "ops")
	for i := range n {
		r := rapid.IntRange(0, len(reps)-1).Draw(t, "replica")
		switch rapid.IntRange(0, 2).Draw(t, "kind") {
		case 0:
			var ctx clock.Vector
			if rapid.Bool().Draw(t, "withContext") {
				ctx = state[rapid.IntRange(0, len(reps)-1).Draw(t, "ctxFrom")].Context
			}
			state[r] = state[r].Update(reps[r], quorum.Write[string]{Context: ctx, Value: fmt.Sprint(i), Delete: rapid.IntRange(0, 4).Draw(t, "del") == 0})
		default:
			o := rapid.IntRange(0, len(reps)-1).Draw(t, "from")
			state[r] = state[r].Merge(state[o])
		}
	}
	return state
}

func TestObjectMergeIsASemilattice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genObjects(t)
		a, b, c := s[0], s[1], s[2]
		eq := func(what string, x, y quorum.Object[string]) {
			if x.Digest() != y.Digest() || !slices.Equal(x.Values(), y.Values()) {
				t.Fatalf("%s: %+v != %+v", what, x, y)
			}
		}
		eq("commutative", a.Merge(b), b.Merge(a))
		eq("associative", a.Merge(b).Merge(c), a.Merge(b.Merge(c)))
		eq("idempotent", a.Merge(a), a)
		m := a.Merge(b)
		if !m.Context.Descends(a.Context) || !m.Context.Descends(b.Context) {
			t.Fatal("merge context does not cover both sides")
		}
		// Every sibling of the merge is a sibling of one side.
		for _, s := range m.Siblings {
			in := func(o quorum.Object[string]) bool {
				return slices.ContainsFunc(o.Siblings, func(x quorum.Sibling[string]) bool { return x.Dot == s.Dot })
			}
			if !in(a) && !in(b) {
				t.Fatalf("merge invented sibling %v", s.Dot)
			}
		}
	})
}

func TestObjectUpdateSemantics(t *testing.T) {
	var o quorum.Object[string]
	if !o.IsZero() || o.Deleted() || len(o.Values()) != 0 {
		t.Fatal("zero object is not empty")
	}
	a := o.Update("r1", quorum.Write[string]{Value: "a"})
	b := o.Update("r2", quorum.Write[string]{Value: "b"})
	ab := a.Merge(b)
	if got := ab.Values(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("concurrent writes: %v, want siblings [a b]", got)
	}
	// A write that saw both replaces both, wherever it is coordinated.
	c := b.Update("r2", quorum.Write[string]{Context: ab.Context, Value: "c"})
	if got := c.Merge(ab).Values(); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("superseding write: %v, want [c]", got)
	}
	// A write that saw only a leaves b as a sibling.
	d := a.Update("r1", quorum.Write[string]{Context: a.Context, Value: "d"})
	if got := slices.Sorted(slices.Values(d.Merge(b).Values())); !slices.Equal(got, []string{"b", "d"}) {
		t.Fatalf("partial supersede: %v, want [b d]", got)
	}
	// Dots on one replica grow even when the client context is ahead.
	e := o.Update("r1", quorum.Write[string]{Context: d.Context, Value: "e"})
	if e.Siblings[0].Dot.Counter <= d.Context.Get("r1") {
		t.Fatalf("dot %v reuses a counter the context covers", e.Siblings[0].Dot)
	}
	// Tombstones.
	del := ab.Update("r1", quorum.Write[string]{Context: ab.Context, Delete: true})
	if !del.Deleted() || len(del.Values()) != 0 || len(del.Siblings) != 1 {
		t.Fatalf("delete: %+v", del)
	}
	// Update and Merge never modify their inputs.
	before := ab.Digest()
	_ = ab.Update("r3", quorum.Write[string]{Context: ab.Context, Value: "x"})
	_ = ab.Merge(c)
	if ab.Digest() != before {
		t.Fatal("Update or Merge modified the receiver")
	}
}

func TestObjectValidate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		for _, o := range genObjects(t) {
			if err := o.Validate(); err != nil {
				t.Fatalf("generated object invalid: %v", err)
			}
		}
	})
	var ctx clock.Vector
	ctx.Set("r", 2)
	d := func(r string, n uint64) quorum.Sibling[string] {
		return quorum.Sibling[string]{Dot: clock.Dot{Replica: r, Counter: n}}
	}
	for name, o := range map[string]quorum.Object[string]{
		"zero counter":  {Context: ctx, Siblings: []quorum.Sibling[string]{d("r", 0)}},
		"empty replica": {Context: ctx, Siblings: []quorum.Sibling[string]{d("", 1)}},
		"not covered":   {Context: ctx, Siblings: []quorum.Sibling[string]{d("r", 3)}},
		"unsorted":      {Context: ctx, Siblings: []quorum.Sibling[string]{d("r", 2), d("r", 1)}},
		"duplicate":     {Context: ctx, Siblings: []quorum.Sibling[string]{d("r", 1), d("r", 1)}},
	} {
		if err := o.Validate(); !errors.Is(err, quorum.ErrMalformed) {
			t.Errorf("%s: Validate = %v, want ErrMalformed", name, err)
		}
	}
}
