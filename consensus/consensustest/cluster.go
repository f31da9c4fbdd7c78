package consensustest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

// ClusterOptions configures NewCluster.
type ClusterOptions struct {
	Seed uint64 // network seed
	// NewStateMachine builds a member's state machine; default NewKV.
	NewStateMachine func(id uint64) consensus.StateMachine
	// Configure adjusts each member's Config before Start.
	Configure func(*consensus.Config)
	// Tick is the raft tick; default 10ms (election timeout 100ms).
	Tick time.Duration
	// Dir, if set, keeps each member's state on disk in Dir/<id> (the
	// default durable storage) instead of in a MemoryStore.
	Dir string
}

// Cluster runs a group of in-memory members on one Network for tests.
// Members keep their MemoryStore across Stop and Start, so Start after
// Stop is a restart from "disk".
type Cluster struct {
	t    testing.TB
	opts ClusterOptions
	Net  *Network

	mu     sync.Mutex
	nodes  map[uint64]*consensus.Node
	stores map[uint64]*consensus.MemoryStore
	sms    map[uint64]consensus.StateMachine
	boot   []consensus.Member
	// wiped members start without Bootstrap, like members being added.
	wiped map[uint64]bool
}

// NewCluster bootstraps and starts members 1..size. It registers Close with
// t.Cleanup.
func NewCluster(t testing.TB, size int, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.NewStateMachine == nil {
		opts.NewStateMachine = func(uint64) consensus.StateMachine { return NewKV() }
	}
	if opts.Tick == 0 {
		opts.Tick = 10 * time.Millisecond
	}
	c := &Cluster{
		t: t, opts: opts, Net: NewNetwork(opts.Seed),
		nodes:  map[uint64]*consensus.Node{},
		stores: map[uint64]*consensus.MemoryStore{},
		sms:    map[uint64]consensus.StateMachine{},
		wiped:  map[uint64]bool{},
	}
	for i := 1; i <= size; i++ {
		c.boot = append(c.boot, consensus.Member{ID: uint64(i)})
	}
	t.Cleanup(c.Close)
	for i := 1; i <= size; i++ {
		c.Start(uint64(i))
	}
	return c
}

// Start starts member id: a restart if it ran before, a bootstrap member if
// it is one of the initial ones, otherwise an empty member waiting to be
// added.
func (c *Cluster) Start(id uint64) *consensus.Node {
	c.t.Helper()
	n, err := c.TryStart(id)
	if err != nil {
		c.t.Fatalf("start member %d: %v", id, err)
	}
	return n
}

// TryStart is Start returning the error instead of failing the test.
func (c *Cluster) TryStart(id uint64) (*consensus.Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[id] != nil {
		return nil, fmt.Errorf("member %d already running", id)
	}
	sm := c.opts.NewStateMachine(id)
	cfg := consensus.Config{
		ID:           id,
		Transport:    c.Net.Transport(id),
		TickInterval: c.opts.Tick,
	}
	if c.opts.Dir != "" {
		cfg.Dir = c.dir(id)
	} else {
		st := c.stores[id]
		if st == nil {
			st = consensus.NewMemoryStore()
			c.stores[id] = st
		}
		cfg.Memory = st
	}
	if int(id) <= len(c.boot) && !c.wiped[id] {
		cfg.Bootstrap = c.boot
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	n, err := consensus.Start(cfg, sm)
	if err != nil {
		return nil, err
	}
	c.nodes[id], c.sms[id] = n, sm
	return n, nil
}

// Stop closes member id (a crash: nothing beyond the durable store
// survives).
func (c *Cluster) Stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

// Wipe stops member id and discards its state, as if its disk had been
// replaced: its next Start begins with nothing (and without Bootstrap,
// even for an initial member).
func (c *Cluster) Wipe(id uint64) {
	c.t.Helper()
	c.Stop(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wiped[id] = true
	if c.opts.Dir != "" {
		if err := os.RemoveAll(c.dir(id)); err != nil {
			c.t.Fatalf("wipe member %d: %v", id, err)
		}
		return
	}
	c.stores[id] = consensus.NewMemoryStore()
}

// Backup copies stopped member id's directory (ClusterOptions.Dir is
// required) and returns a function that puts the copy back in place of
// whatever the member has then: an operator restoring an old backup.
func (c *Cluster) Backup(id uint64) (restore func()) {
	c.t.Helper()
	if c.opts.Dir == "" || c.Node(id) != nil {
		c.t.Fatalf("backup of member %d: needs ClusterOptions.Dir and a stopped member", id)
	}
	dir := c.dir(id)
	saved := filepath.Join(c.t.TempDir(), "backup")
	if err := os.CopyFS(saved, os.DirFS(dir)); err != nil {
		c.t.Fatalf("backup of member %d: %v", id, err)
	}
	return func() {
		c.t.Helper()
		if c.Node(id) != nil {
			c.t.Fatalf("restore of member %d: it is running", id)
		}
		if err := os.RemoveAll(dir); err != nil {
			c.t.Fatalf("restore of member %d: %v", id, err)
		}
		if err := os.CopyFS(dir, os.DirFS(saved)); err != nil {
			c.t.Fatalf("restore of member %d: %v", id, err)
		}
	}
}

func (c *Cluster) dir(id uint64) string { return filepath.Join(c.opts.Dir, fmt.Sprint(id)) }

// Restart stops and starts member id.
func (c *Cluster) Restart(id uint64) *consensus.Node {
	c.Stop(id)
	return c.Start(id)
}

// Node returns running member id, or nil.
func (c *Cluster) Node(id uint64) *consensus.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Member returns running member id and the state machine it drives,
// consistently (both nil if id is not running).
func (c *Cluster) Member(id uint64) (*consensus.Node, consensus.StateMachine) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil {
		return nil, nil
	}
	return n, c.sms[id]
}

// StateMachine returns member id's current state machine.
func (c *Cluster) StateMachine(id uint64) consensus.StateMachine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sms[id]
}

// KV returns member id's state machine as a *KV.
func (c *Cluster) KV(id uint64) *KV {
	kv, _ := c.StateMachine(id).(*KV)
	return kv
}

// Running returns the ids of running members, sorted.
func (c *Cluster) Running() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.nodes))
}

// WaitLeader waits until every running member in ids (all running members
// if ids is empty) agrees on one leader among them, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context, ids ...uint64) (uint64, error) {
	if len(ids) == 0 {
		ids = c.Running()
	}
	for {
		var lead uint64
		agreed := true
		for _, id := range ids {
			n := c.Node(id)
			if n == nil {
				continue
			}
			l, ok := n.Leader()
			if !ok || (lead != 0 && l != lead) {
				agreed = false
				break
			}
			lead = l
		}
		if agreed && lead != 0 && slices.Contains(ids, lead) {
			return lead, nil
		}
		if err := pause(ctx, c.opts.Tick); err != nil {
			return 0, fmt.Errorf("no agreed leader among %v: %w", ids, err)
		}
	}
}

// WaitApplied waits until every running member in ids (all if empty) has
// applied at least index.
func (c *Cluster) WaitApplied(ctx context.Context, index uint64, ids ...uint64) error {
	if len(ids) == 0 {
		ids = c.Running()
	}
	for _, id := range ids {
		if n := c.Node(id); n != nil {
			if err := n.WaitApplied(ctx, index); err != nil {
				return fmt.Errorf("member %d: %w", id, err)
			}
		}
	}
	return nil
}

// Close stops every member.
func (c *Cluster) Close() {
	for _, id := range c.Running() {
		c.Stop(id)
	}
}

// pause waits d or until ctx ends. It paces polling loops; it is not used
// to order events.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
