package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

var bg = context.Background()

// fakeEnv is a Guard and its MemoryStore on one fake clock.
func fakeEnv(opts ...idempotency.Option) (*idempotency.Guard, *idempotency.MemoryStore, *clocktest.Fake) {
	clk := clocktest.NewFake(time.Time{})
	s := idempotency.NewMemoryStore(idempotency.WithMemoryClock(clk))
	return idempotency.New(s, append([]idempotency.Option{idempotency.WithClock(clk)}, opts...)...), s, clk
}

// counted returns fn that counts its runs and returns result.
func counted(n *atomic.Int32, result string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		n.Add(1)
		return []byte(result), nil
	}
}

func TestNewKey(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	prev := ""
	for i := range n {
		k := idempotency.NewKey()
		if i == 0 {
			u, err := uuid.Parse(k)
			if err != nil {
				t.Fatalf("uuid.Parse(%q) = %v", k, err)
			}
			if len(k) != 36 || u.Version() != 7 || u.Variant() != uuid.RFC4122 || u.String() != k {
				t.Fatalf("NewKey() = %q: version %d, variant %v; want canonical v7 RFC 4122", k, u.Version(), u.Variant())
			}
		}
		if k <= prev {
			t.Fatalf("key %d %q not after %q", i, k, prev)
		}
		prev = k
	}
}

func TestDoRecordsAndReplays(t *testing.T) {
	g, s, clk := fakeEnv()
	var runs atomic.Int32
	fp := idempotency.Fingerprint([]byte("charge"), []byte("42"))
	got, err := g.Do(bg, "k", fp, counted(&runs, "receipt"))
	if err != nil || string(got) != "receipt" {
		t.Fatalf("first Do = %q, %v", got, err)
	}
	rec, err := s.Get(bg, "k")
	if err != nil || rec.State != idempotency.StateCompleted || !bytes.Equal(rec.Fingerprint, fp) {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	if want := clk.Now().Add(idempotency.DefaultTTL); !rec.Expires.Equal(want) || idempotency.DefaultTTL != 24*time.Hour {
		t.Fatalf("Expires = %v; want now + 24h", rec.Expires)
	}
	got[0] = 'X' // the caller owns the returned slice
	for i := range 3 {
		again, err := g.Do(bg, "k", fp, counted(&runs, "second"))
		if err != nil || string(again) != "receipt" {
			t.Fatalf("replay %d = %q, %v; want receipt", i, again, err)
		}
		again[0] = 'Y'
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times; want 1", n)
	}
	if st := g.Stats(); st != (idempotency.GuardStats{Executed: 1, Replayed: 3}) {
		t.Fatalf("Stats = %+v; want 1 executed, 3 replayed", st)
	}
}

func TestDoKeyReused(t *testing.T) {
	g, s, _ := fakeEnv()
	var runs atomic.Int32
	if _, err := g.Do(bg, "k", []byte("a"), counted(&runs, "A")); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Get(bg, "k")
	_, err := g.Do(bg, "k", []byte("b"), counted(&runs, "B"))
	if !errors.Is(err, idempotency.ErrKeyReused) {
		t.Fatalf("Do with another fingerprint = %v; want ErrKeyReused", err)
	}
	after, _ := s.Get(bg, "k")
	if runs.Load() != 1 || string(after.Result.Value) != "A" || after.Token != before.Token {
		t.Fatalf("runs %d, record %+v; want fn run once and the record unchanged", runs.Load(), after)
	}
	if st := g.Stats(); st.Reused != 1 {
		t.Fatalf("Stats = %+v; want 1 reused", st)
	}
}

func TestDoKeyReusedWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(nil)
		release := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := g.Do(bg, "k", []byte("a"), func(context.Context) ([]byte, error) {
				<-release
				return []byte("A"), nil
			})
			done <- err
		}()
		synctest.Wait()
		var runs atomic.Int32
		if _, err := g.Do(bg, "k", []byte("b"), counted(&runs, "B")); !errors.Is(err, idempotency.ErrKeyReused) || runs.Load() != 0 {
			t.Fatalf("Do with another fingerprint while running = %v (runs %d); want ErrKeyReused", err, runs.Load())
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestDoConcurrentCallsRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100
		g := idempotency.New(nil)
		var runs atomic.Int32
		release := make(chan struct{})
		fn := func(context.Context) ([]byte, error) {
			runs.Add(1)
			<-release
			return []byte("shared"), nil
		}
		results := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				v, err := g.Do(bg, "hot", []byte("fp"), fn)
				if err != nil {
					results <- "error: " + err.Error()
					return
				}
				results <- string(v)
			})
		}
		synctest.Wait() // all 100 are blocked: one in fn, the rest waiting
		close(release)
		wg.Wait()
		close(results)
		for r := range results {
			if r != "shared" {
				t.Fatalf("a caller got %q; want shared", r)
			}
		}
		if got := runs.Load(); got != 1 {
			t.Fatalf("fn ran %d times; want 1", got)
		}
		if st := g.Stats(); st.Executed != 1 || st.Replayed != n-1 || st.Waited != n-1 {
			t.Fatalf("Stats = %+v; want 1 executed, %d waited and replayed", st, n-1)
		}
	})
}

func TestDoFailFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(nil, idempotency.WithFailFast())
		release := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := g.Do(bg, "hot", nil, func(context.Context) ([]byte, error) {
				<-release
				return nil, nil
			})
			done <- err
		}()
		synctest.Wait()
		var wg sync.WaitGroup
		var inProgress atomic.Int32
		for range 99 {
			wg.Go(func() {
				if _, err := g.Do(bg, "hot", nil, func(context.Context) ([]byte, error) {
					t.Error("fn ran while the key was in progress")
					return nil, nil
				}); errors.Is(err, idempotency.ErrInProgress) {
					inProgress.Add(1)
				}
			})
		}
		wg.Wait()
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := inProgress.Load(); got != 99 {
			t.Fatalf("%d callers got ErrInProgress; want 99", got)
		}
		if st := g.Stats(); st.InProgress != 99 || st.Executed != 1 {
			t.Fatalf("Stats = %+v; want 99 in progress", st)
		}
	})
}

// otherProcess claims key in s directly, as a Guard in another process would.
func otherProcess(t *testing.T, s idempotency.Store, key string, fp []byte, lease time.Duration) idempotency.Record {
	t.Helper()
	rec, ok, err := s.Claim(bg, key, fp, lease)
	if err != nil || !ok {
		t.Fatalf("other process Claim = %v, %v", ok, err)
	}
	return rec
}

func TestDoInProgressElsewhere(t *testing.T) {
	g, s, clk := fakeEnv()
	other := otherProcess(t, s, "k", []byte("fp"), idempotency.DefaultLease)
	var runs atomic.Int32
	if _, err := g.Do(bg, "k", []byte("fp"), counted(&runs, "v")); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("Do while another process holds the key = %v; want ErrInProgress", err)
	}
	// The other process dies: once its lease lapses, a retry runs.
	clk.Advance(idempotency.DefaultLease)
	if v, err := g.Do(bg, "k", []byte("fp"), counted(&runs, "v")); err != nil || string(v) != "v" {
		t.Fatalf("Do after the lease lapsed = %q, %v", v, err)
	}
	// The dead holder's late completion is fenced off.
	err := s.Complete(bg, "k", other.Token, idempotency.Result{Value: []byte("stale")}, time.Hour)
	if !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("stale Complete = %v; want ErrLeaseLost", err)
	}
	if rec, _ := s.Get(bg, "k"); string(rec.Result.Value) != "v" || runs.Load() != 1 {
		t.Fatalf("record %+v, runs %d", rec, runs.Load())
	}
}

func TestDoWaitsForOtherProcess(t *testing.T) {
	g, s, clk := fakeEnv(idempotency.WithWait(time.Minute), idempotency.WithPollInterval(time.Second, 4*time.Second))
	other := otherProcess(t, s, "k", []byte("fp"), time.Hour)
	type result struct {
		v   []byte
		err error
	}
	done := make(chan result, 1)
	var runs atomic.Int32
	go func() {
		v, err := g.Do(bg, "k", []byte("fp"), counted(&runs, "mine"))
		done <- result{v, err}
	}()
	for range 3 { // a few polls find it still running
		if err := clk.BlockUntil(bg, 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(4 * time.Second)
	}
	if err := clk.BlockUntil(bg, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(bg, "k", other.Token, idempotency.Result{Value: []byte("theirs")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Second)
	r := <-done
	if r.err != nil || string(r.v) != "theirs" || runs.Load() != 0 {
		t.Fatalf("waiting Do = %q, %v (runs %d); want the other process's result", r.v, r.err, runs.Load())
	}
}

func TestDoWaitGivesUp(t *testing.T) {
	g, s, clk := fakeEnv(idempotency.WithWait(10*time.Second), idempotency.WithPollInterval(time.Second, 2*time.Second))
	otherProcess(t, s, "k", nil, time.Hour)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(bg)
	go func() {
		_, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return nil, nil })
		done <- err
		cancel()
	}()
	polls := 0
	for clk.BlockUntil(ctx, 1) == nil { // Do is sleeping between polls
		clk.Advance(2 * time.Second)
		polls++
	}
	if err := <-done; !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("Do after waiting = %v; want ErrInProgress", err)
	}
	if waited := clk.Since(clocktest.Epoch); waited < 10*time.Second || waited > 12*time.Second || polls < 5 {
		t.Fatalf("gave up after %v and %d polls; want about 10s and at least 5 polls", waited, polls)
	}
}

func TestDoWaitHonoursContext(t *testing.T) {
	g, s, clk := fakeEnv(idempotency.WithWait(time.Hour))
	otherProcess(t, s, "k", nil, time.Hour)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		_, err := g.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return nil, nil })
		done <- err
	}()
	if err := clk.BlockUntil(bg, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v; want context.Canceled", err)
	}
	if clk.Waiters() != 0 {
		t.Fatal("poll timer left pending")
	}
}

func TestDoErrorsNotRecorded(t *testing.T) {
	g, s, _ := fakeEnv()
	boom := errors.New("boom")
	var runs atomic.Int32
	fail := func(context.Context) ([]byte, error) { runs.Add(1); return nil, boom }
	if _, err := g.Do(bg, "k", nil, fail); !errors.Is(err, boom) {
		t.Fatalf("Do = %v; want boom", err)
	}
	if _, err := s.Get(bg, "k"); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("failed call left a record: %v", err)
	}
	if v, err := g.Do(bg, "k", nil, counted(&runs, "ok")); err != nil || string(v) != "ok" || runs.Load() != 2 {
		t.Fatalf("retry = %q, %v (runs %d); want fn run again", v, err, runs.Load())
	}
}

var errDeclined = errors.New("card declined")

func TestDoRecordsFinalErrors(t *testing.T) {
	isFinal := func(err error) bool { return errors.Is(err, errDeclined) }
	g, _, _ := fakeEnv(idempotency.WithRecordErrors(isFinal))
	var runs atomic.Int32
	declined := func(context.Context) ([]byte, error) {
		runs.Add(1)
		return nil, fmt.Errorf("charge: %w", errDeclined)
	}
	if _, err := g.Do(bg, "final", nil, declined); !errors.Is(err, errDeclined) {
		t.Fatalf("first Do = %v; want the original error", err)
	}
	_, err := g.Do(bg, "final", nil, declined)
	var rec *idempotency.RecordedError
	if !errors.As(err, &rec) || rec.Message != "charge: card declined" || runs.Load() != 1 {
		t.Fatalf("replay = %v (runs %d); want RecordedError with the original text", err, runs.Load())
	}

	transient := errors.New("timeout")
	for range 2 {
		if _, err := g.Do(bg, "transient", nil, func(context.Context) ([]byte, error) {
			runs.Add(1)
			return nil, transient
		}); !errors.Is(err, transient) {
			t.Fatalf("Do = %v; want timeout", err)
		}
	}
	if runs.Load() != 3 {
		t.Fatalf("runs = %d; want a non-final error to run again", runs.Load())
	}
}

func TestDoTTLExpiry(t *testing.T) {
	g, _, clk := fakeEnv(idempotency.WithTTL(time.Hour))
	var runs atomic.Int32
	g.Do(bg, "k", nil, counted(&runs, "v"))
	clk.Advance(time.Hour - time.Nanosecond)
	g.Do(bg, "k", nil, counted(&runs, "v"))
	if runs.Load() != 1 {
		t.Fatalf("runs = %d before the TTL; want 1", runs.Load())
	}
	clk.Advance(time.Nanosecond)
	// Past the TTL the key is new again, even with another fingerprint.
	if v, err := g.Do(bg, "k", []byte("other"), counted(&runs, "w")); err != nil || string(v) != "w" || runs.Load() != 2 {
		t.Fatalf("Do after TTL = %q, %v (runs %d)", v, err, runs.Load())
	}
}

func TestDoRenewsLeaseWhileRunning(t *testing.T) {
	const lease = 3 * time.Second
	g, s, clk := fakeEnv(idempotency.WithLease(lease))
	other := idempotency.New(s, idempotency.WithClock(clk))
	started, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	var runs atomic.Int32
	go func() {
		_, err := g.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
			runs.Add(1)
			close(started)
			<-proceed
			return []byte("v"), ctx.Err()
		})
		done <- err
	}()
	<-started
	for range 10 { // run for 10 s, over three leases
		if err := clk.BlockUntil(bg, 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(lease / 3)
	}
	if err := clk.BlockUntil(bg, 1); err != nil { // the last renewal is done
		t.Fatal(err)
	}
	if _, err := other.Do(bg, "k", nil, counted(&runs, "dup")); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("Do elsewhere during a renewed claim = %v; want ErrInProgress", err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatalf("long Do = %v", err)
	}
	if runs.Load() != 1 {
		t.Fatalf("runs = %d; want 1", runs.Load())
	}
	if clk.Waiters() != 0 {
		t.Fatalf("%d timers pending after Do returned; want renewal stopped", clk.Waiters())
	}
}

func TestDoLeaseLostIsFenced(t *testing.T) {
	const lease = 3 * time.Second
	g, s, clk := fakeEnv(idempotency.WithLease(lease))
	other := idempotency.New(s, idempotency.WithClock(clk), idempotency.WithLease(lease))
	var v []byte
	var err error
	var token uint64
	var cause error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, err = g.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
			token, _ = idempotency.Token(ctx)
			// The process stalls for a whole lease: its renewal comes too late.
			clk.Advance(lease)
			<-ctx.Done()
			cause = context.Cause(ctx)
			// Meanwhile a retry elsewhere claims the key and completes.
			if got, err := other.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
				if t2, _ := idempotency.Token(ctx); t2 == token {
					return nil, errors.New("new claim reused the old token")
				}
				return []byte("new"), nil
			}); err != nil || string(got) != "new" {
				return nil, fmt.Errorf("retry elsewhere = %q, %v", got, err)
			}
			return []byte("stale"), nil
		})
	}()
	<-done
	if !errors.Is(cause, idempotency.ErrLeaseLost) {
		t.Fatalf("fn's ctx cause = %v; want ErrLeaseLost", cause)
	}
	if !errors.Is(err, idempotency.ErrLeaseLost) || string(v) != "stale" {
		t.Fatalf("stale holder's Do = %q, %v; want its result and ErrLeaseLost", v, err)
	}
	if rec, _ := s.Get(bg, "k"); string(rec.Result.Value) != "new" {
		t.Fatalf("record = %+v; the stale holder overwrote the newer claim", rec)
	}
	if st := g.Stats(); st.NotRecorded != 1 {
		t.Fatalf("Stats = %+v; want 1 not recorded", st)
	}
}

func TestDoPanicReleasesKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(nil)
		entered := make(chan struct{})
		release := make(chan struct{})
		panicked := make(chan any, 1)
		go func() {
			defer func() { panicked <- recover() }()
			g.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
				close(entered)
				<-release
				panic("kaboom")
			})
		}()
		<-entered
		waiter := make(chan string, 1)
		go func() {
			v, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("after"), nil })
			if err != nil {
				waiter <- err.Error()
				return
			}
			waiter <- string(v)
		}()
		synctest.Wait()
		close(release)
		if p := <-panicked; p != "kaboom" {
			t.Fatalf("leader recovered %v; want the panic to continue", p)
		}
		if got := <-waiter; got != "after" {
			t.Fatalf("waiter got %q; want it to run fn itself", got)
		}
	})
}

func TestDoLeaderCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(nil)
		ctx, cancel := context.WithCancel(bg)
		leader := make(chan error, 1)
		go func() {
			_, err := g.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})
			leader <- err
		}()
		synctest.Wait()
		waiter := make(chan string, 1)
		go func() {
			v, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("waiter ran"), nil })
			waiter <- fmt.Sprintf("%s %v", v, err)
		}()
		synctest.Wait()
		cancel()
		if err := <-leader; !errors.Is(err, context.Canceled) {
			t.Fatalf("leader = %v; want context.Canceled", err)
		}
		if got := <-waiter; got != "waiter ran <nil>" {
			t.Fatalf("waiter = %q; want it to run fn after the leader gave up", got)
		}
	})
}

func TestDoWaiterCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(nil)
		release := make(chan struct{})
		leader := make(chan string, 1)
		go func() {
			v, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
				<-release
				return []byte("done"), nil
			})
			leader <- fmt.Sprintf("%s %v", v, err)
		}()
		synctest.Wait()
		ctx, cancel := context.WithCancel(bg)
		waiter := make(chan error, 1)
		go func() {
			_, err := g.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return nil, nil })
			waiter <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-waiter; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiter = %v; want context.Canceled", err)
		}
		close(release)
		if got := <-leader; got != "done <nil>" {
			t.Fatalf("leader = %q; want it unaffected", got)
		}
	})
}

// faultyStore fails chosen methods of a MemoryStore.
type faultyStore struct {
	*idempotency.MemoryStore
	claimErr, completeErr error
}

func (f *faultyStore) Claim(ctx context.Context, key string, fp []byte, lease time.Duration) (idempotency.Record, bool, error) {
	if f.claimErr != nil {
		return idempotency.Record{}, false, f.claimErr
	}
	return f.MemoryStore.Claim(ctx, key, fp, lease)
}

func (f *faultyStore) Complete(ctx context.Context, key string, token uint64, res idempotency.Result, ttl time.Duration) error {
	if f.completeErr != nil {
		return f.completeErr
	}
	return f.MemoryStore.Complete(ctx, key, token, res, ttl)
}

func TestDoStoreFailures(t *testing.T) {
	down := errors.New("store down")
	var runs atomic.Int32
	g := idempotency.New(&faultyStore{MemoryStore: idempotency.NewMemoryStore(), claimErr: down})
	if _, err := g.Do(bg, "k", nil, counted(&runs, "v")); !errors.Is(err, down) || runs.Load() != 0 {
		t.Fatalf("Do with a failing Claim = %v (runs %d); want the store error and fn not run", err, runs.Load())
	}
	g = idempotency.New(&faultyStore{MemoryStore: idempotency.NewMemoryStore(), completeErr: down})
	v, err := g.Do(bg, "k", nil, counted(&runs, "v"))
	if !errors.Is(err, down) || string(v) != "v" {
		t.Fatalf("Do with a failing Complete = %q, %v; want the result and the store error", v, err)
	}
}

func TestDoInvalidArguments(t *testing.T) {
	g := idempotency.New(nil)
	if _, err := g.Do(bg, "", nil, func(context.Context) ([]byte, error) { return nil, nil }); !errors.Is(err, idempotency.ErrInvalidKey) {
		t.Fatalf("empty key = %v; want ErrInvalidKey", err)
	}
	if _, err := g.Do(bg, "k", nil, nil); err == nil || !strings.Contains(err.Error(), "nil function") {
		t.Fatalf("nil fn = %v", err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	var runs atomic.Int32
	if _, err := g.Do(ctx, "k", nil, counted(&runs, "v")); !errors.Is(err, context.Canceled) || runs.Load() != 0 {
		t.Fatalf("cancelled ctx = %v (runs %d)", err, runs.Load())
	}
	if _, err := g.Store().Get(bg, "k"); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("cancelled call left a record: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	a := idempotency.Fingerprint([]byte("ab"), []byte("c"))
	b := idempotency.Fingerprint([]byte("a"), []byte("bc"))
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("Fingerprint(ab,c) = %x, Fingerprint(a,bc) = %x; want distinct SHA-256 digests", a, b)
	}
	if !bytes.Equal(a, idempotency.Fingerprint([]byte("ab"), []byte("c"))) {
		t.Fatal("Fingerprint is not deterministic")
	}
}

// Many callers here, one holder elsewhere: each caller must find out that
// the holder is not here (a grace period over the Claims in flight here)
// and fail fast, never wait for a holder that is not here.
func TestDoManyLocalCallersRemoteHolder(t *testing.T) {
	s := idempotency.NewMemoryStore()
	g := idempotency.New(s)
	otherProcess(t, s, "k", []byte("fp"), time.Hour)
	var wg sync.WaitGroup
	var inProgress atomic.Int32
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			for i := range 20 {
				key := "k"
				if i%2 == 1 {
					key = fmt.Sprint("free-", i) // traffic on other keys of the same shards
				}
				_, err := g.Do(bg, key, []byte("fp"), func(context.Context) ([]byte, error) { return nil, nil })
				if key == "k" && errors.Is(err, idempotency.ErrInProgress) {
					inProgress.Add(1)
				} else if key == "k" || err != nil {
					t.Errorf("Do(%q) = %v", key, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if got := inProgress.Load(); got != 50*10 {
		t.Fatalf("%d calls got ErrInProgress; want 500", got)
	}
}

func TestZeroValues(t *testing.T) {
	var g idempotency.Guard
	var runs atomic.Int32
	for range 2 {
		if v, err := g.Do(bg, "k", nil, counted(&runs, "v")); err != nil || string(v) != "v" {
			t.Fatalf("zero Guard Do = %q, %v", v, err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("zero Guard ran fn %d times; want 1", runs.Load())
	}
	var s idempotency.MemoryStore
	if _, err := s.Get(bg, "k"); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("zero MemoryStore Get = %v", err)
	}
	if _, ok, err := s.Claim(bg, "k", nil, time.Minute); err != nil || !ok {
		t.Fatalf("zero MemoryStore Claim = %v, %v", ok, err)
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

// releaseFails is a store whose Release fails.
type releaseFails struct{ *idempotency.MemoryStore }

func (releaseFails) Release(context.Context, string, uint64) error { return errors.New("store down") }

func TestDoLogsFailedRelease(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	g := idempotency.New(releaseFails{idempotency.NewMemoryStore()}, idempotency.WithLogger(logger))
	boom := errors.New("boom")
	if _, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Do = %v; want fn's error, not the release failure", err)
	}
	if out := buf.String(); !strings.Contains(out, "release failed") || !strings.Contains(out, "key=k") {
		t.Fatalf("log = %q; want a warning naming the key", out)
	}
	// Silent by default.
	g = idempotency.New(releaseFails{idempotency.NewMemoryStore()})
	g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return nil, boom })
}

// TestScopedKey: equal keys of different scopes are different records,
// and no (scope, key) pair collides with another.
func TestScopedKey(t *testing.T) {
	ctx := context.Background()
	g := idempotency.New(nil)
	runs := 0
	fn := func(context.Context) ([]byte, error) { runs++; return []byte("ok"), nil }
	for _, scope := range []string{"alice", "bob", "alice"} {
		if _, err := g.Do(ctx, idempotency.ScopedKey(scope, "pay-42"), []byte("fp"), fn); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 2 {
		t.Fatalf("ran %d times; want once per scope", runs)
	}
	if idempotency.ScopedKey("a", "b\nc") == idempotency.ScopedKey("a\nb", "c") {
		t.Fatal("ScopedKey collides")
	}
	if got := idempotency.ScopedKey("", "k"); got != "k" {
		t.Fatalf("ScopedKey(\"\", k) = %q", got)
	}
}
