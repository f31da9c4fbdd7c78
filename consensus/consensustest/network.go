// Package consensustest provides an in-memory network with fault injection,
// a small key-value state machine and cluster helpers for testing code
// built on package consensus.
package consensustest

import (
	"container/heap"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
)

// Faults configures the network's misbehaviour. The zero value is a
// perfect network.
type Faults struct {
	Drop      float64       // probability that a message is lost
	Duplicate float64       // probability that a message is delivered twice
	Reorder   float64       // probability that a message is held back by up to MaxDelay, letting later ones overtake it
	MaxDelay  time.Duration // upper bound of a held-back message's delay
}

// ErrUnreachable is returned by SendSnapshot when the link is cut.
var ErrUnreachable = errors.New("consensustest: peer unreachable")

// NetStats counts what the network did.
type NetStats struct {
	Sent, Delivered, Dropped, Duplicated, Delayed, Snapshots uint64
}

// Network is an in-memory network connecting consensus members by id. It
// can drop, duplicate, delay, reorder and partition messages. All random
// choices come from one generator seeded by NewNetwork, so a run is
// reproducible up to goroutine scheduling (which decides the order in which
// members send). The zero value is not usable.
type Network struct {
	mu        sync.Mutex
	rng       *rand.Rand
	clk       clock.Clock
	faults    Faults
	endpoints map[uint64]*endpoint
	cut       map[[2]uint64]bool // directed links that are down
	// dropped are directed links whose sender removed the receiver from
	// its transport; like a real transport's, they lose the messages
	// still queued on them.
	dropped map[[2]uint64]bool
	stats   NetStats
}

// NewNetwork returns a perfect network whose fault decisions derive from seed.
func NewNetwork(seed uint64) *Network {
	return &Network{
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		clk:       clock.Real,
		endpoints: make(map[uint64]*endpoint),
		cut:       make(map[[2]uint64]bool),
		dropped:   make(map[[2]uint64]bool),
	}
}

// SetFaults replaces the fault configuration.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// Partition splits the members into groups that cannot reach each other.
// Members in no group are isolated from everyone. It replaces any earlier
// partition.
func (n *Network) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	group := map[uint64]int{}
	for i, g := range groups {
		for _, id := range g {
			group[id] = i + 1
		}
	}
	n.cut = make(map[[2]uint64]bool)
	ids := n.knownIDsLocked(group)
	for _, a := range ids {
		for _, b := range ids {
			if a != b && (group[a] == 0 || group[a] != group[b]) {
				n.cut[[2]uint64{a, b}] = true
			}
		}
	}
}

func (n *Network) knownIDsLocked(extra map[uint64]int) []uint64 {
	seen := map[uint64]bool{}
	var ids []uint64
	for id := range n.endpoints {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for id := range extra {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// Isolate cuts member id off from every other member, in both directions.
func (n *Network) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range n.knownIDsLocked(nil) {
		if o != id {
			n.cut[[2]uint64{id, o}] = true
			n.cut[[2]uint64{o, id}] = true
		}
	}
}

// Cut takes down the directed link from -> to.
func (n *Network) Cut(from, to uint64) {
	n.mu.Lock()
	n.cut[[2]uint64{from, to}] = true
	n.mu.Unlock()
}

// Heal restores every link (faults set by SetFaults stay).
func (n *Network) Heal() {
	n.mu.Lock()
	n.cut = make(map[[2]uint64]bool)
	n.mu.Unlock()
}

// Stats returns the network's counters.
func (n *Network) Stats() NetStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Transport returns a Transport for member id. A restarted member gets a
// new Transport for the same id; the old one must have been closed.
func (n *Network) Transport(id uint64) consensus.Transport {
	return &endpoint{net: n, id: id, wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// endpoint is one member's attachment to the network.
type endpoint struct {
	net  *Network
	id   uint64
	h    consensus.Handler
	mu   sync.Mutex
	q    deliveryHeap
	seq  uint64
	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type delivery struct {
	at  time.Time
	seq uint64
	msg consensus.Message
}

type deliveryHeap []delivery

func (h deliveryHeap) Len() int { return len(h) }
func (h deliveryHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h deliveryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deliveryHeap) Push(x any)   { *h = append(*h, x.(delivery)) }
func (h *deliveryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (e *endpoint) Start(h consensus.Handler) error {
	e.h = h
	e.net.mu.Lock()
	e.net.endpoints[e.id] = e
	e.net.mu.Unlock()
	e.wg.Add(1)
	go e.run()
	return nil
}

func (e *endpoint) AddPeer(id uint64, _ string) {
	e.net.mu.Lock()
	delete(e.net.dropped, [2]uint64{e.id, id})
	e.net.mu.Unlock()
}

func (e *endpoint) RemovePeer(id uint64) {
	e.net.mu.Lock()
	e.net.dropped[[2]uint64{e.id, id}] = true
	e.net.mu.Unlock()
}

func (e *endpoint) Close() error {
	e.once.Do(func() {
		e.net.mu.Lock()
		if e.net.endpoints[e.id] == e {
			delete(e.net.endpoints, e.id)
		}
		e.net.mu.Unlock()
		close(e.stop)
		e.wg.Wait()
	})
	return nil
}

// Send applies the network's faults and schedules deliveries.
func (e *endpoint) Send(msgs []consensus.Message) {
	n := e.net
	now := n.clk.Now()
	type sched struct {
		dst *endpoint
		d   delivery
	}
	var out []sched
	var unreachable []uint64
	n.mu.Lock()
	for _, m := range msgs {
		n.stats.Sent++
		dst := n.endpoints[m.To]
		if dst == nil || n.cut[[2]uint64{e.id, m.To}] || n.dropped[[2]uint64{e.id, m.To}] {
			n.stats.Dropped++
			unreachable = append(unreachable, m.To)
			continue
		}
		f := n.faults
		if f.Drop > 0 && n.rng.Float64() < f.Drop {
			n.stats.Dropped++
			continue
		}
		copies := 1
		if f.Duplicate > 0 && n.rng.Float64() < f.Duplicate {
			copies = 2
			n.stats.Duplicated++
		}
		for range copies {
			at := now
			if f.MaxDelay > 0 && f.Reorder > 0 && n.rng.Float64() < f.Reorder {
				at = now.Add(time.Duration(n.rng.Int64N(int64(f.MaxDelay) + 1)))
				n.stats.Delayed++
			}
			out = append(out, sched{dst, delivery{at: at, msg: m}})
		}
	}
	n.mu.Unlock()
	for _, s := range out {
		s.dst.enqueue(s.d)
	}
	for _, id := range unreachable {
		e.h.Unreachable(id)
	}
}

func (e *endpoint) enqueue(d delivery) {
	e.mu.Lock()
	e.seq++
	d.seq = e.seq
	heap.Push(&e.q, d)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run delivers due messages in batches.
func (e *endpoint) run() {
	defer e.wg.Done()
	clk := e.net.clk
	t := clk.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := clk.Now()
		var batch []consensus.Message
		var next time.Duration = -1
		e.mu.Lock()
		for e.q.Len() > 0 {
			if d := e.q[0]; d.at.After(now) {
				next = d.at.Sub(now)
				break
			}
			batch = append(batch, heap.Pop(&e.q).(delivery).msg)
		}
		e.mu.Unlock()
		if len(batch) > 0 {
			// Links cut after sending also lose messages in flight.
			e.net.mu.Lock()
			kept := batch[:0]
			for _, m := range batch {
				if link := [2]uint64{m.From, e.id}; e.net.cut[link] || e.net.dropped[link] {
					e.net.stats.Dropped++
					continue
				}
				e.net.stats.Delivered++
				kept = append(kept, m)
			}
			e.net.mu.Unlock()
			if len(kept) > 0 {
				e.h.HandleMessages(kept)
			}
			continue
		}
		if next >= 0 {
			t.Reset(next)
		}
		select {
		case <-e.stop:
			return
		case <-e.wake:
		case <-t.C():
		}
	}
}

// SendSnapshot streams body to the receiver in 32 KiB chunks; a link cut
// mid-stream fails the transfer.
func (e *endpoint) SendSnapshot(ctx context.Context, msg consensus.Message, body io.Reader) error {
	n := e.net
	n.mu.Lock()
	dst := n.endpoints[msg.To]
	down := dst == nil || n.cut[[2]uint64{e.id, msg.To}] || n.cut[[2]uint64{msg.To, e.id}]
	if !down && n.faults.Drop > 0 && n.rng.Float64() < n.faults.Drop {
		down = true
	}
	n.stats.Snapshots++
	n.mu.Unlock()
	if down {
		return ErrUnreachable
	}
	cr := &chunkReader{r: body, ok: func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return !n.cut[[2]uint64{e.id, msg.To}] && n.endpoints[msg.To] == dst
	}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-dst.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return dst.h.HandleSnapshot(ctx, msg, cr)
}

type chunkReader struct {
	r  io.Reader
	ok func() bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if !c.ok() {
		return 0, ErrUnreachable
	}
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	return c.r.Read(p)
}
