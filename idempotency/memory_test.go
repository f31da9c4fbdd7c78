package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, c clock.Clock) idempotency.Store {
		return idempotency.NewMemoryStore(idempotency.WithMemoryClock(c))
	})
}

func TestMemoryStoreConformanceOneShard(t *testing.T) {
	storetest.Run(t, func(t *testing.T, c clock.Clock) idempotency.Store {
		return idempotency.NewMemoryStore(idempotency.WithMemoryClock(c), idempotency.WithShards(1))
	})
}

func TestMemoryStoreEvictsExpiredFirstThenLRU(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewFake(time.Time{})
	s := idempotency.NewMemoryStore(idempotency.WithMemoryClock(clk), idempotency.WithShards(1), idempotency.WithMaxEntries(3))
	complete := func(key string, ttl time.Duration) {
		t.Helper()
		rec, ok, err := s.Claim(ctx, key, nil, time.Minute)
		if err != nil || !ok {
			t.Fatalf("Claim(%q) = %v, %v", key, ok, err)
		}
		if err := s.Complete(ctx, key, rec.Token, idempotency.Result{Value: []byte(key)}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	present := func(key string) bool {
		_, err := s.Get(ctx, key)
		return err == nil
	}

	complete("short", time.Second)
	complete("old", time.Hour)
	complete("new", time.Hour)
	clk.Advance(time.Second) // "short" is now dead but still stored
	present("old")           // "old" becomes most recently used
	complete("d", time.Hour) // full: the dead record goes, nothing live is evicted
	for _, k := range []string{"old", "new", "d"} {
		if !present(k) {
			t.Fatalf("%q evicted while a dead record was available", k)
		}
	}
	if st := s.Stats(); st.Entries != 3 || st.Evicted != 0 || st.Expired != 1 {
		t.Fatalf("Stats = %+v; want 3 entries, 0 evicted, 1 expired", st)
	}
	// Recency order is now d, new, old (Get touches): touch old and d so
	// that "new" is least recently used.
	present("old")
	present("d")
	complete("e", time.Hour)
	if present("new") {
		t.Fatal("least recently used record was not evicted")
	}
	for _, k := range []string{"old", "d", "e"} {
		if !present(k) {
			t.Fatalf("%q evicted instead of the least recently used record", k)
		}
	}
	if st := s.Stats(); st.Evicted != 1 {
		t.Fatalf("Evicted = %d; want 1", st.Evicted)
	}
}

func TestMemoryStoreNeverEvictsLiveClaims(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewFake(time.Time{})
	s := idempotency.NewMemoryStore(idempotency.WithMemoryClock(clk), idempotency.WithShards(1), idempotency.WithMaxEntries(2))
	for _, k := range []string{"a", "b"} {
		if _, ok, err := s.Claim(ctx, k, nil, time.Minute); err != nil || !ok {
			t.Fatalf("Claim(%q) = %v, %v", k, ok, err)
		}
	}
	if _, ok, err := s.Claim(ctx, "c", nil, time.Minute); !errors.Is(err, idempotency.ErrStoreFull) || ok {
		t.Fatalf("Claim on a store full of live claims = %v, %v; want ErrStoreFull", ok, err)
	}
	clk.Advance(time.Minute) // leases lapse: room again
	if _, ok, err := s.Claim(ctx, "c", nil, time.Minute); err != nil || !ok {
		t.Fatalf("Claim after leases lapsed = %v, %v", ok, err)
	}
}

func TestMemoryStoreBound(t *testing.T) {
	ctx := context.Background()
	s := idempotency.NewMemoryStore(idempotency.WithMaxEntries(100), idempotency.WithShards(8))
	for i := range 1000 {
		key := fmt.Sprint(i)
		rec, ok, err := s.Claim(ctx, key, nil, time.Minute)
		if err != nil || !ok {
			t.Fatalf("Claim(%q) = %v, %v", key, ok, err)
		}
		if err := s.Complete(ctx, key, rec.Token, idempotency.Result{}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// 100 entries over 8 shards: each shard holds ceil(100/8) = 13.
	if st := s.Stats(); st.Entries > 8*13 || st.Entries < 90 || st.Evicted != uint64(1000-st.Entries) {
		t.Fatalf("Stats = %+v; want 90 to 104 entries and the rest evicted", st)
	}
}

// modelRec is the reference model's view of one key.
type modelRec struct {
	fp       string
	state    idempotency.State
	token    uint64
	value    string
	deadline time.Time
}

// TestMemoryStoreMatchesModel drives a MemoryStore and a naive model with
// random operations and random time steps and checks every answer.
func TestMemoryStoreMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		clk := clocktest.NewFake(time.Time{})
		shards := rapid.SampledFrom([]int{1, 4}).Draw(rt, "shards")
		s := idempotency.NewMemoryStore(idempotency.WithMemoryClock(clk), idempotency.WithShards(shards))
		model := make(map[string]*modelRec)
		issued := map[uint64]bool{}
		tokens := []uint64{1} // candidate tokens to present, valid or not

		keyGen := rapid.SampledFrom([]string{"a", "b", "c"})
		durGen := rapid.SampledFrom([]time.Duration{time.Second, 2 * time.Second, 5 * time.Second})
		live := func(key string) *modelRec {
			m := model[key]
			if m == nil || !clk.Now().Before(m.deadline) {
				delete(model, key)
				return nil
			}
			return m
		}
		held := func(key string, token uint64) *modelRec {
			m := live(key)
			if m == nil || m.state != idempotency.StateInProgress || m.token != token {
				return nil
			}
			return m
		}
		checkRec := func(what string, got idempotency.Record, m *modelRec) {
			if string(got.Fingerprint) != m.fp || got.State != m.state || got.Token != m.token ||
				string(got.Result.Value) != m.value {
				rt.Fatalf("%s: store %+v; model %+v", what, got, *m)
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"claim": func(rt *rapid.T) {
				key := keyGen.Draw(rt, "key")
				fp := rapid.SampledFrom([]string{"x", "y"}).Draw(rt, "fp")
				lease := durGen.Draw(rt, "lease")
				rec, ok, err := s.Claim(ctx, key, []byte(fp), lease)
				if err != nil {
					rt.Fatalf("Claim: %v", err)
				}
				if m := live(key); m != nil {
					if ok {
						rt.Fatalf("Claim(%q) succeeded over live %+v", key, *m)
					}
					checkRec("Claim of a live key", rec, m)
					return
				}
				if !ok {
					rt.Fatalf("Claim(%q) of a free key failed: %+v", key, rec)
				}
				if issued[rec.Token] {
					rt.Fatalf("token %d reused", rec.Token)
				}
				issued[rec.Token] = true
				tokens = append(tokens, rec.Token, rec.Token+1000)
				model[key] = &modelRec{fp: fp, state: idempotency.StateInProgress, token: rec.Token, deadline: clk.Now().Add(lease)}
			},
			"complete": func(rt *rapid.T) {
				key := keyGen.Draw(rt, "key")
				token := rapid.SampledFrom(tokens).Draw(rt, "token")
				ttl := durGen.Draw(rt, "ttl")
				val := rapid.StringMatching(`[a-z]{0,4}`).Draw(rt, "value")
				err := s.Complete(ctx, key, token, idempotency.Result{Value: []byte(val)}, ttl)
				if m := held(key, token); m != nil {
					if err != nil {
						rt.Fatalf("Complete by the holder: %v", err)
					}
					m.state, m.value, m.deadline = idempotency.StateCompleted, val, clk.Now().Add(ttl)
				} else if !errors.Is(err, idempotency.ErrLeaseLost) {
					rt.Fatalf("Complete(%q, %d) by a non-holder = %v", key, token, err)
				}
			},
			"renew": func(rt *rapid.T) {
				key := keyGen.Draw(rt, "key")
				token := rapid.SampledFrom(tokens).Draw(rt, "token")
				lease := durGen.Draw(rt, "lease")
				err := s.Renew(ctx, key, token, lease)
				if m := held(key, token); m != nil {
					if err != nil {
						rt.Fatalf("Renew by the holder: %v", err)
					}
					m.deadline = clk.Now().Add(lease)
				} else if !errors.Is(err, idempotency.ErrLeaseLost) {
					rt.Fatalf("Renew(%q, %d) by a non-holder = %v", key, token, err)
				}
			},
			"release": func(rt *rapid.T) {
				key := keyGen.Draw(rt, "key")
				token := rapid.SampledFrom(tokens).Draw(rt, "token")
				err := s.Release(ctx, key, token)
				if m := held(key, token); m != nil {
					if err != nil {
						rt.Fatalf("Release by the holder: %v", err)
					}
					delete(model, key)
				} else if !errors.Is(err, idempotency.ErrLeaseLost) {
					rt.Fatalf("Release(%q, %d) by a non-holder = %v", key, token, err)
				}
			},
			"advance": func(rt *rapid.T) {
				clk.Advance(rapid.SampledFrom([]time.Duration{500 * time.Millisecond, time.Second, 3 * time.Second}).Draw(rt, "d"))
			},
			"": func(rt *rapid.T) { // after every step: Get agrees for every key
				for _, key := range []string{"a", "b", "c"} {
					got, err := s.Get(ctx, key)
					if m := live(key); m != nil {
						if err != nil {
							rt.Fatalf("Get(%q) = %v; model has %+v", key, err, *m)
						}
						checkRec("Get", got, m)
					} else if !errors.Is(err, idempotency.ErrNotFound) {
						rt.Fatalf("Get(%q) = %+v, %v; model has nothing", key, got, err)
					}
				}
			},
		})
	})
}
