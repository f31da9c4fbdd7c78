package clock_test

import (
	"sync"
	"testing"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

func TestLamportTickAndWitness(t *testing.T) {
	var l clock.Lamport
	if got := l.Now(); got != 0 {
		t.Fatalf("zero Lamport Now() = %d; want 0", got)
	}
	if got := l.Tick(); got != 1 {
		t.Fatalf("Tick() = %d; want 1", got)
	}
	tests := []struct {
		remote, want uint64
	}{
		{remote: 0, want: 2},   // behind: local+1
		{remote: 2, want: 3},   // equal: +1
		{remote: 10, want: 11}, // ahead: remote+1
		{remote: 5, want: 12},
	}
	for _, tt := range tests {
		if got := l.Witness(tt.remote); got != tt.want {
			t.Fatalf("Witness(%d) = %d; want %d", tt.remote, got, tt.want)
		}
	}
	if got := l.Now(); got != 12 {
		t.Fatalf("Now() = %d; want 12", got)
	}
}

func TestLamportConcurrentTicksAreDistinct(t *testing.T) {
	const goroutines, ticks = 8, 1000
	var l clock.Lamport
	var mu sync.Mutex
	seen := make(map[uint64]bool, goroutines*ticks)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			local := make([]uint64, 0, ticks)
			for k := range ticks {
				if k%7 == 0 {
					local = append(local, l.Witness(uint64(k)))
				} else {
					local = append(local, l.Tick())
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range local {
				if seen[v] {
					t.Errorf("value %d returned twice", v)
				}
				seen[v] = true
			}
		})
	}
	wg.Wait()
	if len(seen) != goroutines*ticks {
		t.Fatalf("%d distinct values; want %d", len(seen), goroutines*ticks)
	}
}

func TestLamportProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var l clock.Lamport
		prev := l.Now()
		for _, r := range rapid.SliceOf(rapid.Uint64Max(1<<62)).Draw(t, "remotes") {
			var got uint64
			if r%3 == 0 {
				got = l.Tick()
				if got <= prev {
					t.Fatalf("Tick() = %d after %d", got, prev)
				}
			} else {
				got = l.Witness(r)
				if got <= prev || got <= r {
					t.Fatalf("Witness(%d) = %d after %d", r, got, prev)
				}
			}
			prev = got
		}
	})
}
