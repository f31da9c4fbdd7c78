package crdt

import (
	"slices"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

// Each model computes a type's expected value from the deltas of a history
// alone, independently of Merge: a write survives iff no other delta's
// context covers its dot.

func coveredByOther[T any](dot clock.Dot, i int, deltas []T, ctx func(T) *clock.CausalContext) bool {
	for j, o := range deltas {
		if j != i && ctx(o).Contains(dot) {
			return true
		}
	}
	return false
}

func TestModels(t *testing.T) {
	t.Run("MVRegister holds exactly the unsuperseded writes", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			reps, deltas := checkConvergence(t, mvSubject)
			var want []string
			for i, d := range deltas {
				for _, e := range d.vals {
					if !coveredByOther(e.dot, i, deltas, func(o *MVRegister[string]) *clock.CausalContext { return &o.ctx }) && !slices.Contains(want, e.v) {
						want = append(want, e.v)
					}
				}
			}
			slices.Sort(want)
			if got := reps[0].Values(); !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("Values() = %v, model %v", got, want)
			}
		})
	})
	t.Run("EWFlag is enabled iff an enable survives", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			reps, deltas := checkConvergence(t, ewflagSubject)
			want := false
			for i, d := range deltas {
				for _, e := range d.dots {
					want = want || !coveredByOther(e.dot, i, deltas, func(o *EWFlag) *clock.CausalContext { return &o.ctx })
				}
			}
			if got := reps[0].Value(); got != want {
				t.Fatalf("Value() = %v, model %v", got, want)
			}
		})
	})
	t.Run("CCounter sums the surviving totals", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			reps, deltas := checkConvergence(t, ccounterSubject)
			var want int64
			for i, d := range deltas {
				for _, e := range d.vals {
					if !coveredByOther(e.dot, i, deltas, func(o *CCounter) *clock.CausalContext { return &o.ctx }) {
						want += e.v
					}
				}
			}
			if got := reps[0].Value(); got != want {
				t.Fatalf("Value() = %d, model %d", got, want)
			}
		})
	})
	t.Run("PNCounter is increments minus decrements", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			n := rapid.IntRange(3, 5).Draw(t, "replicas")
			var reps []*PNCounter
			for i := range n {
				reps = append(reps, NewPNCounter(replicaIDs[i]))
			}
			var want int64
			var deltas []*PNCounter
			for range rapid.IntRange(1, 50).Draw(t, "ops") {
				i := rapid.IntRange(0, n-1).Draw(t, "replica")
				k := rapid.Uint64Range(0, 100).Draw(t, "n")
				if rapid.Bool().Draw(t, "inc") {
					deltas = append(deltas, reps[i].Inc(k))
					want += int64(k)
				} else {
					deltas = append(deltas, reps[i].Dec(k))
					want -= int64(k)
				}
			}
			all := &PNCounter{}
			for _, d := range rapid.Permutation(deltas).Draw(t, "order") {
				all.Merge(d)
			}
			if all.Value() != want {
				t.Fatalf("Value() = %d, want %d", all.Value(), want)
			}
		})
	})
	t.Run("LWWRegister keeps the greatest (timestamp, writer)", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			reps, deltas := checkConvergence(t, lwwSubject)
			if len(deltas) == 0 {
				return
			}
			best := deltas[0]
			for _, d := range deltas[1:] {
				if c := d.ts.Compare(best.ts); c > 0 || (c == 0 && d.writer > best.writer) {
					best = d
				}
			}
			got, _ := reps[0].Get()
			if want, _ := best.Get(); got != want {
				t.Fatalf("Get() = %q, want %q", got, want)
			}
		})
	})
}
