package consensus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// TestRemoveLeaderUnderLoad removes the leader while clients keep
// proposing: the removed member must learn that its removal committed, so
// RemoveMember returns instead of waiting, leaderless, for its context.
func TestRemoveLeaderUnderLoad(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			c := newCluster(t, 4, consensustest.ClusterOptions{Seed: seed})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.WaitLeader(ctx); err != nil {
				t.Fatal(err)
			}
			lctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := 0; lctx.Err() == nil; i++ {
						for _, id := range c.Running() {
							_, _ = c.Node(id).Propose(lctx, consensustest.PutCommand(fmt.Sprint(w), fmt.Sprint(i)))
						}
					}
				})
			}
			var removed uint64
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			err := onLeader(rctx, c, func(n *consensus.Node) error {
				removed = n.ID()
				return n.RemoveMember(rctx, n.ID())
			})
			rcancel()
			stop()
			wg.Wait()
			if err != nil {
				t.Fatalf("RemoveMember(leader %d): %v", removed, err)
			}
			if !c.Node(removed).Status().Removed {
				t.Fatalf("member %d does not know it was removed", removed)
			}
			for _, id := range c.Running() {
				if id == removed {
					continue
				}
				if err := c.Node(id).ReadBarrier(ctx); err != nil {
					t.Fatalf("ReadBarrier on %d: %v", id, err)
				}
				voters, _ := memberIDs(c.Node(id).Members())
				if slices.Contains(voters, removed) {
					t.Fatalf("member %d still lists removed %d: %v", id, removed, voters)
				}
			}
		})
	}
}
