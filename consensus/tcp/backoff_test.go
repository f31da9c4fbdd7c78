package tcp

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
)

func TestBackoffBounds(t *testing.T) {
	p := &peer{t: &Transport{cfg: Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}}}
	tests := []struct {
		attempt int
		lo, hi  time.Duration // jitter picks from [lo, hi)
	}{
		{0, 5 * time.Millisecond, 10 * time.Millisecond},
		{1, 10 * time.Millisecond, 20 * time.Millisecond},
		{3, 40 * time.Millisecond, 80 * time.Millisecond},
		{4, 50 * time.Millisecond, 100 * time.Millisecond}, // capped
		{60, 50 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := p.backoff(tt.attempt)
				if d < tt.lo || d >= tt.hi {
					t.Fatalf("backoff(%d) = %v, want in [%v, %v)", tt.attempt, d, tt.lo, tt.hi)
				}
				seen[d] = true
			}
			if len(seen) < 10 {
				t.Fatalf("backoff(%d) has no jitter: %d distinct values", tt.attempt, len(seen))
			}
		})
	}
}

// Redials wait for the backoff timer: nothing happens until the clock moves.
func TestRedialWaitsForBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connections are refused
	clk := clocktest.NewFake(time.Unix(1000, 0))
	a, _ := newTransport(t, 1, func(c *Config) {
		c.Clock = clk
		c.MinBackoff = time.Second
		c.MaxBackoff = 8 * time.Second
	})
	a.AddPeer(2, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for attempt := 1; attempt <= 5; attempt++ {
		if err := clk.BlockUntil(ctx, 1); err != nil {
			t.Fatalf("no backoff timer after attempt %d", attempt)
		}
		if got := a.Stats().Peers[2].DialErrors; got != uint64(attempt) {
			t.Fatalf("attempt %d: %d dial errors before the backoff elapsed", attempt, got)
		}
		clk.Advance(8 * time.Second) // beyond any jittered delay
		waitFor(t, "next attempt", nil, func() bool { return a.Stats().Peers[2].DialErrors > uint64(attempt) })
	}
}
