package resilience

import (
	"context"
	"errors"
	"testing"

	"github.com/cenkalti/backoff/v4"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/sony/gobreaker/v2"

	"github.com/distkit/distkit/breaker"
	"github.com/distkit/distkit/retry"
)

var sink int

//go:noinline
func work(context.Context) (int, error) { return 1, nil }

//go:noinline
func workErr(context.Context) error { return nil }

// BenchmarkRetryFirstTrySuccess: a call whose first attempt succeeds.
func BenchmarkRetryFirstTrySuccess(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := work(ctx)
			sink += v
		}
	})
	b.Run("impl=distkit/opts=0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := retry.DoValue(ctx, work)
			sink += v
		}
	})
	b.Run("impl=distkit/opts=2", func(b *testing.B) {
		bo := &retry.FullJitter{}
		b.ReportAllocs()
		for b.Loop() {
			v, _ := retry.DoValue(ctx, work, retry.WithMaxAttempts(3), retry.WithBackOff(bo))
			sink += v
		}
	})
	b.Run("impl=distkit-Do/opts=0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if retry.Do(ctx, workErr) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=backoff/policy=NewExponentialBackOff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := backoff.RetryWithData(func() (int, error) { return work(ctx) }, backoff.NewExponentialBackOff())
			sink += v
		}
	})
	b.Run("impl=backoff/policy=WithContext+WithMaxRetries", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bo := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(), 3), ctx)
			v, _ := backoff.RetryWithData(func() (int, error) { return work(ctx) }, bo)
			sink += v
		}
	})
	b.Run("impl=failsafe/executor=reused", func(b *testing.B) {
		ex := failsafe.With[int](retrypolicy.NewBuilder[int]().WithMaxAttempts(3).Build())
		b.ReportAllocs()
		for b.Loop() {
			v, _ := ex.Get(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
	b.Run("impl=failsafe/executor=WithContext", func(b *testing.B) {
		ex := failsafe.With[int](retrypolicy.NewBuilder[int]().WithMaxAttempts(3).Build())
		b.ReportAllocs()
		for b.Loop() {
			v, _ := ex.WithContext(ctx).Get(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
}

// BenchmarkBreakerClosed: a successful call through a closed breaker.
func BenchmarkBreakerClosed(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := work(ctx)
			sink += v
		}
	})
	b.Run("impl=gobreaker/window=fixed", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench", Interval: breaker.DefaultWindow})
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
	b.Run("impl=gobreaker/window=10buckets", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench",
			Interval: breaker.DefaultWindow, BucketPeriod: breaker.DefaultWindow / breaker.DefaultWindowBuckets})
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
	b.Run("impl=distkit/window=fixed", func(b *testing.B) {
		cb := breaker.New[int]("bench", breaker.WithWindow(breaker.DefaultWindow, 1))
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(ctx, work)
			sink += v
		}
	})
	b.Run("impl=distkit/window=10buckets", func(b *testing.B) {
		cb := breaker.New[int]("bench")
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(ctx, work)
			sink += v
		}
	})
	b.Run("impl=failsafe", func(b *testing.B) {
		ex := failsafe.With[int](circuitbreaker.NewBuilder[int]().WithFailureThreshold(5).Build())
		b.ReportAllocs()
		for b.Loop() {
			v, _ := ex.Get(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
}

// BenchmarkRetryAroundBreaker: both policies composed, first try succeeds.
func BenchmarkRetryAroundBreaker(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=distkit", func(b *testing.B) {
		cb := breaker.New[int]("bench")
		call := func(ctx context.Context) (int, error) { return cb.Execute(ctx, work) }
		b.ReportAllocs()
		for b.Loop() {
			v, _ := retry.DoValue(ctx, call, retry.WithMaxAttempts(3))
			sink += v
		}
	})
	b.Run("impl=failsafe", func(b *testing.B) {
		ex := failsafe.With[int](retrypolicy.NewBuilder[int]().WithMaxAttempts(3).Build(),
			circuitbreaker.NewBuilder[int]().WithFailureThreshold(5).Build())
		b.ReportAllocs()
		for b.Loop() {
			v, _ := ex.Get(func() (int, error) { return work(ctx) })
			sink += v
		}
	})
}

// TestPoliciesAgree is a sanity check that the benchmarked setups behave as
// labelled: each succeeds on the first try and reports a failure the same.
func TestPoliciesAgree(t *testing.T) {
	ctx := context.Background()
	errDown := errors.New("down")
	calls := 0
	fail := func(context.Context) (int, error) { calls++; return 0, errDown }
	if _, err := retry.DoValue(ctx, fail, retry.WithMaxAttempts(3), retry.WithBackOff(&backoff.ZeroBackOff{})); !errors.Is(err, errDown) || calls != 3 {
		t.Fatalf("distkit retry: %v after %d calls", err, calls)
	}
	calls = 0
	ex := failsafe.With[int](retrypolicy.NewBuilder[int]().WithMaxAttempts(3).Build())
	if _, err := ex.Get(func() (int, error) { return fail(ctx) }); !errors.Is(err, errDown) || calls != 3 {
		t.Fatalf("failsafe retry: %v after %d calls", err, calls)
	}
	cb := breaker.New[int]("t", breaker.WithConsecutiveFailures(1))
	cb.Execute(ctx, fail)
	if _, err := cb.Execute(ctx, work); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("distkit breaker: %v", err)
	}
	fcb := failsafe.With[int](circuitbreaker.NewBuilder[int]().WithFailureThreshold(1).Build())
	fcb.Get(func() (int, error) { return fail(ctx) })
	if _, err := fcb.Get(func() (int, error) { return work(ctx) }); !errors.Is(err, circuitbreaker.ErrOpen) {
		t.Fatalf("failsafe breaker: %v", err)
	}
}
