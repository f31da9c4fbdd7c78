package consensus_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func TestRestartFromDisk(t *testing.T) {
	dir := t.TempDir()
	c := consensustest.NewCluster(t, 3, consensustest.ClusterOptions{Seed: 11, Dir: dir, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 25
		cfg.TrailingEntries = 5
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	write := func(from, to int) consensus.Applied {
		var a consensus.Applied
		for i := from; i < to; i++ {
			a, err = c.Node(lead).Submit(ctx, consensustest.PutCommand(fmt.Sprint("k", i), fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	write(0, 60)

	// One member restarts from its directory and catches up.
	one := lead%3 + 1
	c.Stop(one)
	last := write(60, 80)
	c.Start(one)
	if err := c.Node(one).WaitApplied(ctx, last.Index); err != nil {
		t.Fatal(err)
	}
	if got := c.KV(one).Len(); got != 80 {
		t.Fatalf("member %d has %d keys after restart, want 80", one, got)
	}

	// All members restart from disk.
	for _, id := range []uint64{1, 2, 3} {
		c.Stop(id)
	}
	for _, id := range []uint64{1, 2, 3} {
		c.Start(id)
	}
	if lead, err = c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		if err := c.Node(id).ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.KV(id).Len(); got != 80 {
			t.Fatalf("member %d has %d keys after full restart, want 80", id, got)
		}
	}
	write(80, 90)
	if files, _ := filepath.Glob(filepath.Join(dir, "1", "snap", "*.snap")); len(files) == 0 {
		t.Fatal("no snapshot files on disk")
	}
}

func TestCorruptSnapshotFileRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	c := consensustest.NewCluster(t, 1, consensustest.ClusterOptions{Seed: 12, Dir: dir, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 10
		cfg.TrailingEntries = 2
	}})
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := c.Node(1).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "some value")); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(1)
	files, _ := filepath.Glob(filepath.Join(dir, "1", "snap", "*.snap"))
	if len(files) == 0 {
		t.Fatal("no snapshot file")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-10] ^= 0x40
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := consensus.Start(consensus.Config{
		ID: 1, Dir: filepath.Join(dir, "1"), Transport: c.Net.Transport(1),
	}, consensustest.NewKV())
	if !errors.Is(err, consensus.ErrCorrupt) {
		t.Fatalf("Start over a corrupt snapshot = %v, want ErrCorrupt", err)
	}
}
