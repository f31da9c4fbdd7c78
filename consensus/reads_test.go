package consensus_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func TestLeaseReadsAndStaleReads(t *testing.T) {
	// Member 3 runs on a fake clock: it never ticks, so it never campaigns
	// and stays a follower, and the test decides how old its view is.
	fake := clocktest.NewFake(time.Unix(0, 0))
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 15, Configure: func(cfg *consensus.Config) {
		cfg.ReadMode = consensus.ReadLease
		if cfg.ID == 3 {
			cfg.Clock = fake
		}
	}})
	ctx := ctxT(t, 20*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Node(lead).Submit(ctx, consensustest.PutCommand("k", "v"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		idx, err := c.Node(id).ReadIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if idx < w.Index {
			t.Fatalf("member %d: read index %d below acknowledged write %d", id, idx, w.Index)
		}
	}
	follower := uint64(3)
	// A follower in contact with the leader serves bounded-staleness reads.
	if err := c.Node(follower).StaleRead(ctx, time.Second); err != nil {
		t.Fatalf("StaleRead on a healthy follower: %v", err)
	}
	if v, _ := c.KV(follower).Get("k"); v != "v" {
		t.Fatalf("stale read saw %q", v)
	}
	// The leader cannot promise less than an election timeout.
	if err := c.Node(lead).StaleRead(ctx, time.Millisecond); !errors.Is(err, consensus.ErrStale) {
		t.Fatalf("leader StaleRead(1ms) = %v, want ErrStale", err)
	}
	// Cut off, the follower's view ages past the bound.
	c.Net.Isolate(follower)
	fake.Advance(100 * time.Millisecond)
	if err := c.Node(follower).StaleRead(ctx, 50*time.Millisecond); !errors.Is(err, consensus.ErrStale) {
		t.Fatalf("isolated follower, 100ms old, StaleRead(50ms) = %v, want ErrStale", err)
	}
	if err := c.Node(follower).StaleRead(ctx, time.Second); err != nil {
		t.Fatalf("StaleRead(1s) on a 100ms-old view: %v", err)
	}
}

func TestEventsAndStatus(t *testing.T) {
	var mu sync.Mutex
	kinds := map[consensus.EventKind]int{}
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 16, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 10
		cfg.TrailingEntries = 2
		if cfg.ID == 1 {
			cfg.OnEvent = func(e consensus.Event) {
				mu.Lock()
				kinds[e.Kind]++
				mu.Unlock()
			}
		}
	}})
	ctx := ctxT(t, 20*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 15 {
		if _, err := c.Node(1).Propose(ctx, consensustest.PutCommand("k", "v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Node(1).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	st := c.Node(lead).Status()
	if st.ID != lead || st.Leader != lead || st.Role != consensus.RoleLeader || st.Applied == 0 || st.Commit < st.Applied {
		t.Fatalf("leader status %+v", st)
	}
	for id, p := range st.Progress {
		if p.Match == 0 || p.State == "" {
			t.Fatalf("progress of %d: %+v", id, p)
		}
	}
	fst := c.Node(lead%3 + 1).Status()
	if fst.Role != consensus.RoleFollower || fst.Progress != nil || fst.Leader != lead {
		t.Fatalf("follower status %+v", fst)
	}
	c.Stop(1) // stops the event loop; events already delivered stay counted
	mu.Lock()
	defer mu.Unlock()
	if kinds[consensus.EventLeaderChanged] == 0 || kinds[consensus.EventApplied] == 0 || kinds[consensus.EventSnapshotTaken] == 0 {
		t.Fatalf("events seen: %v", kinds)
	}
}
