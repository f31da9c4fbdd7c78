package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// tlsCluster runs consensus members over mutual-TLS transports on loopback.
type tlsCluster struct {
	t      *testing.T
	ca     *testCA // nil: members authenticate with testSecret instead
	boot   []consensus.Member
	mu     sync.Mutex
	nodes  map[uint64]*consensus.Node
	kvs    map[uint64]*consensustest.KV
	trs    map[uint64]*Transport
	stores map[uint64]*consensus.MemoryStore
	addrs  map[uint64]string
}

func newTLSCluster(t *testing.T, size int) *tlsCluster {
	return newCluster(t, size, newCA(t, "cluster CA"))
}

// newCluster runs members over mutual TLS with certificates from ca, or
// over plain TCP authenticated by testSecret if ca is nil.
func newCluster(t *testing.T, size int, ca *testCA) *tlsCluster {
	c := &tlsCluster{
		t: t, ca: ca,
		nodes: map[uint64]*consensus.Node{}, kvs: map[uint64]*consensustest.KV{},
		trs: map[uint64]*Transport{}, stores: map[uint64]*consensus.MemoryStore{},
		addrs: map[uint64]string{},
	}
	lns := map[uint64]net.Listener{}
	for id := uint64(1); id <= uint64(size); id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
		c.boot = append(c.boot, consensus.Member{ID: id, Addr: ln.Addr().String()})
		c.addrs[id] = ln.Addr().String()
		c.stores[id] = consensus.NewMemoryStore()
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	for id, ln := range lns {
		c.start(id, ln)
	}
	return c
}

// start starts (or restarts) member id; ln nil listens on its address again.
func (c *tlsCluster) start(id uint64, ln net.Listener) {
	c.t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", c.addrs[id]); err != nil {
			c.t.Fatal(err)
		}
	}
	cfg := Config{
		ID:                 id,
		ClusterID:          0xd157,
		Listener:           ln,
		MinBackoff:         5 * time.Millisecond,
		MaxBackoff:         100 * time.Millisecond,
		SnapshotChunkBytes: 1 << 10,
		Logger:             testLogger(c.t),
	}
	if c.ca != nil {
		withTLS(c.ca, c.ca.issue(c.t, id, time.Time{}))(&cfg)
	} else {
		cfg.Secret = testSecret
	}
	tr, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	var bootstrap []consensus.Member
	if int(id) <= len(c.boot) {
		bootstrap = c.boot
	}
	kv := consensustest.NewKV()
	n, err := consensus.Start(consensus.Config{
		ID:              id,
		Memory:          c.stores[id],
		Bootstrap:       bootstrap,
		Transport:       tr,
		TickInterval:    20 * time.Millisecond,
		SnapshotEntries: 40,
		TrailingEntries: 5,
		Logger:          testLogger(c.t),
	}, kv)
	if err != nil {
		tr.Close()
		c.t.Fatalf("start member %d: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id], c.kvs[id], c.trs[id] = n, kv, tr
	c.mu.Unlock()
}

// join starts member id with empty state: it waits to be added.
func (c *tlsCluster) join(id uint64) string {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.addrs[id] = ln.Addr().String()
	c.stores[id] = consensus.NewMemoryStore()
	c.mu.Unlock()
	c.start(id, ln)
	return ln.Addr().String()
}

func (c *tlsCluster) stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

func (c *tlsCluster) node(id uint64) *consensus.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// waitLeader waits until the members in ids (every running member if
// none) know the same leader.
func (c *tlsCluster) waitLeader(ids ...uint64) {
	c.t.Helper()
	waitFor(c.t, "a leader", nil, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		var lead uint64
		for id, n := range c.nodes {
			if len(ids) > 0 && !slices.Contains(ids, id) {
				continue
			}
			l, ok := n.Leader()
			if !ok || (lead != 0 && l != lead) {
				return false
			}
			lead = l
		}
		return lead != 0
	})
}

// propose proposes cmd via member id, retrying proposals that were never
// appended (no leader yet, leader change): those are safe to retry.
func (c *tlsCluster) propose(ctx context.Context, id uint64, cmd []byte) ([]byte, error) {
	for {
		res, err := c.node(id).Propose(ctx, cmd)
		if !errors.Is(err, consensus.ErrDropped) || ctx.Err() != nil {
			return res, err
		}
		c.waitLeader()
	}
}

func TestClusterOverMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newTLSCluster(t, 3)
	c.waitLeader()

	// Proposals through every member, linearizable reads on every member.
	for round := range 3 {
		for id := uint64(1); id <= 3; id++ {
			key, val := fmt.Sprintf("k%d", id), fmt.Sprintf("v%d-%d", id, round)
			res, err := c.propose(ctx, id, consensustest.PutCommand(key, val))
			if err != nil {
				t.Fatalf("propose via %d: %v", id, err)
			}
			if string(res) != val {
				t.Fatalf("propose via %d returned %q, want %q", id, res, val)
			}
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if err := c.node(id).ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier on %d: %v", id, err)
		}
		for k := 1; k <= 3; k++ {
			if got, _ := c.kvs[id].Get(fmt.Sprintf("k%d", k)); got != fmt.Sprintf("v%d-2", k) {
				t.Fatalf("member %d reads k%d = %q", id, k, got)
			}
		}
	}

	// A member that misses more than the log keeps catches up by a
	// snapshot streamed over the transport.
	c.stop(3)
	var last []byte
	for i := range 120 {
		var err error
		if last, err = c.propose(ctx, 1, consensustest.AppendCommand("log", fmt.Sprintf("%d,", i))); err != nil {
			t.Fatalf("propose %d with member 3 down: %v", i, err)
		}
	}
	c.start(3, nil)
	n3 := c.node(3)
	idx, err := c.node(1).ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := n3.WaitApplied(ctx, idx); err != nil {
		t.Fatalf("member 3 catching up: %v", err)
	}
	if got, _ := c.kvs[3].Get("log"); got != string(last) {
		t.Fatalf("member 3 has log of %d bytes, want %d", len(got), len(last))
	}
	// The node applies a snapshot as soon as its handler returns; the
	// transports count it once the acknowledgement crossed the wire.
	waitFor(t, "snapshot counted by both transports", nil, func() bool {
		return c.trs[3].Stats().SnapshotsReceived > 0 &&
			c.trs[1].Stats().SnapshotsSent+c.trs[2].Stats().SnapshotsSent > 0
	})
	if _, err := c.propose(ctx, 3, consensustest.PutCommand("after", "restart")); err != nil {
		t.Fatalf("propose via restarted member: %v", err)
	}
}

// A new member that knows nobody joins over mTLS: the leader dials it, it
// learns the leader's address from the handshake, catches up and serves;
// once removed, its traffic is refused.
func TestClusterJoinAndRemoveOverMutualTLS(t *testing.T) {
	testJoinAndRemove(t, newTLSCluster(t, 3))
}

// The same with a shared Secret: the new member admits the leader that
// contacts it (it knows nobody yet), then only the members it learns.
func TestClusterJoinAndRemoveWithSecret(t *testing.T) {
	testJoinAndRemove(t, newCluster(t, 3, nil))
}

func testJoinAndRemove(t *testing.T, c *tlsCluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.waitLeader()
	for i := range 50 {
		if _, err := c.propose(ctx, 1, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	addr := c.join(4)
	for { // AddVoter runs on the leader
		c.waitLeader(1, 2, 3)
		lead, _ := c.node(1).Leader()
		err := c.node(lead).AddVoter(ctx, 4, addr)
		if err == nil {
			break
		}
		if !errors.Is(err, consensus.ErrNotLeader) {
			t.Fatalf("AddVoter(4): %v", err)
		}
	}
	if _, err := c.propose(ctx, 4, consensustest.PutCommand("via", "4")); err != nil {
		t.Fatalf("propose via the new member: %v", err)
	}
	if err := c.node(4).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.kvs[4].Get("k49"); got != "v" {
		t.Fatalf("new member reads k49 = %q", got)
	}
	if err := c.node(1).RemoveMember(ctx, 4); err != nil {
		t.Fatalf("RemoveMember(4): %v", err)
	}
	// Every remaining member forgets 4 and refuses it.
	waitFor(t, "member 4 forgotten", nil, func() bool {
		for id := uint64(1); id <= 3; id++ {
			if _, ok := c.trs[id].Stats().Peers[4]; ok {
				return false
			}
		}
		return true
	})
	refused := c.trs[1].Stats().Refused
	c.trs[4].AddPeer(1, c.addrs[1])
	waitFor(t, "refusal of the removed member", nil, func() bool {
		c.trs[4].Send([]consensus.Message{{From: 4, To: 1, Kind: consensus.KindOther, Payload: []byte("x")}})
		return c.trs[1].Stats().Refused > refused
	})
}
