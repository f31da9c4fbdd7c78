package quorum_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

func TestMaxHintsDropsBeyondBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(3)
		co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.MaxHints = 2 })
		c.reps["n0"].setDown(true)
		for i := range 5 {
			if _, err := co.Put(bg, fmt.Sprintf("k%d", i), "v", clock.Vector{}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait() // replication beyond W has settled
		s := co.Stats()
		if s.HintsPending != 2 || s.HintsDropped != 3 {
			t.Fatalf("pending %d dropped %d, want 2 and 3", s.HintsPending, s.HintsDropped)
		}
		// Dropped hints are what anti-entropy is for.
		c.reps["n0"].setDown(false)
		if _, err := co.AntiEntropy(bg); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if got := c.stored(t, "n0", fmt.Sprintf("k%d", i)); !slices.Equal(got, []string{"v"}) {
				t.Fatalf("k%d on n0 = %v after anti-entropy", i, got)
			}
		}
	})
}

func TestAntiEntropyRunsInBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(3)
		co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.AntiEntropyInterval = time.Minute })
		if _, err := c.reps["n1"].MemReplica.Update(bg, "k", quorum.Write[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := co.Stats().AntiEntropyRounds; got != 0 {
			t.Fatalf("%d rounds before the first interval", got)
		}
		c.clk.Advance(time.Minute)
		synctest.Wait() // the pass has run and the loops wait again
		if got := co.Stats().AntiEntropyRounds; got != 1 {
			t.Fatalf("%d rounds after one interval, want 1", got)
		}
		for _, n := range c.nodes {
			if got := c.stored(t, n, "k"); !slices.Equal(got, []string{"v"}) {
				t.Fatalf("%s holds %v", n, got)
			}
		}
	})
}

func TestReplicaLookupErrorCountsAsFailure(t *testing.T) {
	c := newCluster(3)
	boom := errors.New("no route")
	co := c.coordinator(t, func(cfg *quorum.Config[string]) {
		cfg.Strict = true
		cfg.Replica = func(n string) (quorum.Replica[string], error) {
			if n != "n0" {
				return nil, boom
			}
			return c.reps[n], nil
		}
	})
	_, err := co.Put(bg, "k", "v", clock.Vector{})
	if !errors.Is(err, quorum.ErrNoQuorum) || !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if _, err := co.Put(bg, "k", "v", clock.Vector{}, quorum.WithLevel(quorum.One)); err != nil {
		t.Fatalf("ONE with one reachable replica: %v", err)
	}
}

func TestEmptyRing(t *testing.T) {
	c := newCluster(1)
	c.ring.Remove("n0")
	co := c.coordinator(t, nil)
	if _, err := co.Get(bg, "k"); !errors.Is(err, quorum.ErrNoNodes) {
		t.Fatalf("Get on empty ring: %v", err)
	}
	if _, err := co.Put(bg, "k", "v", clock.Vector{}); !errors.Is(err, quorum.ErrNoNodes) {
		t.Fatalf("Put on empty ring: %v", err)
	}
}

func TestCloseCancelsRequestsInFlight(t *testing.T) {
	c := newCluster(3)
	co := c.coordinator(t, nil)
	slow := make(chan struct{}) // never closed: only cancellation ends the calls
	for _, r := range c.reps {
		r.setSlow(slow)
	}
	done := make(chan error, 1)
	go func() { _, err := co.Get(bg, "k"); done <- err }()
	if err := c.clk.BlockUntil(bg, 2); err != nil { // hint loop + request timeout
		t.Fatal(err)
	}
	if err := co.Close(); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var qe *quorum.Error
	if !errors.As(err, &qe) || qe.Cause != quorum.ErrClosed {
		t.Fatalf("in-flight Get after Close: %v, want cause ErrClosed", err)
	}
	if err := co.Close(); err != nil { // twice is fine
		t.Fatal(err)
	}
	if _, err := co.Put(bg, "k", "v", clock.Vector{}); !errors.Is(err, quorum.ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}
