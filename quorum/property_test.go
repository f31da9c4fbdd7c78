package quorum_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/quorum"
	"pgregory.net/rapid"
)

// network decides which nodes can reach which; a partition splits the nodes
// into two sides.
type network struct {
	mu   sync.Mutex
	side map[string]int
}

func (n *network) reachable(a, b string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.side[a] == n.side[b]
}

func (n *network) set(side map[string]int) { n.mu.Lock(); n.side = side; n.mu.Unlock() }

// link is a replica as seen from one node across the network.
type link struct {
	from, to string
	net      *network
	r        *quorum.MemReplica[string]
}

func (l link) check() error {
	if !l.net.reachable(l.from, l.to) {
		return fmt.Errorf("%s -> %s: %w", l.from, l.to, errDown)
	}
	return nil
}

func (l link) Get(ctx context.Context, key string) (quorum.Object[string], error) {
	if err := l.check(); err != nil {
		return quorum.Object[string]{}, err
	}
	return l.r.Get(ctx, key)
}

func (l link) Put(ctx context.Context, key string, o quorum.Object[string]) error {
	if err := l.check(); err != nil {
		return err
	}
	return l.r.Put(ctx, key, o)
}

func (l link) Update(ctx context.Context, key string, w quorum.Write[string]) (quorum.Object[string], error) {
	if err := l.check(); err != nil {
		return quorum.Object[string]{}, err
	}
	return l.r.Update(ctx, key, w)
}

func (l link) Digests(ctx context.Context) (map[int]uint64, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return l.r.Digests(ctx)
}

func (l link) Hashes(ctx context.Context, p int) (map[string]uint64, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	return l.r.Hashes(ctx, p)
}

// TestNoAcknowledgedWriteLost: under random partitions, writes through any
// node at any level, then healing, hint delivery and one anti-entropy pass,
// every acknowledged write that no later write saw is present on every
// owner of its key, and the owners hold identical objects.
func TestNoAcknowledgedWriteLost(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const nNodes = 5
		ring := quorum.NewRing(quorum.WithPartitions(64))
		var nodes []string
		reps := map[string]*quorum.MemReplica[string]{}
		for i := range nNodes {
			n := fmt.Sprintf("n%d", i)
			nodes = append(nodes, n)
			reps[n] = quorum.NewMemReplica[string](n, ring)
		}
		ring.Add(nodes...)
		net := &network{side: map[string]int{}}
		clk := clocktest.NewFake(clocktest.Epoch)
		coords := map[string]*quorum.Coordinator[string]{}
		for _, from := range nodes {
			co, err := quorum.NewCoordinator(quorum.Config[string]{
				Ring: ring, Clock: clk, Repair: quorum.RepairSync,
				Replica: func(to string) (quorum.Replica[string], error) {
					return link{from: from, to: to, net: net, r: reps[to]}, nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			coords[from] = co
			defer co.Close()
		}
		keys := []string{"a", "b", "c", "d"}
		expected := map[string]map[string]bool{} // acknowledged and not seen by a later write
		maybe := map[string]map[string]bool{}    // may or may not survive
		for _, k := range keys {
			expected[k], maybe[k] = map[string]bool{}, map[string]bool{}
		}
		seq := 0
		levels := []quorum.Level{quorum.One, quorum.Quorum, quorum.All}
		steps := rapid.IntRange(1, 30).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0: // partition
				side := map[string]int{}
				for _, n := range nodes {
					side[n] = rapid.IntRange(0, 1).Draw(t, "side")
				}
				net.set(side)
			case 1: // heal
				net.set(map[string]int{})
				clk.Advance(quorum.DefaultHintInterval)
			default: // write, blind or after a read, through some node
				from := rapid.SampledFrom(nodes).Draw(t, "from")
				key := rapid.SampledFrom(keys).Draw(t, "key")
				co := coords[from]
				var causal clock.Vector
				var read []string
				if rapid.Bool().Draw(t, "readFirst") {
					v, err := co.Get(bg, key, quorum.WithLevel(quorum.One))
					if err != nil {
						continue
					}
					causal, read = v.Context, v.Values
				}
				seq++
				val := fmt.Sprintf("%s%d", key, seq)
				level := rapid.SampledFrom(levels).Draw(t, "level")
				del := rapid.IntRange(0, 5).Draw(t, "del") == 0
				var err error
				if del {
					_, err = co.Delete(bg, key, causal, quorum.WithLevel(level))
				} else {
					_, err = co.Put(bg, key, val, causal, quorum.WithLevel(level))
				}
				for _, r := range read {
					if err == nil {
						delete(expected[key], r)
					} else if expected[key][r] {
						delete(expected[key], r)
						maybe[key][r] = true
					}
				}
				switch {
				case del:
				case err == nil:
					expected[key][val] = true
				default:
					maybe[key][val] = true
				}
			}
		}
		// Heal and converge.
		net.set(map[string]int{})
		clk.Advance(quorum.DefaultHintInterval)
		for _, n := range nodes {
			coords[n].DeliverHints(bg)
		}
		if _, err := coords[nodes[0]].AntiEntropy(bg); err != nil {
			t.Fatalf("anti-entropy: %v", err)
		}
		for _, k := range keys {
			owners := ring.Lookup(k, quorum.DefaultN)
			var first uint64
			for i, n := range owners {
				o, _ := reps[n].Get(bg, k)
				if i == 0 {
					first = o.Digest()
				} else if o.Digest() != first {
					t.Fatalf("key %s: owners %v differ after anti-entropy", k, owners)
				}
				have := map[string]bool{}
				for _, v := range o.Values() {
					have[v] = true
					if !expected[k][v] && !maybe[k][v] {
						t.Fatalf("key %s on %s: value %q was superseded but came back", k, n, v)
					}
				}
				for v := range expected[k] {
					if !have[v] {
						t.Fatalf("key %s: acknowledged write %q lost on %s (has %v)", k, v, n, slices.Sorted(maps(have)))
					}
				}
			}
		}
	})
}

func maps(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestStrictQuorumReadsSeeAcknowledgedWrites: with R + W > N and a strict
// quorum, every read that succeeds returns every write acknowledged before
// it, whatever nodes fail in between.
func TestStrictQuorumReadsSeeAcknowledgedWrites(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := newCluster(3)
		co, err := quorum.NewCoordinator(quorum.Config[string]{
			Ring: c.ring, Replica: c.replica, Clock: c.clk, Strict: true,
			Read: quorum.Quorum, Write: quorum.Quorum, Repair: quorum.RepairOff,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		acked := map[string]bool{}
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				n := rapid.SampledFrom(c.nodes).Draw(t, "node")
				c.reps[n].setDown(rapid.Bool().Draw(t, "down"))
			case 1:
				v := fmt.Sprint(i)
				if _, err := co.Put(bg, "k", v, clock.Vector{}); err == nil {
					acked[v] = true
				}
			case 2:
				got, err := co.Get(bg, "k")
				if err != nil {
					continue
				}
				for v := range acked {
					if !slices.Contains(got.Values, v) {
						t.Fatalf("read %v misses acknowledged write %q", got.Values, v)
					}
				}
			}
		}
	})
}
