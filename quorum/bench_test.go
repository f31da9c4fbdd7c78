package quorum_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

// waitAll is the baseline most code hand-rolls with errgroup: run every
// replica, wait for all of them, keep the first error.
func waitAll[R, T any](ctx context.Context, replicas []R, fn func(context.Context, R) (T, error)) ([]T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	out := make([]T, len(replicas))
	for i, r := range replicas {
		wg.Go(func() {
			v, err := fn(ctx, r)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
				return
			}
			out[i] = v
		})
	}
	wg.Wait()
	return out, first
}

func BenchmarkCall(b *testing.B) {
	fn := func(_ context.Context, r int) (int, error) { return r, nil }
	for _, n := range []int{3, 5} {
		reps := make([]int, n)
		need := n/2 + 1
		b.Run(fmt.Sprintf("impl=quorum.Call/n=%d/need=%d", n, need), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := quorum.Call(context.Background(), reps, need, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("impl=waitall-baseline/n=%d/need=%d", n, n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := waitAll(context.Background(), reps, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// vnodeRing is the classic consistent-hash ring: each node owns many points
// on a circle, a key belongs to the next point clockwise. Baseline only.
type vnodeRing struct {
	points []uint64
	owner  map[uint64]string
}

func newVnodeRing(nodes []string, vnodes int) *vnodeRing {
	r := &vnodeRing{owner: map[uint64]string{}}
	for _, n := range nodes {
		for i := range vnodes {
			h := benchHash(fmt.Sprintf("%s#%d", n, i))
			r.points = append(r.points, h)
			r.owner[h] = n
		}
	}
	slices.Sort(r.points)
	return r
}

func (r *vnodeRing) lookup(key string) string {
	h := benchHash(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i] >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.owner[r.points[i]]
}

func benchHash(s string) uint64 { // FNV-1a 64 + SplitMix64, as the Ring uses
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9
	h = (h ^ (h >> 27)) * 0x94d049bb133111eb
	return h ^ (h >> 31)
}

func maxMean(keys []string, lookup func(string) string, nodes int) float64 {
	load := map[string]int{}
	m := 0
	for _, k := range keys {
		n := lookup(k)
		load[n]++
		m = max(m, load[n])
	}
	return float64(m) / (float64(len(keys)) / float64(nodes))
}

func BenchmarkRingLookup(b *testing.B) {
	keys := keyNames(100_000)
	for _, nn := range []int{10, 100} {
		nodes := nodeNames(nn)
		r := quorum.NewRing()
		r.Add(nodes...)
		for _, n := range []int{1, 3} {
			b.Run(fmt.Sprintf("impl=quorum.Ring/nodes=%d/n=%d", nn, n), func(b *testing.B) {
				b.ReportAllocs()
				dst := make([]string, 0, n)
				i := 0
				for b.Loop() {
					dst = r.AppendLookup(dst[:0], keys[i%len(keys)], n)
					i++
				}
				b.ReportMetric(maxMean(keys, func(k string) string { return r.Lookup(k, 1)[0] }, nn), "max/mean")
			})
		}
		for _, v := range []int{160, 1024} {
			vr := newVnodeRing(nodes, v)
			b.Run(fmt.Sprintf("impl=vnode-ring-baseline/vnodes=%d/nodes=%d/n=1", v, nn), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = vr.lookup(keys[i%len(keys)])
					i++
				}
				b.ReportMetric(maxMean(keys, vr.lookup, nn), "max/mean")
			})
		}
	}
}

// slowReplica delays every Get by d.
type slowReplica struct {
	*quorum.MemReplica[string]
	d time.Duration
}

func (s slowReplica) Get(ctx context.Context, key string) (quorum.Object[string], error) {
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return quorum.Object[string]{}, ctx.Err()
	}
	return s.MemReplica.Get(ctx, key)
}

// BenchmarkCoordinatorSlowReplica reads at QUORUM from 3 replicas, one of
// which answers every Get after 5ms, and reports p50/p99 latency with and
// without hedging.
func BenchmarkCoordinatorSlowReplica(b *testing.B) {
	const slow = 5 * time.Millisecond
	for _, hedge := range []quorum.HedgePolicy{{}, {Percentile: 0.9, Floor: 500 * time.Microsecond}} {
		name := "hedge=off"
		if hedge.Percentile > 0 {
			name = fmt.Sprintf("hedge=p%.0f-floor=%v", 100*hedge.Percentile, hedge.Floor)
		}
		b.Run(name, func(b *testing.B) {
			ring := quorum.NewRing()
			reps := map[string]quorum.Replica[string]{}
			for i, n := range []string{"a", "b", "c"} {
				ring.Add(n)
				m := quorum.NewMemReplica[string](n, ring)
				if i == 0 {
					reps[n] = slowReplica{m, slow}
				} else {
					reps[n] = m
				}
			}
			co, err := quorum.NewCoordinator(quorum.Config[string]{
				Ring: ring, Hedge: hedge, Repair: quorum.RepairOff,
				Replica: func(n string) (quorum.Replica[string], error) { return reps[n], nil },
			})
			if err != nil {
				b.Fatal(err)
			}
			defer co.Close()
			ctx := context.Background()
			keys := keyNames(64)
			for _, k := range keys {
				if _, err := co.Put(ctx, k, "v", clock.Vector{}, quorum.WithLevel(quorum.All)); err != nil {
					b.Fatal(err)
				}
			}
			var lat []time.Duration
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				start := time.Now()
				if _, err := co.Get(ctx, keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				i++
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
			b.ReportMetric(q(0.50), "p50-µs")
			b.ReportMetric(q(0.99), "p99-µs")
			b.ReportMetric(float64(co.Stats().Hedges)/float64(len(lat)), "hedges/op")
		})
	}
}
