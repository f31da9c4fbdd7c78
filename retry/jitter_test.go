package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"pgregory.net/rapid"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/retry"
)

func expCap(base, maxd time.Duration, n int) time.Duration {
	c := base
	for range n {
		if c > maxd/2 {
			return maxd
		}
		c *= 2
	}
	return min(c, maxd)
}

func durations(t *rapid.T) (base, maxd time.Duration) {
	base = time.Duration(rapid.Int64Range(1, int64(time.Hour)).Draw(t, "base"))
	maxd = time.Duration(rapid.Int64Range(int64(base), 1<<62).Draw(t, "max"))
	return base, maxd
}

func TestFullJitterBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base, maxd := durations(t)
		j := &retry.FullJitter{Base: base, Max: maxd}
		for n := range rapid.IntRange(1, 100).Draw(t, "steps") {
			d := j.NextBackOff()
			if hi := expCap(base, maxd, n); d < 0 || d > hi {
				t.Fatalf("step %d: %v outside [0, %v]", n, d, hi)
			}
		}
	})
}

func TestEqualJitterBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base, maxd := durations(t)
		j := &retry.EqualJitter{Base: base, Max: maxd}
		for n := range rapid.IntRange(1, 100).Draw(t, "steps") {
			d := j.NextBackOff()
			hi := expCap(base, maxd, n)
			if d < hi-hi/2 || d > hi {
				t.Fatalf("step %d: %v outside [%v, %v]", n, d, hi-hi/2, hi)
			}
		}
	})
}

func TestDecorrelatedJitterBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base, maxd := durations(t)
		j := &retry.DecorrelatedJitter{Base: base, Max: maxd}
		prev := base
		for n := range rapid.IntRange(1, 100).Draw(t, "steps") {
			d := j.NextBackOff()
			hi := maxd
			if prev <= maxd/3 {
				hi = 3 * prev
			}
			if d < base || d > hi {
				t.Fatalf("step %d: %v outside [%v, %v]", n, d, base, hi)
			}
			prev = d
		}
	})
}

func TestJitterZeroValueDefaults(t *testing.T) {
	for _, b := range []backoff.BackOff{&retry.FullJitter{}, &retry.EqualJitter{}, &retry.DecorrelatedJitter{}} {
		for range 200 {
			if d := b.NextBackOff(); d < 0 || d > retry.DefaultMaxDelay {
				t.Fatalf("%T: %v outside [0, %v]", b, d, retry.DefaultMaxDelay)
			}
		}
		b.Reset()
		// The first step is at most the base, or 3·base for decorrelated jitter.
		if d := b.NextBackOff(); d > 3*retry.DefaultBaseDelay {
			t.Fatalf("%T after Reset: first delay %v > 3·base", b, d)
		}
	}
}

// TestFullJitterSpread checks the first step is spread over its whole range,
// not clustered: each quarter of [0, base] gets a fair share of draws.
func TestFullJitterSpread(t *testing.T) {
	const n = 4000
	var quarters [4]int
	for range n {
		j := &retry.FullJitter{Base: 400, Max: 1000}
		d := j.NextBackOff()
		quarters[min(d/100, 3)]++
	}
	for i, c := range quarters {
		if c < n/4*8/10 || c > n/4*12/10 {
			t.Fatalf("quarter %d got %d of %d draws: %v", i, c, n, quarters)
		}
	}
}

// TestAttemptsNeverExceedMax is the property "attempts never exceed max":
// whatever the failure pattern, op runs at most max times, and the result is
// success exactly when some allowed attempt succeeded.
func TestAttemptsNeverExceedMax(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxAttempts := rapid.IntRange(1, 20).Draw(t, "max")
		outcomes := rapid.SliceOfN(rapid.IntRange(0, 3), 1, 30).Draw(t, "outcomes")
		calls := 0
		err := retry.Do(context.Background(), func(context.Context) error {
			calls++
			if calls > len(outcomes) {
				return errBoom
			}
			switch outcomes[calls-1] {
			case 0:
				return nil
			case 1:
				return retry.Permanent(errBoom)
			default:
				return errBoom
			}
		}, zero(), retry.WithMaxAttempts(maxAttempts))
		if calls > maxAttempts {
			t.Fatalf("%d calls with max %d", calls, maxAttempts)
		}
		want := -1 // index of the outcome that ends the call
		for i := 0; i < maxAttempts; i++ {
			if i >= len(outcomes) || outcomes[i] > 1 {
				continue
			}
			want = i
			break
		}
		switch {
		case want == -1:
			if calls != maxAttempts || !errors.Is(err, retry.ErrExhausted) {
				t.Fatalf("calls = %d, err = %v; want %d and ErrExhausted", calls, err, maxAttempts)
			}
		case outcomes[want] == 0:
			if calls != want+1 || err != nil {
				t.Fatalf("calls = %d, err = %v; want %d and success", calls, err, want+1)
			}
		default:
			if calls != want+1 || !errors.Is(err, retry.ErrPermanent) {
				t.Fatalf("calls = %d, err = %v; want %d and ErrPermanent", calls, err, want+1)
			}
		}
	})
}

// TestDoDelaysWithinPolicy is the property "every wait Do makes is within
// the policy's bounds": for random mixes of plain failures and
// server-requested delays, each wait is a full-jitter step (counted from the
// last server-requested delay, which restarts the sequence) or exactly the
// requested delay clamped to [0, max retry-after].
func TestDoDelaysWithinPolicy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := time.Duration(rapid.Int64Range(1, int64(time.Second)).Draw(t, "base"))
		maxd := time.Duration(rapid.Int64Range(int64(base), int64(time.Minute)).Draw(t, "max"))
		capRA := time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "maxRetryAfter"))
		n := rapid.IntRange(1, 15).Draw(t, "failures")
		asks := rapid.SliceOfN(rapid.Int64Range(-int64(time.Second), int64(2*time.Minute)), n, n).Draw(t, "asks")
		useAsk := rapid.SliceOfN(rapid.Bool(), n, n).Draw(t, "useAsk")

		fc := clocktest.NewFake(time.Time{})
		stop := drive(fc, time.Hour)
		defer stop()
		var got []retry.Attempt
		calls := 0
		err := retry.Do(context.Background(), func(context.Context) error {
			calls++
			if calls > n {
				return nil
			}
			if useAsk[calls-1] {
				return retry.RetryAfter(time.Duration(asks[calls-1]), errBoom)
			}
			return errBoom
		}, retry.WithClock(fc), retry.WithMaxAttempts(n+1), retry.WithMaxElapsed(0),
			retry.WithBackOff(&retry.FullJitter{Base: base, Max: maxd}), retry.WithMaxRetryAfter(capRA),
			retry.WithOnRetry(func(_ context.Context, a retry.Attempt) { got = append(got, a) }))
		if err != nil || len(got) != n {
			t.Fatalf("err %v, %d waits; want success after %d waits", err, len(got), n)
		}
		step := 0
		for i, a := range got {
			if useAsk[i] {
				want := min(max(time.Duration(asks[i]), 0), capRA)
				if a.Delay != want {
					t.Fatalf("wait %d: %v, want the requested %v clamped to %v", i, a.Delay, want, capRA)
				}
				step = 0
				continue
			}
			if hi := expCap(base, maxd, step); a.Delay < 0 || a.Delay > hi {
				t.Fatalf("wait %d (step %d): %v outside [0, %v]", i, step, a.Delay, hi)
			}
			step++
		}
	})
}
