package quorum_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/quorum"
)

var errDown = errors.New("node unreachable")

// faulty wraps a MemReplica with injectable faults.
type faulty struct {
	*quorum.MemReplica[string]
	mu    sync.Mutex
	down  bool          // every call fails at once
	slow  chan struct{} // non-nil: Get blocks until closed or ctx done
	calls int
}

func (f *faulty) check(ctx context.Context, get bool) error {
	f.mu.Lock()
	f.calls++
	down, slow := f.down, f.slow
	f.mu.Unlock()
	if down {
		return errDown
	}
	if get && slow != nil {
		select {
		case <-slow:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *faulty) setDown(b bool) { f.mu.Lock(); f.down = b; f.mu.Unlock() }

func (f *faulty) setSlow(ch chan struct{}) { f.mu.Lock(); f.slow = ch; f.mu.Unlock() }

func (f *faulty) Get(ctx context.Context, key string) (quorum.Object[string], error) {
	if err := f.check(ctx, true); err != nil {
		return quorum.Object[string]{}, err
	}
	return f.MemReplica.Get(ctx, key)
}

func (f *faulty) Put(ctx context.Context, key string, o quorum.Object[string]) error {
	if err := f.check(ctx, false); err != nil {
		return err
	}
	return f.MemReplica.Put(ctx, key, o)
}

func (f *faulty) Update(ctx context.Context, key string, w quorum.Write[string]) (quorum.Object[string], error) {
	if err := f.check(ctx, false); err != nil {
		return quorum.Object[string]{}, err
	}
	return f.MemReplica.Update(ctx, key, w)
}

func (f *faulty) Digests(ctx context.Context) (map[int]uint64, error) {
	if err := f.check(ctx, false); err != nil {
		return nil, err
	}
	return f.MemReplica.Digests(ctx)
}

func (f *faulty) Hashes(ctx context.Context, p int) (map[string]uint64, error) {
	if err := f.check(ctx, false); err != nil {
		return nil, err
	}
	return f.MemReplica.Hashes(ctx, p)
}

type cluster struct {
	ring  *quorum.Ring
	nodes []string
	reps  map[string]*faulty
	clk   *clocktest.Fake
}

func newCluster(n int) *cluster {
	c := &cluster{ring: quorum.NewRing(quorum.WithPartitions(256)), reps: map[string]*faulty{}, clk: clocktest.NewFake(clocktest.Epoch)}
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, name)
		c.reps[name] = &faulty{MemReplica: quorum.NewMemReplica[string](name, c.ring)}
	}
	c.ring.Add(c.nodes...)
	return c
}

func (c *cluster) replica(node string) (quorum.Replica[string], error) {
	r, ok := c.reps[node]
	if !ok {
		return nil, fmt.Errorf("unknown node %q", node)
	}
	return r, nil
}

func (c *cluster) config() quorum.Config[string] {
	return quorum.Config[string]{Ring: c.ring, Replica: c.replica, Clock: c.clk, Repair: quorum.RepairSync}
}

func (c *cluster) coordinator(t testing.TB, mod func(*quorum.Config[string])) *quorum.Coordinator[string] {
	t.Helper()
	cfg := c.config()
	if mod != nil {
		mod(&cfg)
	}
	co, err := quorum.NewCoordinator(cfg)
	if err != nil {
		t.Fatalf("NewCoordinator: %v", err)
	}
	t.Cleanup(func() { co.Close() })
	return co
}

// stored returns the sorted live values node holds for key.
func (c *cluster) stored(t testing.TB, node, key string) []string {
	t.Helper()
	o, err := c.reps[node].MemReplica.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return o.Values()
}

func (c *cluster) digest(node, key string) uint64 {
	o, _ := c.reps[node].MemReplica.Get(context.Background(), key)
	return o.Digest()
}
