package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestElectionAndProposeThroughFollower(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 1})
	ctx := ctxT(t, 10*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		res, err := c.Node(id).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", id), "v"))
		if err != nil {
			t.Fatalf("propose via %d (leader %d): %v", id, lead, err)
		}
		if string(res) != "v" {
			t.Fatalf("result = %q, want v", res)
		}
	}
	// Every member reads every write linearizably.
	for _, id := range c.Running() {
		if err := c.Node(id).ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier on %d: %v", id, err)
		}
		for k := 1; k <= 3; k++ {
			if v, _ := c.KV(id).Get(fmt.Sprint("k", k)); v != "v" {
				t.Fatalf("member %d: k%d = %q", id, k, v)
			}
		}
	}
	st := c.Node(lead).Status()
	if st.Role != consensus.RoleLeader || len(st.Progress) != 3 || len(st.Members) != 3 {
		t.Fatalf("leader status = %+v", st)
	}
	if st.Stats.Proposals == 0 || st.Stats.Syncs == 0 {
		t.Fatalf("stats not counted: %+v", st.Stats)
	}
}

func TestReElectionAfterLeaderLoss(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 2})
	ctx := ctxT(t, 20*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(lead)
	lead2, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lead2 == lead {
		t.Fatalf("stopped leader %d still leads", lead)
	}
	if _, err := c.Node(lead2).Propose(ctx, consensustest.PutCommand("a", "1")); err != nil {
		t.Fatal(err)
	}
	c.Start(lead)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(lead).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.KV(lead).Get("a"); v != "1" {
		t.Fatalf("restarted member reads a=%q", v)
	}
}

func TestClosedNodeReturnsErrors(t *testing.T) {
	c := newCluster(t, 1, consensustest.ClusterOptions{Seed: 3})
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	n := c.Node(1)
	c.Stop(1)
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Propose(ctx, []byte("x")); !errors.Is(err, consensus.ErrStopped) || !errors.Is(err, consensus.ErrDropped) {
		t.Fatalf("Propose after Close = %v", err)
	}
	if err := n.ReadBarrier(ctx); !errors.Is(err, consensus.ErrStopped) {
		t.Fatalf("ReadBarrier after Close = %v", err)
	}
	if err := n.WaitApplied(ctx, 1<<40); !errors.Is(err, consensus.ErrStopped) {
		t.Fatalf("WaitApplied after Close = %v", err)
	}
	_ = n.Status()
}
