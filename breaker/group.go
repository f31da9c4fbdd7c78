package breaker

import (
	"context"
	"sync"
	"time"
)

// Group keeps one [Breaker] per key (per host, per endpoint, per tenant),
// all made with the same options, created on first use. It holds at most
// [WithMaxKeys] breakers: when full, it evicts the least recently used one
// that is not open, and it evicts breakers unused for [WithIdleTTL] that are
// not open. An evicted key starts afresh, closed, on its next use.
//
// A Group is safe for concurrent use and starts no goroutines.
type Group[T any] struct {
	cfg config

	mu        sync.Mutex
	m         map[string]*member[T]
	lastSweep time.Time
}

type member[T any] struct {
	b    *Breaker[T]
	used time.Time // guarded by Group.mu
}

// NewGroup returns an empty Group whose breakers use opts. An invalid
// option makes every Execute return an error wrapping [ErrInvalidOption].
func NewGroup[T any](opts ...Option) *Group[T] {
	return &Group[T]{cfg: newConfig(opts), m: make(map[string]*member[T]), lastSweep: time.Now()}
}

// Execute runs fn through the breaker for key; see [Breaker.Execute].
func (g *Group[T]) Execute(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	if g.cfg.err != nil {
		var zero T
		return zero, g.cfg.err
	}
	return g.Breaker(key).Execute(ctx, fn)
}

// Breaker returns the breaker for key, creating it if needed.
func (g *Group[T]) Breaker(key string) *Breaker[T] {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.lastSweep) >= g.cfg.idleTTL/2 {
		g.sweep(now)
	}
	if m, ok := g.m[key]; ok {
		m.used = now
		return m.b
	}
	if len(g.m) >= g.cfg.maxKeys {
		g.evictLRU()
	}
	m := &member[T]{b: newBreaker[T](key, g.cfg), used: now}
	g.m[key] = m
	return m.b
}

// Len returns the number of breakers the group holds.
func (g *Group[T]) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// Stats returns a snapshot of every breaker in the group, keyed by key.
func (g *Group[T]) Stats() map[string]Stats {
	g.mu.Lock()
	bs := make([]*Breaker[T], 0, len(g.m))
	for _, m := range g.m {
		bs = append(bs, m.b)
	}
	g.mu.Unlock()
	out := make(map[string]Stats, len(bs))
	for _, b := range bs {
		out[b.name] = b.Stats()
	}
	return out
}

// isOpen reads the state without dispatching hooks (g.mu may be held).
func (b *Breaker[T]) isOpen() bool {
	return b.forced.Load() != 0 || fromGobreaker(b.cb.Load().State()) == StateOpen
}

// sweep evicts idle breakers that are not open. g.mu must be held.
func (g *Group[T]) sweep(now time.Time) {
	g.lastSweep = now
	for k, m := range g.m {
		if now.Sub(m.used) >= g.cfg.idleTTL && !m.b.isOpen() {
			delete(g.m, k)
		}
	}
}

// evictLRU evicts the least recently used breaker, preferring one that is
// not open. g.mu must be held.
func (g *Group[T]) evictLRU() {
	var victim, openVictim string
	var vt, ot time.Time
	for k, m := range g.m {
		if m.b.isOpen() {
			if openVictim == "" || m.used.Before(ot) {
				openVictim, ot = k, m.used
			}
		} else if victim == "" || m.used.Before(vt) {
			victim, vt = k, m.used
		}
	}
	if victim == "" {
		victim = openVictim
	}
	delete(g.m, victim)
}
