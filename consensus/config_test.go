package consensus_test

import (
	"errors"
	"testing"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func TestStartRejectsInvalidConfig(t *testing.T) {
	net := consensustest.NewNetwork(1)
	valid := func() consensus.Config {
		return consensus.Config{ID: 1, Memory: consensus.NewMemoryStore(), Transport: net.Transport(1)}
	}
	tests := []struct {
		name string
		mod  func(*consensus.Config)
	}{
		{"zero id", func(c *consensus.Config) { c.ID = 0 }},
		{"reserved id", func(c *consensus.Config) { c.ID = ^uint64(0) }},
		{"no storage", func(c *consensus.Config) { c.Memory = nil }},
		{"no transport", func(c *consensus.Config) { c.Transport = nil }},
		{"election not above heartbeat", func(c *consensus.Config) { c.ElectionTicks, c.HeartbeatTicks = 3, 3 }},
		{"negative heartbeat", func(c *consensus.Config) { c.HeartbeatTicks = -1 }},
		{"negative tick", func(c *consensus.Config) { c.TickInterval = -1 }},
		{"negative entry size", func(c *consensus.Config) { c.MaxEntryBytes = -1 }},
		{"negative inflight", func(c *consensus.Config) { c.MaxInflightMsgs = -1 }},
		{"negative pending", func(c *consensus.Config) { c.MaxPendingProposals = -1 }},
		{"lease without check quorum", func(c *consensus.Config) { c.ReadMode, c.DisableCheckQuorum = consensus.ReadLease, true }},
		{"unknown read mode", func(c *consensus.Config) { c.ReadMode = 7 }},
		{"unknown storage mode", func(c *consensus.Config) { c.StorageMode = 9 }},
		{"negative storage mode", func(c *consensus.Config) { c.StorageMode = -1 }},
		{"bootstrap without self", func(c *consensus.Config) { c.Bootstrap = []consensus.Member{{ID: 2}} }},
		{"bootstrap duplicate", func(c *consensus.Config) { c.Bootstrap = []consensus.Member{{ID: 1}, {ID: 1}} }},
		{"bootstrap zero id", func(c *consensus.Config) { c.Bootstrap = []consensus.Member{{ID: 1}, {ID: 0}} }},
		{"bootstrap only learners", func(c *consensus.Config) { c.Bootstrap = []consensus.Member{{ID: 1, Learner: true}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mod(&cfg)
			before := cfg
			n, err := consensus.Start(cfg, consensustest.NewKV())
			if err == nil {
				n.Close()
				t.Fatal("Start accepted an invalid config")
			}
			if !errors.Is(err, consensus.ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if cfg.ElectionTicks != before.ElectionTicks || cfg.TickInterval != before.TickInterval {
				t.Fatal("Start modified the caller's Config")
			}
		})
	}
	if _, err := consensus.Start(valid(), nil); !errors.Is(err, consensus.ErrInvalidConfig) {
		t.Fatalf("nil state machine: %v", err)
	}
}

func TestProposeTooLargeAndBusy(t *testing.T) {
	c := newCluster(t, 1, consensustest.ClusterOptions{Seed: 13, Configure: func(cfg *consensus.Config) {
		cfg.MaxEntryBytes = 100
		cfg.MaxPendingProposals = 1
	}})
	ctx := ctxT(t, 10e9)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	n := c.Node(1)
	if _, err := n.Propose(ctx, make([]byte, 101)); !errors.Is(err, consensus.ErrTooLarge) {
		t.Fatalf("oversized command: %v", err)
	}
	long := string(make([]byte, 2000))
	if _, err := n.Propose(ctx, []byte("x"), consensus.WithRequestID(long)); !errors.Is(err, consensus.ErrTooLarge) {
		t.Fatalf("oversized request id: %v", err)
	}
	if _, err := n.Propose(ctx, consensustest.PutCommand("a", "b")); err != nil {
		t.Fatal(err)
	}
}
