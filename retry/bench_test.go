package retry_test

import (
	"context"
	"testing"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/retry"
)

var sink int

//go:noinline
func okOp(context.Context) error { return nil }

//go:noinline
func okValue(context.Context) (int, error) { return 1, nil }

// BenchmarkFirstTrySuccess measures the overhead of a call whose first
// attempt succeeds, beside calling the operation directly and calling
// backoff/v4's Retry functions.
func BenchmarkFirstTrySuccess(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if okOp(ctx) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=retry.Do/opts=0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if retry.Do(ctx, okOp) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=retry.Do/opts=2", func(b *testing.B) {
		b.ReportAllocs()
		bo := &retry.FullJitter{}
		for b.Loop() {
			if retry.Do(ctx, okOp, retry.WithMaxAttempts(3), retry.WithBackOff(bo)) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=retry.DoValue/opts=0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := retry.DoValue(ctx, okValue)
			sink += v
		}
	})
	b.Run("impl=backoff.Retry/policy=NewExponentialBackOff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if backoff.Retry(func() error { return okOp(ctx) }, backoff.NewExponentialBackOff()) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=backoff.Retry/policy=WithContext+WithMaxRetries", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bo := backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(), 3), ctx)
			if backoff.Retry(func() error { return okOp(ctx) }, bo) != nil {
				b.Fatal()
			}
		}
	})
	b.Run("impl=backoff.RetryWithData/policy=reused-ZeroBackOff", func(b *testing.B) {
		b.ReportAllocs()
		bo := &backoff.ZeroBackOff{}
		for b.Loop() {
			v, _ := backoff.RetryWithData(func() (int, error) { return okValue(ctx) }, bo)
			sink += v
		}
	})
}
