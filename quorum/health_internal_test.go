package quorum

import (
	"testing"
	"time"
)

func TestHedgeDelayIgnoresOneSlowNode(t *testing.T) {
	h := newHealth(16)
	for i := range 16 {
		h.success("fast1", time.Duration(100+i)*time.Microsecond)
		h.success("fast2", time.Duration(200+i)*time.Microsecond)
		h.success("slow", 50*time.Millisecond)
	}
	for i := range 7 { // too few samples to count
		h.success("new", time.Duration(i)*time.Hour)
	}
	nodes := []string{"slow", "fast1", "fast2", "new"}
	for _, tc := range []struct {
		name string
		p    HedgePolicy
		want time.Duration
	}{
		{"median of per-node p90", HedgePolicy{Percentile: 0.9, Floor: time.Microsecond}, 214 * time.Microsecond},
		{"floor", HedgePolicy{Percentile: 0.9, Floor: time.Millisecond}, time.Millisecond},
		{"cap", HedgePolicy{Percentile: 0.9, Floor: time.Microsecond, Max: 150 * time.Microsecond}, 150 * time.Microsecond},
	} {
		if got := h.hedgeDelay(nodes, tc.p); got != tc.want {
			t.Errorf("%s: delay %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := h.hedgeDelay([]string{"unknown"}, HedgePolicy{Percentile: .9, Floor: 3 * time.Millisecond}); got != 3*time.Millisecond {
		t.Errorf("no data: delay %v, want the floor", got)
	}
	// The window slides: old samples are forgotten.
	for range 16 {
		h.success("slow", time.Microsecond)
	}
	if d, _ := h.percentile("slow", 0.99); d != time.Microsecond {
		t.Errorf("after the window slid, slow p99 = %v", d)
	}
}
