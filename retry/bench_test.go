package retry_test

import (
	"context"
	"testing"

	"github.com/distkit/distkit/retry"
)

var sink int

//go:noinline
func okOp(context.Context) error { return nil }

//go:noinline
func okValue(context.Context) (int, error) { return 1, nil }

// BenchmarkFirstTrySuccess measures the overhead of a call whose first
// attempt succeeds, beside calling the operation directly. bench/resilience
// runs it beside backoff/v4 and failsafe-go.
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
}
