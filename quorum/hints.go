package quorum

import (
	"context"
	"slices"
	"sync"
)

// hintStore holds objects owed to nodes that missed them, merged per
// (node, key). It lives in the Coordinator's memory: hints do not survive a
// restart, and anti-entropy repairs what they would have.
type hintStore[V any] struct {
	mu    sync.Mutex
	max   int
	n     int
	nodes map[string]map[string]Object[V]
}

func newHintStore[V any](max int) *hintStore[V] {
	return &hintStore[V]{max: max, nodes: map[string]map[string]Object[V]{}}
}

func (h *hintStore[V]) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// add merges obj into the hint for (node, key); it reports false when the
// store is full.
func (h *hintStore[V]) add(node, key string, obj Object[V]) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.nodes[node]
	if m == nil {
		m = map[string]Object[V]{}
		h.nodes[node] = m
	}
	old, ok := m[key]
	if !ok {
		if h.n >= h.max {
			return false
		}
		h.n++
	}
	m[key] = old.Merge(obj)
	return true
}

func (h *hintStore[V]) nodeNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.nodes))
	for n := range h.nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (h *hintStore[V]) snapshot(node string) map[string]Object[V] {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]Object[V], len(h.nodes[node]))
	for k, o := range h.nodes[node] {
		out[k] = o
	}
	return out
}

// done removes the hint for (node, key) if it is still the one delivered.
func (h *hintStore[V]) done(node, key string, delivered uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.nodes[node]
	if o, ok := m[key]; ok && o.Digest() == delivered {
		delete(m, key)
		h.n--
		if len(m) == 0 {
			delete(h.nodes, node)
		}
	}
}

func (c *Coordinator[V]) hint(node, key string, obj Object[V]) {
	if c.hints.add(node, key, obj) {
		c.stats.hintsStored.Add(1)
	} else {
		c.stats.hintsDropped.Add(1)
	}
}

// DeliverHints offers every stored hint to its node now, without waiting
// for the next HintInterval tick, and returns how many were delivered. For
// each node it stops at the first failure, leaving the rest for later. It
// runs periodically in the background; calling it is useful after a known
// recovery and in tests.
func (c *Coordinator[V]) DeliverHints(ctx context.Context) int {
	delivered := 0
	for _, node := range c.hints.nodeNames() {
		r, err := c.replica(node)
		if err != nil {
			continue
		}
		for key, obj := range c.hints.snapshot(node) {
			if ctx.Err() != nil {
				return delivered
			}
			cctx, cancel := c.callContext(ctx)
			start := c.clk.Now()
			err := r.Put(cctx, key, obj)
			c.observe(cctx, node, start, err, false)
			cancel()
			if err != nil {
				break
			}
			c.hints.done(node, key, obj.Digest())
			c.stats.hintsDelivered.Add(1)
			delivered++
		}
	}
	return delivered
}
