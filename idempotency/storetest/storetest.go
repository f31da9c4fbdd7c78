// Package storetest checks that an [idempotency.Store] keeps the contract
// documented on that interface, so that every store — the package's own
// MemoryStore or one over a user's database — is held to the same rules.
//
// Call [Run] from a test:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, c clock.Clock) idempotency.Store {
//			return mystore.New(db, mystore.WithClock(c))
//		})
//	}
//
// The suite drives time with the [clock.Clock] it passes to the factory (a
// [clocktest.Fake]), so it never sleeps and never depends on timing. A
// store must take "now" from that clock for leases and expiry. Each
// subtest gets a fresh store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

// NewStore returns an empty store that takes the current time from c.
type NewStore func(t *testing.T, c clock.Clock) idempotency.Store

const (
	lease = 10 * time.Second
	ttl   = time.Hour
)

var (
	fpA = []byte("fingerprint-a")
	fpB = []byte("fingerprint-b")
)

type env struct {
	t   *testing.T
	ctx context.Context
	clk *clocktest.Fake
	s   idempotency.Store
}

func (e *env) claim(key string, fp []byte) (idempotency.Record, bool) {
	e.t.Helper()
	rec, ok, err := e.s.Claim(e.ctx, key, fp, lease)
	if err != nil {
		e.t.Fatalf("Claim(%q) error: %v", key, err)
	}
	return rec, ok
}

func (e *env) mustClaim(key string, fp []byte) idempotency.Record {
	e.t.Helper()
	rec, ok := e.claim(key, fp)
	if !ok {
		e.t.Fatalf("Claim(%q) of a free key: claimed = false, record %+v", key, rec)
	}
	return rec
}

func (e *env) complete(key string, token uint64, res idempotency.Result) {
	e.t.Helper()
	if err := e.s.Complete(e.ctx, key, token, res, ttl); err != nil {
		e.t.Fatalf("Complete(%q, %d) error: %v", key, token, err)
	}
}

func (e *env) wantLost(op string, err error) {
	e.t.Helper()
	if !errors.Is(err, idempotency.ErrLeaseLost) {
		e.t.Fatalf("%s = %v; want ErrLeaseLost", op, err)
	}
}

func (e *env) wantNotFound(key string) {
	e.t.Helper()
	if rec, err := e.s.Get(e.ctx, key); !errors.Is(err, idempotency.ErrNotFound) {
		e.t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, rec, err)
	}
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktest.NewFake(time.Time{})
			s := newStore(t, clk)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.run(&env{t: t, ctx: context.Background(), clk: clk, s: s})
		})
	}
}

var tests = []struct {
	name string
	run  func(e *env)
}{
	{"ClaimFreeKey", testClaimFree},
	{"ClaimHeldKey", testClaimHeld},
	{"CompleteThenReplay", testCompleteReplay},
	{"CompleteWithWrongToken", testCompleteWrongToken},
	{"CompleteTwice", testCompleteTwice},
	{"ReleaseFreesKey", testRelease},
	{"ReleaseWithWrongToken", testReleaseWrongToken},
	{"LeaseLapses", testLeaseLapses},
	{"RenewExtendsLease", testRenew},
	{"RecordExpiresAfterTTL", testTTL},
	{"GetMissing", testGetMissing},
	{"RecordedError", testRecordedError},
	{"CopiesInputs", testCopiesInputs},
	{"KeysIndependent", testKeysIndependent},
	{"TokensNeverReused", testTokensNeverReused},
	{"CancelledContext", testCancelled},
	{"ConcurrentClaimsOneWinner", testConcurrentClaims},
	{"ConcurrentLifecycles", testConcurrentLifecycles},
	{"FullStoreKeepsLiveRecords", testFullStoreKeepsLiveRecords},
}

func testClaimFree(e *env) {
	now := e.clk.Now()
	rec := e.mustClaim("k", fpA)
	if rec.Key != "k" || rec.State != idempotency.StateInProgress || !bytes.Equal(rec.Fingerprint, fpA) {
		e.t.Fatalf("claimed record = %+v; want key k, in progress, fingerprint %q", rec, fpA)
	}
	if rec.Token == 0 {
		e.t.Fatal("claimed record has token 0")
	}
	if want := now.Add(lease); !rec.LeaseExpires.Equal(want) {
		e.t.Fatalf("LeaseExpires = %v; want %v", rec.LeaseExpires, want)
	}
	got, err := e.s.Get(e.ctx, "k")
	if err != nil || got.Token != rec.Token || got.State != idempotency.StateInProgress {
		e.t.Fatalf("Get = %+v, %v; want the in-progress claim", got, err)
	}
}

func testClaimHeld(e *env) {
	first := e.mustClaim("k", fpA)
	for _, fp := range [][]byte{fpA, fpB} {
		rec, ok := e.claim("k", fp)
		if ok {
			e.t.Fatalf("second Claim with fingerprint %q succeeded", fp)
		}
		if rec.Token != first.Token || !bytes.Equal(rec.Fingerprint, fpA) || rec.State != idempotency.StateInProgress {
			e.t.Fatalf("second Claim returned %+v; want the first claim %+v", rec, first)
		}
	}
}

func testCompleteReplay(e *env) {
	rec := e.mustClaim("k", fpA)
	e.clk.Advance(time.Second)
	done := e.clk.Now()
	e.complete("k", rec.Token, idempotency.Result{Value: []byte("result")})
	got, ok := e.claim("k", fpA)
	if ok {
		e.t.Fatal("Claim of a completed key succeeded")
	}
	if got.State != idempotency.StateCompleted || string(got.Result.Value) != "result" || got.Result.Err != "" ||
		got.Token != rec.Token || !bytes.Equal(got.Fingerprint, fpA) {
		e.t.Fatalf("record after Complete = %+v", got)
	}
	if want := done.Add(ttl); !got.Expires.Equal(want) {
		e.t.Fatalf("Expires = %v; want %v", got.Expires, want)
	}
	g, err := e.s.Get(e.ctx, "k")
	if err != nil || string(g.Result.Value) != "result" || g.State != idempotency.StateCompleted {
		e.t.Fatalf("Get = %+v, %v", g, err)
	}
	e.wantLost("Renew of a completed record", e.s.Renew(e.ctx, "k", rec.Token, lease))
	e.wantLost("Release of a completed record", e.s.Release(e.ctx, "k", rec.Token))
	if g, _ := e.s.Get(e.ctx, "k"); g.State != idempotency.StateCompleted {
		e.t.Fatalf("record changed by refused calls: %+v", g)
	}
}

func testCompleteWrongToken(e *env) {
	rec := e.mustClaim("k", fpA)
	e.wantLost("Complete with a wrong token",
		e.s.Complete(e.ctx, "k", rec.Token+1, idempotency.Result{Value: []byte("x")}, ttl))
	e.wantLost("Complete of an unclaimed key",
		e.s.Complete(e.ctx, "other", rec.Token, idempotency.Result{Value: []byte("x")}, ttl))
	got, err := e.s.Get(e.ctx, "k")
	if err != nil || got.State != idempotency.StateInProgress || got.Token != rec.Token {
		e.t.Fatalf("record after refused Complete = %+v, %v", got, err)
	}
	e.wantNotFound("other")
}

func testCompleteTwice(e *env) {
	rec := e.mustClaim("k", fpA)
	e.complete("k", rec.Token, idempotency.Result{Value: []byte("one")})
	e.wantLost("second Complete",
		e.s.Complete(e.ctx, "k", rec.Token, idempotency.Result{Value: []byte("two")}, ttl))
	if got, _ := e.s.Get(e.ctx, "k"); string(got.Result.Value) != "one" {
		e.t.Fatalf("second Complete overwrote the result: %q", got.Result.Value)
	}
}

func testRelease(e *env) {
	old := e.mustClaim("k", fpA)
	if err := e.s.Release(e.ctx, "k", old.Token); err != nil {
		e.t.Fatalf("Release = %v", err)
	}
	e.wantNotFound("k")
	e.wantLost("Release twice", e.s.Release(e.ctx, "k", old.Token))
	rec := e.mustClaim("k", fpB)
	if rec.Token == old.Token {
		e.t.Fatalf("claim after Release reused token %d", old.Token)
	}
	if !bytes.Equal(rec.Fingerprint, fpB) {
		e.t.Fatalf("new claim has fingerprint %q; want %q", rec.Fingerprint, fpB)
	}
	e.wantLost("Complete by the released holder",
		e.s.Complete(e.ctx, "k", old.Token, idempotency.Result{Value: []byte("stale")}, ttl))
	e.complete("k", rec.Token, idempotency.Result{Value: []byte("fresh")})
	if got, _ := e.s.Get(e.ctx, "k"); string(got.Result.Value) != "fresh" {
		e.t.Fatalf("result = %q; want fresh", got.Result.Value)
	}
}

func testReleaseWrongToken(e *env) {
	rec := e.mustClaim("k", fpA)
	e.wantLost("Release with a wrong token", e.s.Release(e.ctx, "k", rec.Token+1))
	if _, ok := e.claim("k", fpA); ok {
		e.t.Fatal("refused Release freed the key")
	}
}

func testLeaseLapses(e *env) {
	old := e.mustClaim("k", fpA)
	e.clk.Advance(lease - time.Nanosecond)
	if _, ok := e.claim("k", fpA); ok {
		e.t.Fatal("key claimed again before the lease lapsed")
	}
	e.clk.Advance(time.Nanosecond)
	e.wantNotFound("k")
	e.wantLost("Renew after the lease lapsed", e.s.Renew(e.ctx, "k", old.Token, lease))
	e.wantLost("Complete after the lease lapsed",
		e.s.Complete(e.ctx, "k", old.Token, idempotency.Result{Value: []byte("late")}, ttl))
	e.wantNotFound("k")
	rec := e.mustClaim("k", fpA)
	if rec.Token == old.Token {
		e.t.Fatalf("claim after lapse reused token %d", old.Token)
	}
	e.wantLost("Complete by the lapsed holder",
		e.s.Complete(e.ctx, "k", old.Token, idempotency.Result{Value: []byte("stale")}, ttl))
	e.wantLost("Release by the lapsed holder", e.s.Release(e.ctx, "k", old.Token))
	e.wantLost("Renew by the lapsed holder", e.s.Renew(e.ctx, "k", old.Token, lease))
	got, err := e.s.Get(e.ctx, "k")
	if err != nil || got.Token != rec.Token || got.State != idempotency.StateInProgress {
		e.t.Fatalf("new claim disturbed by the lapsed holder: %+v, %v", got, err)
	}
}

func testRenew(e *env) {
	rec := e.mustClaim("k", fpA)
	e.clk.Advance(lease / 2)
	if err := e.s.Renew(e.ctx, "k", rec.Token, lease); err != nil {
		e.t.Fatalf("Renew = %v", err)
	}
	want := e.clk.Now().Add(lease)
	e.clk.Advance(lease - time.Nanosecond) // past the original lease
	got, ok := e.claim("k", fpA)
	if ok {
		e.t.Fatal("renewed claim was taken over")
	}
	if !got.LeaseExpires.Equal(want) {
		e.t.Fatalf("LeaseExpires = %v; want %v", got.LeaseExpires, want)
	}
	e.wantLost("Renew with a wrong token", e.s.Renew(e.ctx, "k", rec.Token+1, lease))
	e.complete("k", rec.Token, idempotency.Result{Value: []byte("v")})
}

func testTTL(e *env) {
	rec := e.mustClaim("k", fpA)
	e.complete("k", rec.Token, idempotency.Result{Value: []byte("v")})
	e.clk.Advance(ttl - time.Nanosecond)
	if got, ok := e.claim("k", fpB); ok || got.State != idempotency.StateCompleted {
		e.t.Fatalf("record gone before its TTL: claimed=%v %+v", ok, got)
	}
	e.clk.Advance(time.Nanosecond)
	e.wantNotFound("k")
	again := e.mustClaim("k", fpB)
	if again.Token == rec.Token || !bytes.Equal(again.Fingerprint, fpB) {
		e.t.Fatalf("claim after TTL = %+v", again)
	}
}

func testGetMissing(e *env) {
	e.wantNotFound("never-seen")
}

func testRecordedError(e *env) {
	rec := e.mustClaim("k", fpA)
	e.complete("k", rec.Token, idempotency.Result{Err: "card declined"})
	got, ok := e.claim("k", fpA)
	if ok || got.State != idempotency.StateCompleted || got.Result.Err != "card declined" || len(got.Result.Value) != 0 {
		e.t.Fatalf("recorded error = claimed %v, %+v", ok, got)
	}
}

func testCopiesInputs(e *env) {
	fp := []byte("fingerprint")
	rec := e.mustClaim("k", fp)
	fp[0] = 'X'
	val := []byte("value")
	e.complete("k", rec.Token, idempotency.Result{Value: val})
	val[0] = 'X'
	got, _ := e.s.Get(e.ctx, "k")
	if string(got.Fingerprint) != "fingerprint" || string(got.Result.Value) != "value" {
		e.t.Fatalf("store kept the caller's slices: fingerprint %q, value %q", got.Fingerprint, got.Result.Value)
	}
}

func testKeysIndependent(e *env) {
	a := e.mustClaim("a", fpA)
	b := e.mustClaim("b", fpA)
	if a.Token == b.Token {
		// Tokens need only be unique per key; equal tokens across keys must
		// still not let one key's holder act on the other.
		e.t.Log("store gives equal tokens to different keys")
	}
	e.complete("a", a.Token, idempotency.Result{Value: []byte("A")})
	if got, _ := e.s.Get(e.ctx, "b"); got.State != idempotency.StateInProgress {
		e.t.Fatalf("completing a changed b: %+v", got)
	}
	if err := e.s.Release(e.ctx, "b", b.Token); err != nil {
		e.t.Fatalf("Release(b) = %v", err)
	}
	if got, _ := e.s.Get(e.ctx, "a"); string(got.Result.Value) != "A" {
		e.t.Fatalf("releasing b changed a: %+v", got)
	}
}

func testTokensNeverReused(e *env) {
	seen := make(map[uint64]bool)
	for i := range 50 {
		rec := e.mustClaim("k", fpA)
		if seen[rec.Token] {
			e.t.Fatalf("cycle %d: token %d handed out twice", i, rec.Token)
		}
		seen[rec.Token] = true
		switch i % 3 {
		case 0:
			if err := e.s.Release(e.ctx, "k", rec.Token); err != nil {
				e.t.Fatal(err)
			}
		case 1:
			e.clk.Advance(lease)
		case 2:
			e.complete("k", rec.Token, idempotency.Result{Value: []byte("v")})
			e.clk.Advance(ttl)
		}
	}
}

func testCancelled(e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, ok, err := e.s.Claim(ctx, "k", fpA, lease); !errors.Is(err, context.Canceled) || ok {
		e.t.Fatalf("Claim with a cancelled ctx = claimed %v, %v; want context.Canceled", ok, err)
	}
	e.mustClaim("k", fpA) // the cancelled call claimed nothing
}

func testConcurrentClaims(e *env) {
	const n = 32
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []uint64
		tokens  = make(map[uint64]int)
		errs    []error
		start   = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			rec, ok, err := e.s.Claim(e.ctx, "hot", fpA, lease)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if ok {
				winners = append(winners, rec.Token)
			}
			tokens[rec.Token]++
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("concurrent Claim errors: %v", errs)
	}
	if len(winners) != 1 || len(tokens) != 1 || tokens[winners[0]] != n {
		e.t.Fatalf("%d concurrent Claims: winners %v, tokens seen %v; want one winner whose token all saw", n, winners, tokens)
	}
}

func testConcurrentLifecycles(e *env) {
	const workers, keys = 8, 25
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range keys {
				key := fmt.Sprintf("w%d-k%d", w, i)
				rec, ok, err := e.s.Claim(e.ctx, key, fpA, lease)
				if err != nil || !ok {
					errc <- fmt.Errorf("Claim(%q) = %v, %v", key, ok, err)
					return
				}
				if i%2 == 0 {
					err = e.s.Release(e.ctx, key, rec.Token)
				} else {
					err = e.s.Complete(e.ctx, key, rec.Token, idempotency.Result{Value: []byte(key)}, ttl)
				}
				if err != nil {
					errc <- fmt.Errorf("finishing %q: %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		e.t.Fatal(err)
	}
	for w := range workers {
		for i := range keys {
			key := fmt.Sprintf("w%d-k%d", w, i)
			got, err := e.s.Get(e.ctx, key)
			if i%2 == 0 {
				if !errors.Is(err, idempotency.ErrNotFound) {
					e.t.Fatalf("released %q: Get = %+v, %v", key, got, err)
				}
			} else if err != nil || string(got.Result.Value) != key {
				e.t.Fatalf("completed %q: Get = %+v, %v", key, got, err)
			}
		}
	}
}

// testFullStoreKeepsLiveRecords floods the store with more keys than a
// bounded store holds. Each Claim must succeed or fail with ErrStoreFull;
// every record completed before the flood must stay replayable until its
// TTL (dropping it early would let its retry run twice).
func testFullStoreKeepsLiveRecords(e *env) {
	const victims, flood = 10, 3000
	for i := range victims {
		key := fmt.Sprint("victim-", i)
		rec := e.mustClaim(key, fpA)
		e.complete(key, rec.Token, idempotency.Result{Value: []byte(key)})
	}
	for i := range flood {
		key := fmt.Sprint("flood-", i)
		rec, ok, err := e.s.Claim(e.ctx, key, fpB, lease)
		if errors.Is(err, idempotency.ErrStoreFull) {
			continue
		}
		if err != nil || !ok {
			e.t.Fatalf("Claim(%q) = %v, %v; want a claim or ErrStoreFull", key, ok, err)
		}
		e.complete(key, rec.Token, idempotency.Result{})
	}
	e.clk.Advance(ttl - time.Second)
	for i := range victims {
		key := fmt.Sprint("victim-", i)
		rec, ok := e.claim(key, fpA)
		if ok || rec.State != idempotency.StateCompleted || string(rec.Result.Value) != key {
			e.t.Fatalf("Claim(%q) within its TTL after a flood = %+v, claimed %v; want the completed record", key, rec, ok)
		}
	}
}
