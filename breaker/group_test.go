package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/breaker"
)

func TestGroupKeysIsolated(t *testing.T) {
	g := breaker.NewGroup[int](breaker.WithConsecutiveFailures(2))
	ctx := context.Background()
	g.Execute(ctx, "a", fail)
	g.Execute(ctx, "a", fail)
	if _, err := g.Execute(ctx, "a", ok); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("a: %v, want ErrOpen", err)
	}
	if v, err := g.Execute(ctx, "b", ok); v != 1 || err != nil {
		t.Fatalf("b: %d, %v; failures on a affected b", v, err)
	}
	if g.Breaker("a").State() != breaker.StateOpen || g.Breaker("b").State() != breaker.StateClosed {
		t.Fatal("wrong states")
	}
	st := g.Stats()
	if len(st) != 2 || st["a"].State != breaker.StateOpen || st["b"].Successes != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestGroupConcurrentFirstUse(t *testing.T) {
	g := breaker.NewGroup[int]()
	var wg sync.WaitGroup
	got := make([]*breaker.Breaker[int], 50)
	for i := range got {
		wg.Go(func() { got[i] = g.Breaker("k") })
	}
	wg.Wait()
	for _, b := range got {
		if b != got[0] {
			t.Fatal("concurrent first use created more than one breaker")
		}
	}
	if g.Len() != 1 {
		t.Fatalf("Len = %d, want 1", g.Len())
	}
}

func TestGroupBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := breaker.NewGroup[int](breaker.WithMaxKeys(3), breaker.WithConsecutiveFailures(1))
		ctx := context.Background()
		g.Execute(ctx, "open", fail) // oldest, but open: kept
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "b", ok)
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "c", ok)
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "b", ok) // b is now more recent than c
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "d", ok) // evicts c, the least recently used closed one
		if g.Len() != 3 {
			t.Fatalf("Len = %d, want 3", g.Len())
		}
		st := g.Stats()
		if _, ok := st["c"]; ok {
			t.Fatalf("c kept; keys %v", keys(st))
		}
		if st["open"].State != breaker.StateOpen || st["b"].Successes != 2 {
			t.Fatalf("Stats = %+v", st)
		}
		for i := range 100 {
			g.Execute(ctx, fmt.Sprint("k", i), ok)
			if g.Len() > 3 {
				t.Fatalf("Len = %d > 3", g.Len())
			}
		}
	})
}

func TestGroupIdleEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := breaker.NewGroup[int](breaker.WithIdleTTL(time.Minute), breaker.WithConsecutiveFailures(1),
			breaker.WithOpenTimeout(time.Hour))
		ctx := context.Background()
		g.Execute(ctx, "idle", ok)
		g.Execute(ctx, "open", fail)
		g.Execute(ctx, "busy", ok)
		for range 4 {
			time.Sleep(20 * time.Second)
			g.Execute(ctx, "busy", ok)
		}
		st := g.Stats()
		if _, kept := st["idle"]; kept || len(st) != 2 {
			t.Fatalf("after 80s idle: keys %v; want busy and open", keys(st))
		}
		if st["open"].State != breaker.StateOpen {
			t.Fatal("open breaker evicted")
		}
		// Once its open period is over, an idle open breaker goes too.
		time.Sleep(time.Hour)
		g.Execute(ctx, "busy", ok)
		if g.Len() != 1 {
			t.Fatalf("Len = %d after the open period; want only busy left", g.Len())
		}
	})
}

func keys(m map[string]breaker.Stats) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestGroupEvictsOpenBreakersOnlyWhenAllAreOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := breaker.NewGroup[int](breaker.WithMaxKeys(2), breaker.WithConsecutiveFailures(1))
		ctx := context.Background()
		g.Execute(ctx, "a", fail)
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "b", fail)
		time.Sleep(time.Millisecond)
		g.Execute(ctx, "c", ok)
		st := g.Stats()
		if _, kept := st["a"]; kept || len(st) != 2 {
			t.Fatalf("keys %v; want the least recently used open breaker evicted", keys(st))
		}
	})
}
