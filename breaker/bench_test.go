package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sony/gobreaker/v2"

	"github.com/distkit/distkit/breaker"
)

var sink int

//go:noinline
func work(context.Context) (int, error) { return 1, nil }

// BenchmarkExecuteClosed measures a successful call through a closed
// breaker, beside calling the function directly. bench/resilience runs it
// beside gobreaker and failsafe-go.
func BenchmarkExecuteClosed(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := work(ctx)
			sink += v
		}
	})
	b.Run("impl=breaker/window=fixed", func(b *testing.B) {
		cb := breaker.New[int]("bench", breaker.WithWindow(breaker.DefaultWindow, 1))
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(ctx, work)
			sink += v
		}
	})
	b.Run("impl=breaker/window=10buckets", func(b *testing.B) {
		cb := breaker.New[int]("bench")
		b.ReportAllocs()
		for b.Loop() {
			v, _ := cb.Execute(ctx, work)
			sink += v
		}
	})
	b.Run("impl=breaker.Group/keys=1", func(b *testing.B) {
		g := breaker.NewGroup[int]()
		b.ReportAllocs()
		for b.Loop() {
			v, _ := g.Execute(ctx, "host", work)
			sink += v
		}
	})
}

// BenchmarkExecuteOpen measures a call rejected by an open breaker.
func BenchmarkExecuteOpen(b *testing.B) {
	ctx := context.Background()
	fail := func(context.Context) (int, error) { return 0, errors.New("down") }
	b.Run("impl=gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench",
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 }})
		cb.Execute(func() (int, error) { return fail(ctx) })
		b.ReportAllocs()
		for b.Loop() {
			cb.Execute(func() (int, error) { return work(ctx) })
		}
	})
	b.Run("impl=breaker", func(b *testing.B) {
		cb := breaker.New[int]("bench", breaker.WithConsecutiveFailures(1))
		cb.Execute(ctx, fail)
		b.ReportAllocs()
		for b.Loop() {
			cb.Execute(ctx, work)
		}
	})
}

// BenchmarkGroupParallel measures Group.Execute from all CPUs over a set of
// keys, the pattern of a per-host transport under load.
func BenchmarkGroupParallel(b *testing.B) {
	ctx := context.Background()
	for _, keys := range []int{1, 64} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			g := breaker.NewGroup[int]()
			names := make([]string, keys)
			for i := range names {
				names[i] = fmt.Sprintf("host-%d", i)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					g.Execute(ctx, names[i%keys], work)
					i++
				}
			})
		})
	}
}
