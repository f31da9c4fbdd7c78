package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// fakeKV is an in-memory store whose requests take fixed (fake) time.
type fakeKV struct {
	setDelay, getDelay time.Duration
	failOddGets        bool // GET of an odd key index fails with errOdd
	hang               bool // requests block until their context ends

	mu   sync.Mutex
	data map[string]int // key -> number of SETs
}

var errOdd = errors.New("odd key")

func newFakeKV() *fakeKV { return &fakeKV{data: map[string]int{}} }

func (f *fakeKV) wait(ctx context.Context, d time.Duration) error {
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeKV) Set(ctx context.Context, key, _ []byte) error {
	if err := f.wait(ctx, f.setDelay); err != nil {
		return err
	}
	f.mu.Lock()
	f.data[string(key)]++
	f.mu.Unlock()
	return nil
}

func (f *fakeKV) Get(ctx context.Context, key []byte) (bool, error) {
	if err := f.wait(ctx, f.getDelay); err != nil {
		return false, err
	}
	if f.failOddGets && (key[KeySize-1]-'0')%2 == 1 {
		return false, errOdd
	}
	f.mu.Lock()
	_, ok := f.data[string(key)]
	f.mu.Unlock()
	return ok, nil
}

func clientsOf(f *fakeKV, n int) []Client {
	cs := make([]Client, n)
	for i := range cs {
		cs[i] = f
	}
	return cs
}

func TestRunCountsOnlyTheMeasuredWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		kv.setDelay = time.Millisecond
		cfg := Config{
			Workload:  Workload{Mix: Mix{Set: 1}, Keys: 100, ValueSize: 16, Seed: 1},
			Warmup:    10 * time.Millisecond,
			Duration:  100 * time.Millisecond,
			OpTimeout: time.Second,
		}
		start := time.Now()
		res, err := Run(t.Context(), cfg, clientsOf(kv, 4))
		if err != nil {
			t.Fatal(err)
		}
		// Each client starts a 1 ms request at t = 0, 1, 2, ... ms; those
		// started at 10..109 ms are measured: 100 per client.
		if res.Sets != 400 || res.Gets != 0 || res.ErrorCount() != 0 {
			t.Errorf("sets %d gets %d errors %d, want 400 0 0", res.Sets, res.Gets, res.ErrorCount())
		}
		if res.Window != 100*time.Millisecond {
			t.Errorf("window %v, want 100ms", res.Window)
		}
		if got := res.Throughput(); got != 4000 {
			t.Errorf("throughput %v, want 4000", got)
		}
		for _, q := range []float64{0.5, 0.99, 0.999} {
			if got := res.Latency.Quantile(q); got != time.Millisecond {
				t.Errorf("p%v = %v, want 1ms", q*100, got)
			}
		}
		if got := time.Since(start); got != 110*time.Millisecond {
			t.Errorf("run took %v, want 110ms (warm-up + window)", got)
		}
		total := 0
		for _, n := range kv.data {
			total += n
		}
		if total != 4*110 {
			t.Errorf("store saw %d SETs, want %d (warm-up included)", total, 4*110)
		}
	})
}

func TestRunPreloadMissesAndErrorKinds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		kv.setDelay, kv.getDelay = time.Millisecond, 2*time.Millisecond
		kv.failOddGets = true
		cfg := Config{
			Workload:  Workload{Mix: Mix{Get: 1}, Keys: 20, ValueSize: 8, Seed: 5},
			Duration:  time.Second,
			OpTimeout: time.Second,
			Preload:   10, // keys 0..9 exist, 10..19 miss
			Classify: func(err error) string {
				if errors.Is(err, errOdd) {
					return "odd"
				}
				return "other"
			},
		}
		res, err := Run(t.Context(), cfg, clientsOf(kv, 3))
		if err != nil {
			t.Fatal(err)
		}
		if len(kv.data) != 10 {
			t.Fatalf("preload wrote %d keys, want 10", len(kv.data))
		}
		for k, n := range kv.data {
			if n != 1 {
				t.Errorf("preload wrote %s %d times, want once", k, n)
			}
		}
		// 3 clients x 500 requests of 2 ms; odd keys fail, even keys
		// 10..18 miss.
		total := res.Gets + res.ErrorCount()
		if total != 1500 || res.Sets != 0 {
			t.Fatalf("gets %d + errors %d = %d, sets %d; want 1500 requests, 0 sets", res.Gets, res.ErrorCount(), total, res.Sets)
		}
		if len(res.Errors) != 1 || res.Errors["odd"] == 0 || res.Errors["odd"] != res.ErrorCount() {
			t.Errorf("errors %v, want only kind odd", res.Errors)
		}
		if res.Misses == 0 || res.Misses >= res.Gets {
			t.Errorf("misses %d of %d gets, want some but not all", res.Misses, res.Gets)
		}
		// Uniform keys: about half fail, a quarter miss.
		if e := res.ErrorCount(); e < 600 || e > 900 {
			t.Errorf("%d errors of 1500, want about 750", e)
		}
		if res.Latency.Count() != res.Gets {
			t.Errorf("histogram holds %d, want %d (successes only)", res.Latency.Count(), res.Gets)
		}
		if got := res.ErrorKinds(); len(got) != 1 || got[0] != "odd" {
			t.Errorf("ErrorKinds = %v", got)
		}
	})
}

func TestRunStopsByItselfWhenTheServerHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		kv.hang = true
		cfg := Config{
			Workload:  Workload{Mix: Mix{Set: 1}, Keys: 10},
			Warmup:    time.Second,
			Duration:  2 * time.Second,
			OpTimeout: 500 * time.Millisecond,
		}
		start := time.Now()
		res, err := Run(t.Context(), cfg, clientsOf(kv, 2))
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > cfg.Warmup+cfg.Duration+cfg.OpTimeout {
			t.Errorf("run took %v, want at most %v", took, cfg.Warmup+cfg.Duration+cfg.OpTimeout)
		}
		// Requests start every 500 ms: at 1.0, 1.5, 2.0, 2.5 s in the window.
		if res.Ops() != 0 || res.Errors["timeout"] != 8 {
			t.Errorf("ops %d errors %v, want 0 ops and 8 timeouts", res.Ops(), res.Errors)
		}
	})
}

func TestRunCutShortByContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		kv.setDelay = 10 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), 305*time.Millisecond)
		defer cancel()
		res, err := Run(ctx, Config{
			Workload: Workload{Mix: Mix{Set: 1}, Keys: 10},
			Warmup:   100 * time.Millisecond, Duration: time.Hour, OpTimeout: time.Second,
		}, clientsOf(kv, 1))
		if err != nil {
			t.Fatal(err)
		}
		if res.Window != 205*time.Millisecond {
			t.Errorf("window %v, want 205ms", res.Window)
		}
		if res.Sets != 20 || res.Errors["timeout"] != 1 {
			t.Errorf("sets %d errors %v, want 20 and one timeout (the request in flight at the cut)", res.Sets, res.Errors)
		}
	})
}

func TestRunRejectsBadConfig(t *testing.T) {
	good := Config{Workload: Workload{Mix: Mix{Set: 1}, Keys: 10}, Duration: time.Second, OpTimeout: time.Second}
	kv := newFakeKV()
	tests := []struct {
		name    string
		mutate  func(*Config)
		clients int
	}{
		{"no clients", func(*Config) {}, 0},
		{"zero duration", func(c *Config) { c.Duration = 0 }, 1},
		{"zero timeout", func(c *Config) { c.OpTimeout = 0 }, 1},
		{"negative warmup", func(c *Config) { c.Warmup = -1 }, 1},
		{"bad mix", func(c *Config) { c.Workload.Mix = Mix{} }, 1},
		{"preload beyond keys", func(c *Config) { c.Preload = 11 }, 1},
	}
	for _, tt := range tests {
		cfg := good
		tt.mutate(&cfg)
		if _, err := Run(t.Context(), cfg, clientsOf(kv, tt.clients)); err == nil {
			t.Errorf("%s: Run returned no error", tt.name)
		}
	}
	if len(kv.data) != 0 {
		t.Errorf("rejected runs sent %d requests", len(kv.data))
	}
}

func TestRunPreloadErrorFailsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := newFakeKV()
		kv.hang = true
		_, err := Run(t.Context(), Config{
			Workload: Workload{Mix: Mix{Get: 1}, Keys: 10},
			Duration: time.Second, OpTimeout: 100 * time.Millisecond, Preload: 10,
		}, clientsOf(kv, 2))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want a preload timeout", err)
		}
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("wrapped: %w", context.Canceled), "canceled"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "conn-refused"},
		{syscall.ECONNRESET, "conn-reset"},
		{io.EOF, "conn-closed"},
		{timeoutErr{}, "timeout"},
		{errors.New("boom"), "other"},
	}
	for _, tt := range tests {
		if got := ClassifyError(tt.err); got != tt.want {
			t.Errorf("ClassifyError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
