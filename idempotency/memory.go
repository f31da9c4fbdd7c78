package idempotency

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
)

// Defaults of [MemoryStore].
const (
	// DefaultMaxEntries bounds the number of records a MemoryStore keeps.
	DefaultMaxEntries = 100_000
	// DefaultShards is the number of independently locked shards.
	DefaultShards = 64
)

// MemoryOption configures a [MemoryStore].
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	maxEntries int
	shards     int
	clock      clock.Clock
}

// WithMaxEntries bounds the number of records kept (default
// [DefaultMaxEntries]); beyond it, claims of new keys fail with
// [ErrStoreFull] until records expire. The bound is split evenly across shards, so each
// shard holds at most ceil(n/shards) records. A non-positive n means the
// default.
func WithMaxEntries(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.maxEntries = n
		}
	}
}

// WithShards sets the number of independently locked shards (default
// [DefaultShards]); it is rounded up to a power of two and capped at the
// entry bound. A non-positive n means the default.
func WithShards(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n > 0 {
			c.shards = n
		}
	}
}

// WithMemoryClock sets the time source for leases and expiry (default
// [clock.Real]). A nil c means the default.
func WithMemoryClock(c clock.Clock) MemoryOption {
	return func(cfg *memoryConfig) {
		if c != nil {
			cfg.clock = c
		}
	}
}

// MemoryStore is an in-process [Store]: a hash map split into shards, each
// with its own lock, with TTL expiry and a bound on the number of records.
// It starts no goroutines and needs no Close. Records live only as long as
// the process, so it deduplicates within one process (or behind a sticky
// load balancer); use a shared Store across processes.
//
// # Expiry and capacity
//
// Dead records (lapsed leases, expired results) are dropped when their key
// is touched, and swept from a shard when it is full and its earliest
// deadline has passed. A live record is never dropped: a completed record
// is replayed for its whole TTL, and an in-progress claim keeps its key
// until its lease lapses. When a shard is full of live records, Claim of a
// new key fails with an error wrapping [ErrStoreFull] (a [Middleware]
// answers 503 with Retry-After); the caller may retry once records
// expire. Evicting a completed record early instead would let a retry of
// its key run again, which is exactly what the store is there to prevent.
// Size the store (see [WithMaxEntries]) for the request rate times the
// TTL.
//
// Time is measured from the store's creation on its clock's monotonic
// reading, so steps of the wall clock neither shorten nor extend leases
// and TTLs; the times in its records are that creation time plus elapsed
// time.
//
// The zero value is a MemoryStore with default settings, as
// NewMemoryStore() returns.
type MemoryStore struct {
	once   sync.Once
	seed   maphash.Seed
	mask   uint64
	clock  clock.Clock
	base   time.Time // now() is base + clock.Since(base)
	shards []memShard
	tokens atomic.Uint64

	refused atomic.Uint64
	expired atomic.Uint64
}

type memShard struct {
	mu      sync.Mutex
	m       map[string]*memEntry
	lru     memEntry  // sentinel of a circular list; lru.next is most recent
	limit   int       // max entries in this shard
	minDead time.Time // no entry's deadline is earlier than this
	_       [64]byte  // keep shards on separate cache lines
}

type memEntry struct {
	rec        Record
	prev, next *memEntry
}

func (e *memEntry) deadline() time.Time {
	if e.rec.State == StateInProgress {
		return e.rec.LeaseExpires
	}
	return e.rec.Expires
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	s := &MemoryStore{}
	s.once.Do(func() { s.init(opts) })
	return s
}

func (s *MemoryStore) init(opts []MemoryOption) {
	cfg := memoryConfig{maxEntries: DefaultMaxEntries, shards: DefaultShards, clock: clock.Real}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	n := 1
	for n < cfg.shards && n < cfg.maxEntries {
		n <<= 1
	}
	if n > cfg.maxEntries { // keep every shard able to hold one entry
		n >>= 1
	}
	if n < 1 {
		n = 1
	}
	s.seed = maphash.MakeSeed()
	s.mask = uint64(n - 1)
	s.clock = cfg.clock
	s.base = cfg.clock.Now()
	s.shards = make([]memShard, n)
	limit := (cfg.maxEntries + n - 1) / n
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m = make(map[string]*memEntry)
		sh.lru.next, sh.lru.prev = &sh.lru, &sh.lru
		sh.limit = limit
	}
}

func (s *MemoryStore) initZero() { s.init(nil) }

var _ Store = (*MemoryStore)(nil)

// now returns the current time. Measuring from base lets clock.Real answer
// from the monotonic clock alone (time.Since), which costs half of
// time.Now, and keeps leases immune to steps of the wall clock.
func (s *MemoryStore) now() time.Time {
	s.once.Do(s.initZero)
	return s.base.Add(s.clock.Since(s.base))
}

func (s *MemoryStore) shard(key string) *memShard {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// live returns the live entry for key, dropping a dead one. sh.mu is held.
func (s *MemoryStore) live(sh *memShard, key string, now time.Time) *memEntry {
	e := sh.m[key]
	if e == nil {
		return nil
	}
	if !now.Before(e.deadline()) {
		sh.remove(e)
		s.expired.Add(1)
		return nil
	}
	return e
}

func (sh *memShard) remove(e *memEntry) {
	delete(sh.m, e.rec.Key)
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *memShard) pushFront(e *memEntry) {
	e.prev, e.next = &sh.lru, sh.lru.next
	sh.lru.next.prev = e
	sh.lru.next = e
}

func (sh *memShard) touch(e *memEntry) {
	if sh.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	sh.pushFront(e)
}

func (sh *memShard) noteDeadline(d time.Time) {
	if sh.minDead.IsZero() || d.Before(sh.minDead) {
		sh.minDead = d
	}
}

// makeRoom ensures the shard can take one more entry. sh.mu is held.
func (s *MemoryStore) makeRoom(sh *memShard, now time.Time) error {
	if len(sh.m) < sh.limit {
		return nil
	}
	if !now.Before(sh.minDead) {
		var min time.Time
		for e := sh.lru.prev; e != &sh.lru; {
			prev := e.prev
			if d := e.deadline(); !now.Before(d) {
				sh.remove(e)
				s.expired.Add(1)
			} else if min.IsZero() || d.Before(min) {
				min = d
			}
			e = prev
		}
		sh.minDead = min
		if len(sh.m) < sh.limit {
			return nil
		}
	}
	s.refused.Add(1)
	return ErrStoreFull
}

// Claim implements [Store.Claim].
func (s *MemoryStore) Claim(ctx context.Context, key string, fingerprint []byte, lease time.Duration) (Record, bool, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, false, err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := s.live(sh, key, now); e != nil {
		sh.touch(e)
		return e.rec, false, nil
	}
	if err := s.makeRoom(sh, now); err != nil {
		return Record{}, false, fmt.Errorf("idempotency: claim %q: %w", key, err)
	}
	e := &memEntry{rec: Record{
		Key:          key,
		Fingerprint:  append([]byte(nil), fingerprint...),
		State:        StateInProgress,
		Token:        s.tokens.Add(1),
		LeaseExpires: now.Add(lease),
	}}
	sh.m[key] = e
	sh.pushFront(e)
	sh.noteDeadline(e.rec.LeaseExpires)
	return e.rec, true, nil
}

// held returns the live in-progress entry of key with token. sh.mu is held.
func (s *MemoryStore) held(sh *memShard, key string, token uint64, now time.Time) (*memEntry, error) {
	e := s.live(sh, key, now)
	if e == nil || e.rec.State != StateInProgress || e.rec.Token != token {
		return nil, fmt.Errorf("idempotency: key %q token %d: %w", key, token, ErrLeaseLost)
	}
	return e, nil
}

// Renew implements [Store.Renew].
func (s *MemoryStore) Renew(ctx context.Context, key string, token uint64, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := s.held(sh, key, token, now)
	if err != nil {
		return err
	}
	e.rec.LeaseExpires = now.Add(lease)
	sh.touch(e)
	return nil
}

// Complete implements [Store.Complete].
func (s *MemoryStore) Complete(ctx context.Context, key string, token uint64, res Result, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if res.Value != nil {
		res.Value = append(make([]byte, 0, len(res.Value)), res.Value...)
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := s.held(sh, key, token, now)
	if err != nil {
		return err
	}
	// Records handed out earlier share e.rec's slices, so replace, never mutate.
	e.rec.State = StateCompleted
	e.rec.Result = res
	e.rec.LeaseExpires = time.Time{}
	e.rec.Expires = now.Add(ttl)
	sh.touch(e)
	sh.noteDeadline(e.rec.Expires)
	return nil
}

// Release implements [Store.Release].
func (s *MemoryStore) Release(ctx context.Context, key string, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := s.held(sh, key, token, now)
	if err != nil {
		return err
	}
	sh.remove(e)
	return nil
}

// Get implements [Store.Get].
func (s *MemoryStore) Get(ctx context.Context, key string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.live(sh, key, now)
	if e == nil {
		return Record{}, fmt.Errorf("idempotency: key %q: %w", key, ErrNotFound)
	}
	sh.touch(e)
	return e.rec, nil
}

// MemoryStats is a snapshot of a [MemoryStore]'s counters.
type MemoryStats struct {
	// Entries is the number of records held, live or not yet swept.
	Entries int
	// Evicted is always zero: live records are no longer evicted.
	//
	// Deprecated: see Refused.
	Evicted uint64
	// Refused counts claims of new keys refused with ErrStoreFull because
	// the key's shard was full of live records.
	Refused uint64
	// Expired counts dead records dropped (lapsed leases, expired results).
	Expired uint64
}

// Stats returns a snapshot of the store's counters.
func (s *MemoryStore) Stats() MemoryStats {
	s.once.Do(s.initZero)
	st := MemoryStats{Refused: s.refused.Load(), Expired: s.expired.Load()}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Entries += len(sh.m)
		sh.mu.Unlock()
	}
	return st
}
