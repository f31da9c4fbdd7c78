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

// TestMemoryStoreNeverEvictsLiveRecords: a flood of new keys against a
// full store is refused with ErrStoreFull; the completed records already
// there stay replayable for their whole TTL, so a victim's retry is
// answered from its record instead of running again. (The store used to
// evict the least recently used completed record to make room.)
func TestMemoryStoreNeverEvictsLiveRecords(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewFake(time.Time{})
	s := idempotency.NewMemoryStore(idempotency.WithMemoryClock(clk), idempotency.WithMaxEntries(1000))
	g := idempotency.New(s, idempotency.WithTTL(time.Hour))
	runs := 0
	charge := func(context.Context) ([]byte, error) { runs++; return []byte("receipt"), nil }
	if _, err := g.Do(ctx, "victim", []byte("pay-42"), charge); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := range 3000 {
		_, err := g.Do(ctx, fmt.Sprint("flood-", i), nil, func(context.Context) ([]byte, error) { return nil, nil })
		switch {
		case errors.Is(err, idempotency.ErrStoreFull):
			refused++
		case err != nil:
			t.Fatalf("flood %d: %v", i, err)
		}
	}
	if refused < 1900 { // 64 shards of 16: room for 1,024
		t.Fatalf("%d of 3000 flood keys refused; want at least 1900 for a 1000-entry store", refused)
	}
	v, err := g.Do(ctx, "victim", []byte("pay-42"), charge)
	if err != nil || string(v) != "receipt" || runs != 1 {
		t.Fatalf("victim's retry = %q, %v after %d runs; want the recorded receipt and 1 run", v, err, runs)
	}
	if st := s.Stats(); st.Refused != uint64(refused) || st.Evicted != 0 || st.Entries > 1024 {
		t.Fatalf("Stats = %+v; want %d refused, none evicted, at most 1,024 entries", st, refused)
	}
	// Once the TTL has passed, dead records make room again.
	clk.Advance(time.Hour)
	if _, err := g.Do(ctx, "after-ttl", nil, func(context.Context) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatalf("claim after the TTL: %v", err)
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
	stored := 0
	for i := range 1000 {
		key := fmt.Sprint(i)
		rec, ok, err := s.Claim(ctx, key, nil, time.Minute)
		if errors.Is(err, idempotency.ErrStoreFull) {
			continue
		}
		if err != nil || !ok {
			t.Fatalf("Claim(%q) = %v, %v", key, ok, err)
		}
		stored++
		if err := s.Complete(ctx, key, rec.Token, idempotency.Result{}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// 100 entries over 8 shards: each shard holds ceil(100/8) = 13.
	if st := s.Stats(); st.Entries != stored || st.Entries > 8*13 || st.Entries < 90 || st.Refused != uint64(1000-stored) {
		t.Fatalf("Stats = %+v (%d stored); want 90 to 104 entries and the rest refused", st, stored)
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
