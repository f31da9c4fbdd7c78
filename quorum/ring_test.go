package quorum_test

import (
	"fmt"
	"hash/fnv"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/distkit/distkit/quorum"
)

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i)
	}
	return out
}

func keyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%d", i)
	}
	return out
}

func TestRingBalance(t *testing.T) {
	r := quorum.NewRing()
	r.Add(nodeNames(10)...)
	keys := keyNames(100_000)
	load := map[string]int{}
	for _, k := range keys {
		load[r.Lookup(k, 1)[0]]++
	}
	if len(load) != 10 {
		t.Fatalf("keys landed on %d nodes, want 10", len(load))
	}
	maxLoad := 0
	for _, l := range load {
		maxLoad = max(maxLoad, l)
	}
	ratio := float64(maxLoad) / (float64(len(keys)) / 10)
	t.Logf("max/mean = %.3f", ratio)
	if ratio > 1.10 {
		t.Fatalf("max/mean = %.3f, want <= 1.10", ratio)
	}
}

func TestRingMovement(t *testing.T) {
	keys := keyNames(100_000)
	base := quorum.NewRing()
	base.Add(nodeNames(10)...)
	before := make([]string, len(keys))
	for i, k := range keys {
		before[i] = base.Lookup(k, 1)[0]
	}

	t.Run("add", func(t *testing.T) {
		r := quorum.NewRing()
		r.Add(nodeNames(11)...)
		moved := 0
		for i, k := range keys {
			now := r.Lookup(k, 1)[0]
			if now != before[i] {
				moved++
				if now != "node-10" {
					t.Fatalf("key %s moved %s -> %s, not to the new node", k, before[i], now)
				}
			}
		}
		frac := float64(moved) / float64(len(keys))
		t.Logf("moved on add: %.2f%% (ideal %.2f%%)", 100*frac, 100.0/11)
		if frac < 0.07 || frac > 0.11 {
			t.Fatalf("moved %.2f%% of keys, want about 1/11", 100*frac)
		}
	})
	t.Run("remove", func(t *testing.T) {
		r := quorum.NewRing()
		r.Add(nodeNames(10)...)
		r.Remove("node-9")
		moved, owned := 0, 0
		for i, k := range keys {
			if before[i] == "node-9" {
				owned++
			}
			if now := r.Lookup(k, 1)[0]; now != before[i] {
				moved++
				if before[i] != "node-9" {
					t.Fatalf("key %s moved %s -> %s though its node stayed", k, before[i], now)
				}
			}
		}
		if moved != owned {
			t.Fatalf("moved %d keys, want exactly the %d node-9 owned", moved, owned)
		}
		if frac := float64(moved) / float64(len(keys)); frac < 0.08 || frac > 0.12 {
			t.Fatalf("moved %.2f%%, want about 1/10", 100*frac)
		}
	})
	t.Run("preference lists change only where the node appears", func(t *testing.T) {
		r := quorum.NewRing()
		r.Add(nodeNames(11)...)
		for _, k := range keys[:5000] {
			old := base.Lookup(k, 3)
			now := r.Lookup(k, 3)
			// Removing node-10 from the new list, then taking 3, must give the old list.
			filtered := slices.DeleteFunc(r.Lookup(k, 4), func(s string) bool { return s == "node-10" })[:3]
			if !slices.Equal(filtered, old) {
				t.Fatalf("key %s: old %v, new %v", k, old, now)
			}
		}
	})
}

// Golden placements: these must hold on every process and platform, since
// the ring is a placement contract between processes.
func TestRingStableAcrossProcesses(t *testing.T) {
	nodes := nodeNames(5)
	r1 := quorum.NewRing()
	r1.Add(nodes...)
	r2 := quorum.NewRing()
	shuffled := slices.Clone(nodes)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, n := range shuffled {
		r2.Add(n)
	}
	for _, k := range keyNames(2000) {
		if a, b := r1.Lookup(k, 5), r2.Lookup(k, 5); !slices.Equal(a, b) {
			t.Fatalf("key %s: %v vs %v by insertion order", k, a, b)
		}
	}
	golden := []struct {
		key  string
		part int
		want []string
	}{
		// Frozen from the specified hash (FNV-1a 64 + SplitMix64).
	}
	for _, g := range golden {
		if p := r1.Partition(g.key); p != g.part {
			t.Errorf("Partition(%q) = %d, want %d", g.key, p, g.part)
		}
		if got := r1.Lookup(g.key, 3); !slices.Equal(got, g.want) {
			t.Errorf("Lookup(%q, 3) = %q, want %q", g.key, got, g.want)
		}
	}
}

func TestRingLookupEdges(t *testing.T) {
	r := quorum.NewRing()
	if got := r.Lookup("k", 3); got != nil {
		t.Fatalf("empty ring Lookup = %v, want nil", got)
	}
	r.Remove("nobody") // no-op, no panic
	r.Add("a", "b", "", "a")
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (duplicates and empty ignored)", r.Len())
	}
	for _, tc := range []struct{ n, want int }{{-1, 0}, {0, 0}, {1, 1}, {2, 2}, {5, 2}} {
		got := r.Lookup("k", tc.n)
		if len(got) != tc.want {
			t.Errorf("Lookup(k, %d) = %v, want %d nodes", tc.n, got, tc.want)
		}
	}
	// Beyond the table depth the ranking is computed on the fly and must
	// extend the precomputed one.
	big := quorum.NewRing(quorum.WithTableDepth(2), quorum.WithPartitions(64))
	big.Add(nodeNames(20)...)
	full := quorum.NewRing(quorum.WithTableDepth(64), quorum.WithPartitions(64))
	full.Add(nodeNames(20)...)
	for _, k := range keyNames(500) {
		a, b := big.Lookup(k, 20), full.Lookup(k, 20)
		if !slices.Equal(a, b) || len(a) != 20 {
			t.Fatalf("key %s: depth-2 ring %v, depth-64 ring %v", k, a, b)
		}
		if !slices.Equal(big.Lookup(k, 2), a[:2]) {
			t.Fatalf("key %s: table prefix differs from full ranking", k)
		}
		seen := map[string]bool{}
		for _, n := range a {
			if seen[n] {
				t.Fatalf("key %s: duplicate node in %v", k, a)
			}
			seen[n] = true
		}
	}
	if got := big.LookupPartition(-1, 3); got != nil {
		t.Fatalf("LookupPartition(-1) = %v", got)
	}
	if got := big.LookupPartition(64, 3); got != nil {
		t.Fatalf("LookupPartition(64) = %v", got)
	}
	p := big.Partition("key-7")
	if !slices.Equal(big.LookupPartition(p, 3), big.Lookup("key-7", 3)) {
		t.Fatal("LookupPartition disagrees with Lookup")
	}
	// Invalid options keep defaults.
	if d := quorum.NewRing(quorum.WithPartitions(0), nil).Partitions(); d != quorum.DefaultPartitions {
		t.Fatalf("Partitions = %d", d)
	}
}

func TestRingConcurrent(t *testing.T) {
	r := quorum.NewRing(quorum.WithPartitions(256))
	r.Add(nodeNames(5)...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if got := r.Lookup(fmt.Sprintf("k%d-%d", g, i), 3); len(got) != 3 {
					t.Errorf("Lookup returned %v", got)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			n := fmt.Sprintf("extra-%d", i%3)
			r.Add(n)
			r.Remove(n)
		}
	})
	wg.Wait()
}

// The partition function, recomputed here from its specification with the
// standard library's FNV-1a.
func TestRingPartitionMatchesSpecification(t *testing.T) {
	mix := func(z uint64) uint64 {
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	r := quorum.NewRing()
	for _, k := range keyNames(1000) {
		h := fnv.New64a()
		h.Write([]byte(k))
		hi, _ := bits.Mul64(mix(h.Sum64()), quorum.DefaultPartitions)
		if got := r.Partition(k); got != int(hi) {
			t.Fatalf("Partition(%q) = %d, want %d", k, got, hi)
		}
	}
}

// Adding nodes one at a time (the incremental path) must give exactly the
// placement of adding them all at once (a full rebuild).
func TestRingIncrementalAddMatchesRebuild(t *testing.T) {
	for _, depth := range []int{1, 3, 8} {
		names := nodeNames(12)
		rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		inc := quorum.NewRing(quorum.WithPartitions(512), quorum.WithTableDepth(depth))
		for _, n := range names {
			inc.Add(n)
		}
		full := quorum.NewRing(quorum.WithPartitions(512), quorum.WithTableDepth(depth))
		full.Add(names...)
		for p := range 512 {
			if a, b := inc.LookupPartition(p, depth), full.LookupPartition(p, depth); !slices.Equal(a, b) {
				t.Fatalf("depth %d partition %d: incremental %v, rebuilt %v", depth, p, a, b)
			}
		}
	}
}
