package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/distkit/distkit/idempotency"
)

// doer is what the benchmarks measure: Guard.Do and two baselines.
type doer interface {
	Do(ctx context.Context, key string, fp []byte, fn func(context.Context) ([]byte, error)) ([]byte, error)
}

// mutexMap is the plain baseline: one mutex over a map, fn run under it,
// no TTL, no leases, no fencing, no bound beyond a periodic reset.
type mutexMap struct {
	mu sync.Mutex
	m  map[string]mmEntry
}

type mmEntry struct{ fp, val []byte }

func (d *mutexMap) Do(ctx context.Context, key string, fp []byte, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[key]; ok {
		if !bytes.Equal(e.fp, fp) {
			return nil, idempotency.ErrKeyReused
		}
		return append([]byte(nil), e.val...), nil
	}
	v, err := fn(ctx)
	if err != nil {
		return nil, err
	}
	if len(d.m) >= idempotency.DefaultMaxEntries {
		clear(d.m)
	}
	d.m[key] = mmEntry{append([]byte(nil), fp...), append([]byte(nil), v...)}
	return v, nil
}

// sfGuard is the design this package would have on golang.org/x/sync's
// singleflight: the same MemoryStore, with in-process coalescing by one
// singleflight.Group (one mutex) instead of Guard's sharded flight table.
type sfGuard struct {
	g     singleflight.Group
	store *idempotency.MemoryStore
}

func (d *sfGuard) Do(ctx context.Context, key string, fp []byte, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	v, err, _ := d.g.Do(key, func() (any, error) {
		rec, claimed, err := d.store.Claim(ctx, key, fp, idempotency.DefaultLease)
		if err != nil {
			return nil, err
		}
		if !claimed {
			if !bytes.Equal(rec.Fingerprint, fp) {
				return nil, idempotency.ErrKeyReused
			}
			if rec.State != idempotency.StateCompleted {
				return nil, idempotency.ErrInProgress
			}
			return rec.Result.Value, nil
		}
		v, err := fn(ctx)
		if err != nil {
			d.store.Release(ctx, key, rec.Token)
			return nil, err
		}
		return v, d.store.Complete(ctx, key, rec.Token, idempotency.Result{Value: v}, idempotency.DefaultTTL)
	})
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), v.([]byte)...), nil
}

var impls = []struct {
	name string
	new  func() doer
}{
	{"guard", func() doer { return idempotency.New(idempotency.NewMemoryStore()) }},
	{"singleflight", func() doer { return &sfGuard{store: idempotency.NewMemoryStore()} }},
	{"mutexmap", func() doer { return &mutexMap{m: make(map[string]mmEntry)} }},
}

var (
	benchFP     = idempotency.Fingerprint([]byte("POST"), []byte("/orders"), []byte(`{"item":"book"}`))
	benchResult = []byte(`{"order":12345,"status":"created"}`) // 35 bytes
	errBench    = errors.New("unexpected result")
)

func op(context.Context) ([]byte, error) { return benchResult, nil }

func check(b *testing.B, v []byte, err error) {
	if err != nil || len(v) != len(benchResult) {
		b.Fatal(v, err, errBench)
	}
}

// BenchmarkDo measures one goroutine: a replayed key, and first
// executions of fresh keys.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	for _, impl := range impls {
		b.Run("replay/impl="+impl.name, func(b *testing.B) {
			d := impl.new()
			d.Do(ctx, "key", benchFP, op)
			b.ReportAllocs()
			for b.Loop() {
				v, err := d.Do(ctx, "key", benchFP, op)
				check(b, v, err)
			}
		})
	}
	for _, impl := range impls {
		b.Run("first/impl="+impl.name, func(b *testing.B) {
			d := impl.new()
			buf := []byte("key-")
			var n uint64
			b.ReportAllocs()
			for b.Loop() {
				n++
				key := string(strconv.AppendUint(buf[:4], n, 10))
				v, err := d.Do(ctx, key, benchFP, op)
				check(b, v, err)
			}
		})
	}
}

// BenchmarkDoParallel measures goroutines in parallel (b.RunParallel, one
// per GOMAXPROCS; vary with -cpu) replaying many distinct keys, replaying
// one hot key, and executing fresh distinct keys.
func BenchmarkDoParallel(b *testing.B) {
	ctx := context.Background()
	const keys = 1024
	names := make([]string, keys)
	for i := range names {
		names[i] = "key-" + strconv.Itoa(i)
	}
	for _, impl := range impls {
		b.Run("replay/keys=1024/impl="+impl.name, func(b *testing.B) {
			d := impl.new()
			for _, k := range names {
				d.Do(ctx, k, benchFP, op)
			}
			var seed atomic.Uint32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(7919))
				for pb.Next() {
					i++
					v, err := d.Do(ctx, names[i%keys], benchFP, op)
					check(b, v, err)
				}
			})
		})
	}
	for _, impl := range impls {
		b.Run("replay/keys=1/impl="+impl.name, func(b *testing.B) {
			d := impl.new()
			d.Do(ctx, "hot", benchFP, op)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					v, err := d.Do(ctx, "hot", benchFP, op)
					check(b, v, err)
				}
			})
		})
	}
	for _, impl := range impls {
		b.Run("first/keys=distinct/impl="+impl.name, func(b *testing.B) {
			d := impl.new()
			var worker atomic.Uint64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := strconv.AppendUint([]byte("w"), worker.Add(1), 10)
				buf = append(buf, '-')
				p := len(buf)
				var n uint64
				for pb.Next() {
					n++
					key := string(strconv.AppendUint(buf[:p], n, 10))
					v, err := d.Do(ctx, key, benchFP, op)
					check(b, v, err)
				}
			})
		})
	}
}

// BenchmarkMemoryStore measures the store alone: a Claim that finds a
// completed record (the replay path) and a full Claim+Complete.
func BenchmarkMemoryStore(b *testing.B) {
	ctx := context.Background()
	b.Run("claim-hit", func(b *testing.B) {
		s := idempotency.NewMemoryStore()
		rec, _, _ := s.Claim(ctx, "key", benchFP, time.Minute)
		s.Complete(ctx, "key", rec.Token, idempotency.Result{Value: benchResult}, time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			if _, claimed, err := s.Claim(ctx, "key", benchFP, time.Minute); claimed || err != nil {
				b.Fatal(claimed, err)
			}
		}
	})
}

// BenchmarkMiddleware measures a replayed POST through Middleware beside
// the bare handler, by body size: the replay hashes the body (SHA-256).
func BenchmarkMiddleware(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(benchResult)
	})
	for _, size := range []int{0, 1 << 10, 16 << 10} {
		body := bytes.Repeat([]byte("x"), size)
		for _, impl := range []struct {
			name string
			h    http.Handler
		}{
			{"bare", handler},
			{"middleware-replay", idempotency.Middleware(idempotency.New(nil))(handler)},
		} {
			b.Run(fmt.Sprintf("body=%d/impl=%s", size, impl.name), func(b *testing.B) {
				r := httptest.NewRequest(http.MethodPost, "/orders", nil)
				r.Header.Set("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324")
				b.ReportAllocs()
				for b.Loop() {
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(size)
					w := httptest.NewRecorder()
					impl.h.ServeHTTP(w, r)
					if w.Code != http.StatusCreated {
						b.Fatal(w.Code)
					}
				}
			})
		}
	}
}
