package crdt

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
)

// Benchmarks compare the causal-context ORSet ("dots") with the tombstone
// reference ("naive") in the same run. Elements are ints; replica ids are
// "replica-N".

var benchSizes = []int{1_000, 100_000}

func encodedLen(b *testing.B, m interface{ MarshalBinary() ([]byte, error) }) float64 {
	p, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	return float64(len(p))
}

// benchSet is what the OR-Set benchmarks need of a set of ints: ours and
// the naive one in the tests.
type benchSet[S any] interface {
	Add(int) S
	Remove(int) S
	Merge(S)
	MarshalBinary() ([]byte, error)
}

// filled returns a set of replica-1 holding 0..n-1.
func filled[S benchSet[S]](newSet func(replica string) S, n int) S {
	s := newSet("replica-1")
	for i := range n {
		s.Add(i)
	}
	return s
}

// BenchmarkORSet measures, at n live elements:
//   - Add: adding an element (keys cycle over [n, 2n), so later rounds
//     re-add; the set stays between n and 2n elements);
//   - RemoveAdd: removing the oldest element and adding a new one (a
//     sliding window: the set stays at n elements, and the naive set's
//     tombstones grow with every round);
//   - MergeDelta: merging another replica's Add delta;
//   - MergeState: merging a full state of n elements into an equal replica
//     (anti-entropy of mostly equal states).
//
// Metrics: delta-B is the encoded delta size of one op; state-B/elem the
// encoded state size per live element after the run.
func BenchmarkORSet(b *testing.B) {
	for _, n := range benchSizes {
		for _, op := range []string{"Add", "RemoveAdd", "MergeDelta", "MergeState"} {
			b.Run(fmt.Sprintf("op=%s/n=%d/impl=dots", op, n), func(b *testing.B) {
				benchORSetOp(b, op, NewORSet[int], n)
			})
			b.Run(fmt.Sprintf("op=%s/n=%d/impl=naive", op, n), func(b *testing.B) {
				benchORSetOp(b, op, newNaiveORSet, n)
			})
		}
	}
}

func benchORSetOp[S benchSet[S]](b *testing.B, op string, newSet func(string) S, n int) {
	s := filled(newSet, n)
	b.ReportAllocs()
	i := 0
	switch op {
	case "Add":
		for b.Loop() {
			s.Add(n + i%n)
			i++
		}
		b.ReportMetric(encodedLen(b, s.Add(-1)), "delta-B")
	case "RemoveAdd":
		for b.Loop() {
			s.Remove(i)
			s.Add(i + n)
			i++
		}
		b.ReportMetric(encodedLen(b, s.Remove(i)), "delta-B")
		b.ReportMetric(encodedLen(b, s)/float64(n-1), "state-B/elem")
	case "MergeDelta":
		src := newSet("replica-2")
		deltas := make([]S, n)
		for i := range deltas {
			deltas[i] = src.Add(n + i)
		}
		for b.Loop() {
			s.Merge(deltas[i%n])
			i++
		}
	case "MergeState":
		dst := newSet("replica-1")
		dst.Merge(s)
		for b.Loop() {
			dst.Merge(s)
		}
		b.ReportMetric(encodedLen(b, s)/float64(n), "state-B/elem")
	default:
		b.Fatalf("unknown op %q", op)
	}
}

// churned builds a set on three replicas that ends with live elements
// after churn add/remove cycles per live element, every delta delivered to
// every replica, and returns two of the synced replicas.
func churned[S benchSet[S]](newSet func(replica string) S, live, churn int) (S, S) {
	reps := []S{newSet("replica-1"), newSet("replica-2"), newSet("replica-3")}
	for i := range live * (churn + 1) {
		r := reps[i%3]
		d := r.Add(i)
		if i >= live {
			d.Merge(r.Remove(i - live))
		}
		for _, o := range reps {
			o.Merge(d)
		}
	}
	return reps[0], reps[1]
}

// benchChurnMerge measures a full-state merge between two replicas after
// churn and reports the state size, per live element.
func benchChurnMerge[S benchSet[S]](b *testing.B, newSet func(string) S, live, churn int) {
	a, c := churned(newSet, live, churn)
	b.ReportAllocs()
	for b.Loop() {
		a.Merge(c)
	}
	b.ReportMetric(encodedLen(b, a), "state-B")
	b.ReportMetric(encodedLen(b, a)/float64(live), "state-B/elem")
}

// BenchmarkORSetChurn builds, on three replicas, a set that ends with
// live elements after churn add/remove cycles per live element, then
// measures a full-state merge between two synced replicas and reports the
// state size. The naive set carries every removed element as tombstones.
func BenchmarkORSetChurn(b *testing.B) {
	const live, churn = 1_000, 10
	b.Run(fmt.Sprintf("live=%d/cycles=%d/impl=dots", live, live*churn), func(b *testing.B) {
		benchChurnMerge(b, NewORSet[int], live, churn)
	})
	b.Run(fmt.Sprintf("live=%d/cycles=%d/impl=naive", live, live*churn), func(b *testing.B) {
		benchChurnMerge(b, newNaiveORSet, live, churn)
	})
}

// naiveGCounter is the usual map-based grow-only counter, for comparison.
type naiveGCounter map[string]uint64

func (c naiveGCounter) Merge(o naiveGCounter) {
	for k, v := range o {
		if v > c[k] {
			c[k] = v
		}
	}
}

func BenchmarkCounterMerge(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprintf("type=GCounter/replicas=%d", n), func(b *testing.B) {
			x, y := NewGCounter("x"), NewGCounter("y")
			for i := range n {
				id := "replica-" + strconv.Itoa(i)
				x.Merge(NewGCounter(id).Inc(uint64(i)))
				y.Merge(NewGCounter(id).Inc(uint64(n - i)))
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Merge(y)
			}
			b.ReportMetric(encodedLen(b, x), "state-B")
		})
		b.Run(fmt.Sprintf("type=PNCounter/replicas=%d", n), func(b *testing.B) {
			x, y := NewPNCounter("x"), NewPNCounter("y")
			for i := range n {
				c := NewPNCounter("replica-" + strconv.Itoa(i))
				x.Merge(c.Inc(uint64(i)))
				y.Merge(c.Dec(uint64(n - i)))
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Merge(y)
			}
			b.ReportMetric(encodedLen(b, x), "state-B")
		})
		b.Run(fmt.Sprintf("type=naiveMapGCounter/replicas=%d", n), func(b *testing.B) {
			x, y := naiveGCounter{}, naiveGCounter{}
			for i := range n {
				id := "replica-" + strconv.Itoa(i)
				x[id], y[id] = uint64(i), uint64(n-i)
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Merge(y)
			}
		})
	}
}

// BenchmarkORMap measures a map of causal counters at n keys: a local
// Update, and merging another replica's Update delta either through the
// dot-to-key index (impl=index, what Merge does) or by checking every key
// (impl=scan, the straightforward join).
func BenchmarkORMap(b *testing.B) {
	inc := func(c *CCounter) *CCounter { return c.Inc(1) }
	for _, n := range benchSizes {
		base := NewORMap[int, *CCounter]("replica-1")
		for k := range n {
			base.Update(k, inc)
		}
		b.Run(fmt.Sprintf("op=Update/keys=%d", n), func(b *testing.B) {
			m := base.Clone()
			m.replica = "replica-1"
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Update(i%n, inc)
				i++
			}
			b.ReportMetric(encodedLen(b, m.Update(0, inc)), "delta-B")
		})
		src := base.Clone()
		src.replica = "replica-2"
		deltas := make([]*ORMap[int, *CCounter], n)
		for k := range deltas {
			deltas[k] = src.Update(k, inc)
		}
		for _, impl := range []string{"index", "scan"} {
			b.Run(fmt.Sprintf("op=MergeDelta/keys=%d/impl=%s", n, impl), func(b *testing.B) {
				m := base.Clone()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					d := deltas[i%n]
					if impl == "index" {
						m.Merge(d)
					} else {
						m.join(d, &m.ctx, &d.ctx)
						m.ctx.Merge(d.ctx)
					}
					i++
				}
			})
		}
	}
}

// heapOf returns the bytes of live heap that build's result retains.
func heapOf(build func() any) (float64, any) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc), v
}

// BenchmarkORSetHeap reports the in-memory size per live element of a set
// of 100k elements, fresh and after 2 add/remove cycles per live element
// (heap-B/elem), and times Contains.
func BenchmarkORSetHeap(b *testing.B) {
	const live = 100_000
	for _, cycles := range []int{0, 2} {
		build := func(add func(int), remove func(int)) {
			for i := range live * (cycles + 1) {
				add(i)
				if i >= live {
					remove(i - live)
				}
			}
		}
		b.Run(fmt.Sprintf("live=%d/cycles=%d/impl=dots", live, live*cycles), func(b *testing.B) {
			h, v := heapOf(func() any {
				s := NewORSet[int]("replica-1")
				build(func(i int) { s.Add(i) }, func(i int) { s.Remove(i) })
				return s
			})
			s := v.(*ORSet[int])
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Contains(i % (2 * live))
				i++
			}
			b.ReportMetric(h/live, "heap-B/elem")
		})
		b.Run(fmt.Sprintf("live=%d/cycles=%d/impl=naive", live, live*cycles), func(b *testing.B) {
			h, v := heapOf(func() any {
				s := newNaiveORSet("replica-1")
				build(func(i int) { s.Add(i) }, func(i int) { s.Remove(i) })
				return s
			})
			s := v.(*naiveORSet)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Contains(i % (2 * live))
				i++
			}
			b.ReportMetric(h/live, "heap-B/elem")
		})
	}
}
