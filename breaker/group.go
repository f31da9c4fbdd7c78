package breaker

import (
	"context"
	"sync"
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
// An invalid option makes it return an error wrapping [ErrInvalidOption].
func (g *Group[T]) Execute(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	return g.Breaker(key).Execute(ctx, fn)
}

// Breaker returns the breaker for key, creating it if needed.
func (g *Group[T]) Breaker(key string) *Breaker[T] {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil { // the zero Group
		g.cfg = newConfig(nil)
		g.m = make(map[string]*member[T])
	}
	if now.Sub(g.lastSweep) >= g.cfg.idleTTL/2 {
		g.sweep(now)
	}
	if m, ok := g.m[key]; ok {
		m.used = now
		return m.b
	}
	if len(g.m) >= g.cfg.maxKeys {
		g.evictLRU(now)
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
	g.lastSweep = now
	for k, m := range g.m {
		if now.Sub(m.used) >= g.cfg.idleTTL && !m.b.holdsOpen(now) {
			delete(g.m, k)
		}
	}
}

// evictLRU evicts the least recently used of a sample of breakers (map
// iteration starts at a random place), preferring one that is not open. g.mu
// must be held.
func (g *Group[T]) evictLRU(now time.Time) {
	var victim, openVictim string
	var vt, ot time.Time
	n := 0
	for k, m := range g.m {
		if n++; n > evictSample {
			break
		}
		if m.b.holdsOpen(now) {
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
