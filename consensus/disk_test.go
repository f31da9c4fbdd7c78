package consensus_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func TestRestartFromDisk(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 11, Dir: dir, Configure: func(cfg *consensus.Config) {
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
	c := newCluster(t, 1, consensustest.ClusterOptions{Seed: 12, Dir: dir, Configure: func(cfg *consensus.Config) {
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
		ID: 1, Dir: filepath.Join(dir, "1"), Transport: c.Net.Transport(1), StorageMode: storageMode,
	}, consensustest.NewKV())
	if !errors.Is(err, consensus.ErrCorrupt) {
		t.Fatalf("Start over a corrupt snapshot = %v, want ErrCorrupt", err)
	}
}

// TestDamagedLogNeverLosesAcknowledgedWrites damages one member's log while
// it is down (truncation at random offsets, flipped bits). The member must
// either refuse to start with ErrCorrupt or start and, with its peers,
// serve every acknowledged write with its value.
func TestDamagedLogNeverLosesAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 17, Dir: dir})
	ctx := ctxT(t, 90*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	write := func(n int) {
		for range n {
			k, v := fmt.Sprint("k", len(acked)), fmt.Sprint("v", len(acked))
			if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(k, v)); err != nil {
				t.Fatal(err)
			}
			acked[k] = v
		}
	}
	write(40)
	rng := rand.New(rand.NewPCG(17, 0))
	victim := lead%3 + 1
	nextID := uint64(3)
	for round := range 6 {
		c.Stop(victim)
		segs, _ := filepath.Glob(filepath.Join(dir, fmt.Sprint(victim), "wal", "*.wal"))
		if len(segs) == 0 {
			t.Fatal("no WAL segments")
		}
		seg := segs[len(segs)-1]
		f, err := os.OpenFile(seg, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off := rng.Int64N(16 << 10)
		if round%2 == 0 {
			err = f.Truncate(off)
		} else {
			b := []byte{0}
			if _, err = f.ReadAt(b, off); err == nil {
				b[0] ^= 1 << rng.IntN(8)
				_, err = f.WriteAt(b, off)
			}
		}
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		rebuild := func(why error) {
			// The member cannot be trusted: replace it with a new member
			// under a new id (ids are never reused), rebuilt from its peers.
			t.Logf("round %d: damage at %d detected: %v", round, off, why)
			c.Stop(victim)
			voters := append([]uint64(nil), c.Running()...)
			if err := onLeader(ctx, c, func(n *consensus.Node) error { return n.RemoveMember(ctx, victim) }, voters...); err != nil {
				t.Fatalf("remove damaged member %d: %v", victim, err)
			}
			nextID++
			victim = nextID
			c.Start(victim)
			if err := onLeader(ctx, c, func(n *consensus.Node) error { return n.AddVoter(ctx, victim, "") }, voters...); err != nil {
				t.Fatalf("add replacement member %d: %v", victim, err)
			}
		}
		n, err := c.TryStart(victim)
		if err != nil {
			if !errors.Is(err, consensus.ErrCorrupt) {
				t.Fatalf("round %d: start after damage at %d: %v, want success or ErrCorrupt", round, off, err)
			}
			rebuild(err)
			n = c.Node(victim)
		}
		if lead, err = c.WaitLeader(ctx, othersThan(c, victim)...); err != nil {
			t.Fatal(err)
		}
		write(5)
		// The damaged member either catches up or stops itself on finding
		// its log inconsistent with what it acknowledged.
		if err := n.ReadBarrier(ctx); err != nil {
			if !errors.Is(n.Err(), consensus.ErrCorrupt) {
				t.Fatalf("round %d: damaged member: %v (node error %v)", round, err, n.Err())
			}
			rebuild(n.Err())
		}
		for _, id := range c.Running() {
			if err := c.Node(id).ReadBarrier(ctx); err != nil {
				t.Fatal(err)
			}
			kv := c.KV(id)
			for k, v := range acked {
				if got, _ := kv.Get(k); got != v {
					t.Fatalf("round %d: member %d: %s=%q, want %q", round, id, k, got, v)
				}
			}
		}
		lead, _ = c.WaitLeader(ctx, othersThan(c, victim)...)
		for _, id := range c.Running() {
			if id != lead {
				victim = id
			}
		}
	}
}

func othersThan(c *consensustest.Cluster, id uint64) []uint64 {
	var out []uint64
	for _, r := range c.Running() {
		if r != id {
			out = append(out, r)
		}
	}
	return out
}

// TestTruncatedLogRefusesToStart truncates a stopped member's newest log
// segment, zeroes its last batches in place (the file keeps its size), or
// puts back an older copy of Dir/wal. Start must refuse with ErrDataLoss
// (and ErrCorrupt), say what to do, and leave the log directory and its
// high-water mark byte-for-byte unchanged. (Before the log kept a
// high-water mark, all three were taken for a torn final write or a clean
// log, and the member started without the lost entries.)
func TestTruncatedLogRefusesToStart(t *testing.T) {
	for _, how := range []string{"truncate", "zero", "stale-copy"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			c := newCluster(t, 1, consensustest.ClusterOptions{Seed: 21, Dir: dir})
			ctx := ctxT(t, 30*time.Second)
			if _, err := c.WaitLeader(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 40 {
				if _, err := c.Node(1).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
					t.Fatal(err)
				}
			}
			c.Stop(1)
			walDir := filepath.Join(dir, "1", "wal")
			if how == "stale-copy" {
				stale := copyFiles(t, walDir, t.TempDir())
				c.Start(1)
				if _, err := c.WaitLeader(ctx); err != nil {
					t.Fatal(err)
				}
				for i := range 10 {
					if _, err := c.Node(1).Propose(ctx, consensustest.PutCommand(fmt.Sprint("later", i), "v")); err != nil {
						t.Fatal(err)
					}
				}
				c.Stop(1)
				if err := os.RemoveAll(walDir); err != nil {
					t.Fatal(err)
				}
				copyFiles(t, stale, walDir)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "1", "wal", "*.wal"))
			if len(segs) == 0 {
				t.Fatal("no WAL segments")
			}
			seg := segs[len(segs)-1]
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			end := len(b)
			for end > 0 && b[end-1] == 0 {
				end--
			}
			cut := end - 300 // the last few batches
			switch how {
			case "truncate":
				err = os.Truncate(seg, int64(cut))
			case "zero":
				clear(b[cut:end])
				err = os.WriteFile(seg, b, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			digest := func() string {
				var sb strings.Builder
				files, _ := filepath.Glob(filepath.Join(dir, "1", "wal", "*"))
				for _, f := range append(files, filepath.Join(dir, "1", "wal.hwm")) {
					data, err := os.ReadFile(f)
					fmt.Fprintf(&sb, "%s %x %v\n", filepath.Base(f), sha256.Sum256(data), err)
				}
				return sb.String()
			}
			before := digest()
			n, err := consensus.Start(consensus.Config{
				ID: 1, Dir: filepath.Join(dir, "1"), Transport: c.Net.Transport(1), StorageMode: storageMode,
			}, consensustest.NewKV())
			if err == nil {
				n.Close()
				t.Fatal("Start over a truncated log succeeded")
			}
			if !errors.Is(err, consensus.ErrDataLoss) || !errors.Is(err, consensus.ErrCorrupt) {
				t.Fatalf("Start over a truncated log = %v, want ErrDataLoss and ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "add it back under a new id") {
				t.Fatalf("error does not say what to do: %v", err)
			}
			if after := digest(); after != before {
				t.Fatalf("refused Start changed the log:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// copyFiles copies the regular files of src into dst, creating it.
func copyFiles(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
