package crdt

import (
	"fmt"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

var elems = []string{"a", "b", "c", "d", "e"}

func drawElem(t *rapid.T) string { return rapid.SampledFrom(elems).Draw(t, "elem") }

var gcounterSubject = subject[*GCounter]{
	name:  "GCounter",
	new:   NewGCounter,
	empty: func() *GCounter { return &GCounter{} },
	op: func(t *rapid.T, c *GCounter) *GCounter {
		return c.Inc(rapid.Uint64Range(0, 10).Draw(t, "n"))
	},
}

var pncounterSubject = subject[*PNCounter]{
	name:  "PNCounter",
	new:   NewPNCounter,
	empty: func() *PNCounter { return &PNCounter{} },
	op: func(t *rapid.T, c *PNCounter) *PNCounter {
		n := rapid.Uint64Range(0, 10).Draw(t, "n")
		if rapid.Bool().Draw(t, "inc") {
			return c.Inc(n)
		}
		return c.Dec(n)
	},
}

var gsetSubject = subject[*GSet[string]]{
	name:  "GSet",
	new:   func(string) *GSet[string] { return NewGSet[string]() },
	empty: NewGSet[string],
	op:    func(t *rapid.T, s *GSet[string]) *GSet[string] { return s.Add(drawElem(t)) },
}

func orsetOp(t *rapid.T, s *ORSet[string]) *ORSet[string] {
	switch rapid.IntRange(0, 9).Draw(t, "orset op") {
	case 0:
		return s.Clear()
	case 1, 2, 3, 4:
		return s.Remove(drawElem(t))
	default:
		return s.Add(drawElem(t))
	}
}

var orsetSubject = subject[*ORSet[string]]{
	name:  "ORSet",
	new:   NewORSet[string],
	empty: func() *ORSet[string] { return &ORSet[string]{} },
	op:    orsetOp,
}

// coarseClock makes HLC timestamps of different replicas collide often, so
// ties between writers are exercised.
func coarseHLC() *clock.HLC {
	return clock.NewHLC(clock.WithPhysicalClock(func() int64 { return 1_000 }))
}

var lwwSubject = subject[*LWWRegister[string]]{
	name:  "LWWRegister",
	new:   func(r string) *LWWRegister[string] { return NewLWWRegister[string](r, coarseHLC()) },
	empty: func() *LWWRegister[string] { return &LWWRegister[string]{} },
	op: func(t *rapid.T, r *LWWRegister[string]) *LWWRegister[string] {
		return r.Set(drawElem(t) + r.Replica())
	},
}

var mvSubject = subject[*MVRegister[string]]{
	name:  "MVRegister",
	new:   NewMVRegister[string],
	empty: func() *MVRegister[string] { return &MVRegister[string]{} },
	op: func(t *rapid.T, r *MVRegister[string]) *MVRegister[string] {
		if rapid.IntRange(0, 5).Draw(t, "clear") == 0 {
			return r.Clear()
		}
		return r.Set(drawElem(t))
	},
}

func ccounterOp(t *rapid.T, c *CCounter) *CCounter {
	n := rapid.Uint64Range(0, 10).Draw(t, "n")
	switch rapid.IntRange(0, 6).Draw(t, "ccounter op") {
	case 0:
		return c.Reset()
	case 1, 2:
		return c.Dec(n)
	default:
		return c.Inc(n)
	}
}

var ccounterSubject = subject[*CCounter]{
	name:  "CCounter",
	new:   NewCCounter,
	empty: func() *CCounter { return &CCounter{} },
	op:    ccounterOp,
}

var ewflagSubject = subject[*EWFlag]{
	name:  "EWFlag",
	new:   NewEWFlag,
	empty: func() *EWFlag { return &EWFlag{} },
	op: func(t *rapid.T, f *EWFlag) *EWFlag {
		if rapid.Bool().Draw(t, "enable") {
			return f.Enable()
		}
		return f.Disable()
	},
}

type setMap = ORMap[string, *ORSet[string]]

var ormapSetSubject = subject[*setMap]{
	name:  "ORMap[string,*ORSet]",
	new:   NewORMap[string, *ORSet[string]],
	empty: func() *setMap { return &setMap{} },
	op: func(t *rapid.T, m *setMap) *setMap {
		k := rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "key")
		switch rapid.IntRange(0, 9).Draw(t, "ormap op") {
		case 0:
			return m.Clear()
		case 1, 2, 3:
			return m.Remove(k)
		default:
			return m.Update(k, func(s *ORSet[string]) *ORSet[string] { return orsetOp(t, s) })
		}
	},
}

type counterMap = ORMap[string, *CCounter]

var ormapCounterSubject = subject[*counterMap]{
	name:  "ORMap[string,*CCounter]",
	new:   NewORMap[string, *CCounter],
	empty: func() *counterMap { return &counterMap{} },
	op: func(t *rapid.T, m *counterMap) *counterMap {
		k := rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "key")
		if rapid.IntRange(0, 3).Draw(t, "remove") == 0 {
			return m.Remove(k)
		}
		return m.Update(k, func(c *CCounter) *CCounter { return ccounterOp(t, c) })
	},
}

type nestedMap = ORMap[string, *ORMap[int, *MVRegister[string]]]

var ormapNestedSubject = subject[*nestedMap]{
	name:  "ORMap[string,*ORMap[int,*MVRegister]]",
	new:   NewORMap[string, *ORMap[int, *MVRegister[string]]],
	empty: func() *nestedMap { return &nestedMap{} },
	op: func(t *rapid.T, m *nestedMap) *nestedMap {
		k := rapid.SampledFrom([]string{"x", "y"}).Draw(t, "key")
		if rapid.IntRange(0, 3).Draw(t, "remove") == 0 {
			return m.Remove(k)
		}
		return m.Update(k, func(in *ORMap[int, *MVRegister[string]]) *ORMap[int, *MVRegister[string]] {
			ik := rapid.IntRange(-2, 2).Draw(t, "inner key")
			if rapid.IntRange(0, 3).Draw(t, "inner remove") == 0 {
				return in.Remove(ik)
			}
			return in.Update(ik, func(r *MVRegister[string]) *MVRegister[string] { return r.Set(drawElem(t)) })
		})
	},
}

func TestLaws(t *testing.T) {
	t.Run("GCounter", func(t *testing.T) { checkLaws(t, gcounterSubject) })
	t.Run("PNCounter", func(t *testing.T) { checkLaws(t, pncounterSubject) })
	t.Run("GSet", func(t *testing.T) { checkLaws(t, gsetSubject) })
	t.Run("ORSet", func(t *testing.T) { checkLaws(t, orsetSubject) })
	t.Run("LWWRegister", func(t *testing.T) { checkLaws(t, lwwSubject) })
	t.Run("MVRegister", func(t *testing.T) { checkLaws(t, mvSubject) })
	t.Run("CCounter", func(t *testing.T) { checkLaws(t, ccounterSubject) })
	t.Run("EWFlag", func(t *testing.T) { checkLaws(t, ewflagSubject) })
	t.Run("ORMapOfORSet", func(t *testing.T) { checkLaws(t, ormapSetSubject) })
	t.Run("ORMapOfCCounter", func(t *testing.T) { checkLaws(t, ormapCounterSubject) })
	t.Run("ORMapNested", func(t *testing.T) { checkLaws(t, ormapNestedSubject) })
}

func convergence[T crdtLike[T]](s subject[T]) func(*testing.T) {
	return func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) { checkConvergence(t, s) })
	}
}

func TestConvergence(t *testing.T) {
	t.Run("GCounter", convergence(gcounterSubject))
	t.Run("PNCounter", convergence(pncounterSubject))
	t.Run("GSet", convergence(gsetSubject))
	t.Run("LWWRegister", convergence(lwwSubject))
	t.Run("MVRegister", convergence(mvSubject))
	t.Run("CCounter", convergence(ccounterSubject))
	t.Run("EWFlag", convergence(ewflagSubject))
	t.Run("ORMapOfORSet", convergence(ormapSetSubject))
	t.Run("ORMapOfCCounter", convergence(ormapCounterSubject))
	t.Run("ORMapNested", convergence(ormapNestedSubject))
}

// orsetWideSubject draws from enough elements that sets outgrow smallStore,
// exercising the indexed removal path of merges.
var orsetWideSubject = subject[*ORSet[int]]{
	name:  "ORSet[int] wide",
	new:   NewORSet[int],
	empty: func() *ORSet[int] { return &ORSet[int]{} },
	op: func(t *rapid.T, s *ORSet[int]) *ORSet[int] {
		e := rapid.IntRange(0, 3*smallStore).Draw(t, "elem")
		switch rapid.IntRange(0, 19).Draw(t, "orset op") {
		case 0:
			return s.Clear()
		case 1, 2, 3, 4, 5:
			return s.Remove(e)
		default:
			return s.Add(e)
		}
	},
}

func TestORSetWide(t *testing.T) {
	t.Run("laws", func(t *testing.T) { checkLaws(t, orsetWideSubject) })
	t.Run("convergence", convergence(orsetWideSubject))
}

type wideMap = ORMap[int, *ORSet[string]]

// ormapWideSubject has more keys than smallStore, so small deltas take the
// indexed merge path.
var ormapWideSubject = subject[*wideMap]{
	name:  "ORMap[int,*ORSet] wide",
	new:   NewORMap[int, *ORSet[string]],
	empty: func() *wideMap { return &wideMap{} },
	op: func(t *rapid.T, m *wideMap) *wideMap {
		k := rapid.IntRange(0, 3*smallStore).Draw(t, "key")
		switch rapid.IntRange(0, 39).Draw(t, "ormap op") {
		case 0:
			return m.Clear()
		case 1, 2, 3:
			return m.Remove(k)
		case 6:
			// f returns the value itself rather than a delta: allowed, and
			// the delta is then the value's whole state.
			return m.Update(k, func(s *ORSet[string]) *ORSet[string] { s.Add(drawElem(t)); return s })
		default:
			return m.Update(k, func(s *ORSet[string]) *ORSet[string] { return orsetOp(t, s) })
		}
	},
}

// checkKeyIndex asserts that a built key index holds exactly the live dots,
// each mapped to the key that holds it.
func checkKeyIndex[K comparable, V Embeddable[V]](t tb, m *ORMap[K, V]) {
	t.Helper()
	if m.keyOf == nil {
		return
	}
	n := 0
	for k, v := range m.m {
		for d := range v.embedDots {
			n++
			if got, ok := m.keyOf[d]; !ok || got != k {
				t.Fatalf("key index: dot %v of key %v maps to %v, %v", d, k, got, ok)
			}
		}
	}
	if len(m.keyOf) != n {
		t.Fatalf("key index holds %d dots, the map %d live ones", len(m.keyOf), n)
	}
}

func TestORMapWide(t *testing.T) {
	t.Run("laws", func(t *testing.T) { checkLaws(t, ormapWideSubject) })
	t.Run("convergence", func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			reps, _ := checkConvergence(t, ormapWideSubject)
			for _, r := range reps {
				checkKeyIndex(t, r)
			}
		})
	})
}

// TestORMapIndexedMerge drives maps well above smallStore keys through
// random updates, removes and out-of-order delta delivery, and compares
// every replica with a reference that merges through the plain scan, while
// checking the key index after every step.
func TestORMapIndexedMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const n = 3
		var reps []*wideMap
		var deltas []*wideMap
		var net []message[*wideMap]
		for i := range n {
			reps = append(reps, NewORMap[int, *ORSet[string]](replicaIDs[i]))
		}
		broadcast := func(from int, d *wideMap) {
			deltas = append(deltas, d)
			for j := range n {
				if j != from {
					net = append(net, message[*wideMap]{j, d})
				}
			}
		}
		// Every replica starts with keys written by all, so maps are large.
		for i := range n {
			for k := range 2 * smallStore {
				broadcast(i, reps[i].Update(k, func(s *ORSet[string]) *ORSet[string] { return s.Add(replicaIDs[i]) }))
			}
		}
		for _, m := range net {
			reps[m.to].Merge(m.v)
		}
		net = nil
		for range rapid.IntRange(1, 80).Draw(t, "steps") {
			if len(net) > 0 && rapid.Bool().Draw(t, "deliver") {
				k := rapid.IntRange(0, len(net)-1).Draw(t, "msg")
				m := net[k]
				reps[m.to].Merge(m.v)
				if rapid.IntRange(0, 3).Draw(t, "dup") != 0 {
					net = append(net[:k], net[k+1:]...)
				}
				checkKeyIndex(t, reps[m.to])
				continue
			}
			i := rapid.IntRange(0, n-1).Draw(t, "replica")
			broadcast(i, ormapWideSubject.op(t, reps[i]))
			checkKeyIndex(t, reps[i])
		}
		for len(net) > 0 {
			k := rapid.IntRange(0, len(net)-1).Draw(t, "drain")
			reps[net[k].to].Merge(net[k].v)
			checkKeyIndex(t, reps[net[k].to])
			net = append(net[:k], net[k+1:]...)
		}
		ref := &wideMap{}
		for _, d := range deltas {
			ref.join(d, &ref.ctx, &d.ctx)
			ref.ctx.Merge(d.ctx)
		}
		for i, r := range reps {
			sameState(t, fmt.Sprintf("replica %d vs scan-merged reference", i), r, ref)
		}
	})
}

type deepMap = ORMap[string, *ORSet[int]]

// ormapDeepSubject has few keys holding sets larger than smallStore, so
// nested sets take their indexed paths inside map merges.
var ormapDeepSubject = subject[*deepMap]{
	name:  "ORMap[string,*ORSet[int]] deep",
	new:   NewORMap[string, *ORSet[int]],
	empty: func() *deepMap { return &deepMap{} },
	op: func(t *rapid.T, m *deepMap) *deepMap {
		k := rapid.SampledFrom([]string{"x", "y"}).Draw(t, "key")
		if rapid.IntRange(0, 15).Draw(t, "remove") == 0 {
			return m.Remove(k)
		}
		return m.Update(k, func(s *ORSet[int]) *ORSet[int] { return orsetWideSubject.op(t, s) })
	},
}

func TestORMapDeep(t *testing.T) {
	t.Run("laws", func(t *testing.T) { checkLaws(t, ormapDeepSubject) })
	t.Run("convergence", convergence(ormapDeepSubject))
}
