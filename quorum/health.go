package quorum

import (
	"slices"
	"sync"
	"time"
)

// health tracks, per node, recent latencies (for hedging) and whether the
// node recently failed (for the sloppy quorum).
type health struct {
	mu     sync.Mutex
	window int
	nodes  map[string]*nodeHealth
}

type nodeHealth struct {
	lat       []time.Duration // ring buffer of recent successful latencies
	next      int
	downUntil time.Time
}

func newHealth(window int) *health {
	return &health{window: window, nodes: map[string]*nodeHealth{}}
}

func (h *health) nodeLocked(n string) *nodeHealth {
	s := h.nodes[n]
	if s == nil {
		s = &nodeHealth{}
		h.nodes[n] = s
	}
	return s
}

func (h *health) success(n string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.nodeLocked(n)
	s.downUntil = time.Time{}
	if len(s.lat) < h.window {
		s.lat = append(s.lat, d)
		return
	}
	s.lat[s.next] = d
	s.next = (s.next + 1) % h.window
}

func (h *health) markUp(n string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.nodes[n]; s != nil {
		s.downUntil = time.Time{}
	}
}

func (h *health) failure(n string, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeLocked(n).downUntil = until
}

func (h *health) up(n string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.nodes[n]
	return s == nil || !now.Before(s.downUntil)
}

const minHedgeSamples = 8

// percentile returns the q-quantile of node n's recent latencies.
func (h *health) percentile(n string, q float64) (time.Duration, bool) {
	h.mu.Lock()
	s := h.nodes[n]
	if s == nil || len(s.lat) < minHedgeSamples {
		h.mu.Unlock()
		return 0, false
	}
	lat := slices.Clone(s.lat)
	h.mu.Unlock()
	slices.Sort(lat)
	i := int(q * float64(len(lat)))
	return lat[min(i, len(lat)-1)], true
}

// hedgeDelay is the median over nodes of each node's q-quantile, clamped.
func (h *health) hedgeDelay(nodes []string, p HedgePolicy) time.Duration {
	var ds []time.Duration
	for _, n := range nodes {
		if d, ok := h.percentile(n, p.Percentile); ok {
			ds = append(ds, d)
		}
	}
	d := p.Floor
	if len(ds) > 0 {
		slices.Sort(ds)
		d = max(ds[(len(ds)-1)/2], p.Floor)
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	return d
}
