package load

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	// Consecutive buckets must tile [0, 2^64) without gaps or overlaps, and
	// bucketOf must map each bound back to its bucket.
	var next uint64
	for i := range numBuckets {
		lo, hi := bucketBounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if hi < lo {
			t.Fatalf("bucket %d: hi %d < lo %d", i, hi, lo)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if got := bucketOf(hi); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", hi, got, i)
		}
		if lo >= subCount {
			if width := float64(hi-lo+1) / float64(lo); width > MaxRelativeError {
				t.Fatalf("bucket %d [%d,%d]: relative width %g > %g", i, lo, hi, width, MaxRelativeError)
			}
		}
		next = hi + 1
	}
	if next != 0 { // wrapped around: the last bucket ends at 2^64-1
		t.Fatalf("buckets end at %d, want 2^64-1", next-1)
	}
}

func TestHistogramExactBelow256ns(t *testing.T) {
	var h Histogram
	for v := range 200 {
		h.Record(time.Duration(v + 1)) // 1..200 ns
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.005, 1}, {0.01, 2}, {0.5, 100}, {0.505, 101}, {0.99, 198}, {0.999, 200}, {1, 200},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if h.Count() != 200 || h.Min() != 1 || h.Max() != 200 {
		t.Errorf("count %d min %v max %v, want 200 1ns 200ns", h.Count(), h.Min(), h.Max())
	}
	if got, want := h.Mean(), time.Duration(100); got != want { // (1+200)/2 = 100.5, truncated
		t.Errorf("Mean = %v, want %v", got, want)
	}
}

func TestHistogramEmptyAndEdgeValues(t *testing.T) {
	var h Histogram
	for _, q := range []float64{0, 0.5, 1} {
		if got := h.Quantile(q); got != 0 {
			t.Errorf("empty Quantile(%v) = %v, want 0", q, got)
		}
	}
	if h.Mean() != 0 || h.Count() != 0 {
		t.Errorf("empty: mean %v count %d", h.Mean(), h.Count())
	}
	h.Record(-5 * time.Second)
	h.Record(time.Duration(math.MaxInt64))
	if h.Min() != 0 {
		t.Errorf("negative recorded as %v, want 0", h.Min())
	}
	if got := h.Quantile(1); got != time.Duration(math.MaxInt64) {
		t.Errorf("Quantile(1) = %v, want MaxInt64", got)
	}
	if got := h.Quantile(0.9); got != time.Duration(math.MaxInt64) {
		t.Errorf("Quantile(0.9) = %v, want MaxInt64 (clamped to max)", got)
	}
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("Quantile(0.5) = %v, want 0", got)
	}
}

func TestHistogramQuantileWithinBound(t *testing.T) {
	// Latency-like values (log-uniform from 1 µs to 10 s), compared with
	// the exact nearest-rank quantiles of the same values.
	rng := rand.New(rand.NewPCG(7, 11))
	for _, n := range []int{1, 2, 10, 999, 100_000} {
		var h Histogram
		vals := make([]time.Duration, n)
		for i := range vals {
			v := time.Duration(math.Exp(rng.Float64()*math.Log(1e7)) * 1e3)
			vals[i] = v
			h.Record(v)
		}
		slices.Sort(vals)
		for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
			exact := exactQuantile(vals, q)
			got := h.Quantile(q)
			if got < exact {
				t.Errorf("n=%d q=%v: got %v below exact %v", n, q, got, exact)
			}
			if rel := float64(got-exact) / float64(exact); rel > MaxRelativeError {
				t.Errorf("n=%d q=%v: got %v, exact %v, relative error %g > %g", n, q, got, exact, rel, MaxRelativeError)
			}
		}
		if h.Min() != vals[0] || h.Max() != vals[n-1] {
			t.Errorf("n=%d: min/max %v/%v, want %v/%v", n, h.Min(), h.Max(), vals[0], vals[n-1])
		}
	}
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b, empty Histogram
	for i := range 5000 {
		v := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(&b)
	a.Merge(&empty)
	if a.counts != all.counts || a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() {
		t.Fatalf("merged histogram differs from one that recorded everything")
	}
	if d := a.Mean() - all.Mean(); d > 1 || d < -1 {
		t.Errorf("merged mean %v, want %v", a.Mean(), all.Mean())
	}
	empty.Merge(&all)
	if empty.Min() != all.Min() || empty.Quantile(0.99) != all.Quantile(0.99) {
		t.Errorf("merge into empty: min %v p99 %v, want %v %v", empty.Min(), empty.Quantile(0.99), all.Min(), all.Quantile(0.99))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	v := time.Duration(1)
	for b.Loop() {
		h.Record(v)
		v = v*7 + 13
		if v > time.Second {
			v = 1
		}
	}
}
