package consensus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// gatedKV blocks Apply while the gate is closed.
type gatedKV struct {
	*consensustest.KV
	blocked atomic.Bool
	gate    chan struct{}
}

func (g *gatedKV) Apply(cmds []consensus.Command) error {
	if g.blocked.Load() {
		<-g.gate
	}
	return g.KV.Apply(cmds)
}

func TestSlowStateMachineDoesNotStallRaft(t *testing.T) {
	sms := map[uint64]*gatedKV{}
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 14,
		NewStateMachine: func(id uint64) consensus.StateMachine {
			g := &gatedKV{KV: consensustest.NewKV(), gate: make(chan struct{})}
			sms[id] = g
			return g
		},
		Configure: func(cfg *consensus.Config) { cfg.MaxPendingProposals = 4 },
	})
	ctx := ctxT(t, 20*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	term := c.Node(lead).Status().Term
	for _, g := range sms {
		g.blocked.Store(true)
	}
	var opened atomic.Bool
	openGates := func() {
		if opened.CompareAndSwap(false, true) {
			for _, g := range sms {
				close(g.gate)
			}
		}
	}
	t.Cleanup(openGates) // runs before the cluster closes
	// Proposals commit but cannot apply; once four wait, the next is refused.
	errs := make(chan error, 16)
	waiting := 0
	for busy := false; !busy; {
		if waiting > 8 {
			t.Fatalf("%d proposals waiting, none refused", waiting)
		}
		waiting++
		go func() {
			_, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("k", "v"))
			errs <- err
		}()
		tick := time.NewTimer(20 * time.Millisecond)
		select {
		case err := <-errs:
			if !errors.Is(err, consensus.ErrBusy) {
				t.Fatalf("proposal finished while apply is blocked: %v", err)
			}
			busy = true
			waiting--
		case <-tick.C:
		}
		tick.Stop()
	}
	if waiting != 4 {
		t.Fatalf("refused with %d waiting, want 4", waiting)
	}
	// Heartbeats and read-index rounds go on while Apply is stuck for many
	// election timeouts.
	for range 20 {
		if _, err := c.Node(lead).ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 500*time.Millisecond)
	<-waitCtx.Done()
	cancelWait()
	st := c.Node(lead).Status()
	if st.Role != consensus.RoleLeader || st.Term != term {
		t.Fatalf("leadership lost while the state machine was slow: %+v", st)
	}
	if st.Commit <= st.Applied {
		t.Fatalf("commit %d not ahead of applied %d while apply is blocked", st.Commit, st.Applied)
	}
	openGates()
	for range waiting {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
