package breaker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Group keeps one [Breaker] per key (per host, per endpoint, per tenant),
// all made with the same options, created on first use. It holds at most
// [WithMaxKeys] breakers: when full, it evicts the least recently used one
// that is not open (approximately: the oldest of a sample), and it evicts
// breakers unused for [WithIdleTTL]. A breaker whose open period is still
// running is evicted only when every candidate is open. An evicted key
// starts afresh, closed, on its next use.
//
// A Group is safe for concurrent use and starts no goroutines. The zero
// value is a group with the default options.
type Group[T any] struct {
	cfg config

	mu        sync.RWMutex
	m         map[string]*member[T]
	lastSweep atomic.Int64 // Unix nanoseconds; written with mu held
}

type member[T any] struct {
	b    *Breaker[T]
	used atomic.Int64 // Unix nanoseconds of the last use
}

// NewGroup returns an empty Group whose breakers use opts. An invalid
// option makes every Execute return an error wrapping [ErrInvalidOption].
func NewGroup[T any](opts ...Option) *Group[T] {
	g := &Group[T]{cfg: newConfig(opts), m: make(map[string]*member[T])}
	g.lastSweep.Store(time.Now().UnixNano())
	return g
}

// Execute runs fn through the breaker for key; see [Breaker.Execute].
// An invalid option makes it return an error wrapping [ErrInvalidOption].
func (g *Group[T]) Execute(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	return g.Breaker(key).Execute(ctx, fn)
}

// Breaker returns the breaker for key, creating it if needed.
func (g *Group[T]) Breaker(key string) *Breaker[T] {
	now := time.Now()
	ns := now.UnixNano()
	// Fast path: a known key, no sweep due.
	g.mu.RLock()
	if g.m != nil && ns-g.lastSweep.Load() < int64(g.cfg.idleTTL/2) {
		if m, ok := g.m[key]; ok {
			m.used.Store(ns)
			g.mu.RUnlock()
			return m.b
		}
	}
	g.mu.RUnlock()

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil { // the zero Group
		g.cfg = newConfig(nil)
		g.m = make(map[string]*member[T])
	}
	if ns-g.lastSweep.Load() >= int64(g.cfg.idleTTL/2) {
		g.sweep(now)
	}
	if m, ok := g.m[key]; ok {
		m.used.Store(ns)
		return m.b
	}
	if len(g.m) >= g.cfg.maxKeys {
		g.evictLRU(now)
	}
	m := &member[T]{b: newBreaker[T](key, g.cfg)}
	m.used.Store(ns)
	g.m[key] = m
	return m.b
}

// Len returns the number of breakers the group holds.
func (g *Group[T]) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.m)
}

// Stats returns a snapshot of every breaker in the group, keyed by key.
func (g *Group[T]) Stats() map[string]Stats {
	g.mu.RLock()
	bs := make([]*Breaker[T], 0, len(g.m))
	for _, m := range g.m {
		bs = append(bs, m.b)
	}
	g.mu.RUnlock()
	out := make(map[string]Stats, len(bs))
	for _, b := range bs {
		out[b.name] = b.Stats()
	}
	return out
}

// holdsOpen reports whether the breaker is open and its open period still
// running, without calling gobreaker or dispatching hooks (g.mu may be
// held).
func (b *Breaker[T]) holdsOpen(now time.Time) bool {
	if until := b.forced.Load(); until > now.UnixNano() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == StateOpen && now.Sub(b.openedAt) <= b.cfg.openTimeout
}

// evictSample is how many breakers evictLRU compares: eviction is an
// approximate LRU in constant time, exact for groups this small.
const evictSample = 16

// sweep evicts idle breakers that are not open. g.mu must be held.
func (g *Group[T]) sweep(now time.Time) {
	g.lastSweep.Store(now.UnixNano())
	idle := now.Add(-g.cfg.idleTTL).UnixNano()
	for k, m := range g.m {
		if m.used.Load() <= idle && !m.b.holdsOpen(now) {
			delete(g.m, k)
		}
	}
}

// evictLRU evicts the least recently used of a sample of breakers (map
// iteration starts at a random place), preferring one that is not open. g.mu
// must be held.
func (g *Group[T]) evictLRU(now time.Time) {
	var victim, openVictim string
	var vt, ot int64
	n := 0
	for k, m := range g.m {
		if n++; n > evictSample {
			break
		}
		used := m.used.Load()
		if m.b.holdsOpen(now) {
			if openVictim == "" || used < ot {
				openVictim, ot = k, used
			}
		} else if victim == "" || used < vt {
			victim, vt = k, used
		}
	}
	if victim == "" {
		victim = openVictim
	}
	delete(g.m, victim)
}
