package tcp

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// gateProxy forwards one directed link (the connections one member dials
// to one peer) and can be switched to stall: it keeps every connection
// open and keeps accepting new ones, but forwards no byte in either
// direction until healed, so the writers' kernel buffers accept their
// writes and nothing arrives.
type gateProxy struct {
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	healed chan struct{} // closed while forwarding
	epoch  int           // stalls so far
	// lossy: a connection open during a stall never forwards again (as if
	// its in-flight bytes were lost for good); only new ones do.
	lossy   bool
	conns   map[net.Conn]struct{}
	stopped bool
}

func newGateProxy(t *testing.T, target string) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gateProxy{ln: ln, target: target, done: make(chan struct{}), healed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *gateProxy) addr() string { return p.ln.Addr().String() }

// stall stops forwarding; heal resumes it.
func (p *gateProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		p.healed = make(chan struct{})
		p.epoch++
	default:
	}
}

func (p *gateProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
}

// gate blocks while the proxy is stalled (for a lossy proxy, for ever
// once the connection accepted in epoch saw a stall); false means the
// proxy stopped.
func (p *gateProxy) gate(epoch int) bool {
	p.mu.Lock()
	healed, dead := p.healed, p.lossy && p.epoch != epoch
	p.mu.Unlock()
	if dead {
		<-p.done
		return false
	}
	select {
	case <-healed:
	case <-p.done:
		return false
	}
	p.mu.Lock()
	dead = p.lossy && p.epoch != epoch
	p.mu.Unlock()
	if dead {
		<-p.done
		return false
	}
	return true
}

// epochNow is the epoch a connection accepted now belongs to: -1, never
// current, while stalled.
func (p *gateProxy) epochNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		return p.epoch
	default:
		return -1
	}
}

func (p *gateProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *gateProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(out) {
			in.Close()
			return
		}
		epoch := p.epochNow()
		p.wg.Add(2)
		go p.pipe(in, out, epoch)
		go p.pipe(out, in, epoch)
	}
}

// pipe copies src to dst, waiting at the gate before every write and
// before passing on a close (a FIN is bytes on the wire too); either side
// failing closes both.
func (p *gateProxy) pipe(src, dst net.Conn, epoch int) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !p.gate(epoch) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *gateProxy) close() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.done)
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// healCluster runs three members with default consensus and transport
// timings, each link from member i to member j through its own
// gateProxy.
type healCluster struct {
	nodes   map[uint64]*consensus.Node
	trs     map[uint64]*Transport
	proxies map[[2]uint64]*gateProxy // [from, to]
}

func newHealCluster(t *testing.T, lossy bool) *healCluster {
	const size = 3
	c := &healCluster{nodes: map[uint64]*consensus.Node{}, trs: map[uint64]*Transport{}, proxies: map[[2]uint64]*gateProxy{}}
	lns := map[uint64]net.Listener{}
	for id := uint64(1); id <= size; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
		for _, p := range c.proxies {
			p.close()
		}
	})
	for from := uint64(1); from <= size; from++ {
		for to := uint64(1); to <= size; to++ {
			if from != to {
				p := newGateProxy(t, lns[to].Addr().String())
				p.lossy = lossy
				c.proxies[[2]uint64{from, to}] = p
			}
		}
	}
	for id := uint64(1); id <= size; id++ {
		// Each member reaches every peer through its own proxy.
		var boot []consensus.Member
		for j := uint64(1); j <= size; j++ {
			addr := lns[j].Addr().String()
			if j != id {
				addr = c.proxies[[2]uint64{id, j}].addr()
			}
			boot = append(boot, consensus.Member{ID: j, Addr: addr})
		}
		tr, err := New(Config{ID: id, ClusterID: 0x4ea1, Listener: lns[id], Secret: testSecret, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := consensus.Start(consensus.Config{
			ID:        id,
			Memory:    consensus.NewMemoryStore(),
			Bootstrap: boot,
			Transport: tr,
			Logger:    testLogger(t),
		}, consensustest.NewKV())
		if err != nil {
			tr.Close()
			t.Fatalf("start member %d: %v", id, err)
		}
		c.nodes[id], c.trs[id] = n, tr
	}
	return c
}

// setLinks stalls (or heals) every link to and from member id.
func (c *healCluster) setLinks(id uint64, stalled bool) {
	for k, p := range c.proxies {
		if k[0] == id || k[1] == id {
			if stalled {
				p.stall()
			} else {
				p.heal()
			}
		}
	}
}

// A follower cut off by links that stall without breaking, for longer
// than the transport's LivenessTimeout, while the leader keeps
// committing, has applied everything the leader had committed within two
// election timeouts of the links healing. Every timing is the default one
// of consensus.Config and tcp.Config: that is what the bound is about.
func TestHealedFollowerCatchesUpWithinTwoElectionTimeouts(t *testing.T) {
	// Buffered: what was written during the stall arrives after it.
	t.Run("buffered", func(t *testing.T) { testHeal(t, false) })
	// Lossy: connections open during the stall stay dead, so only new
	// ones (dialed after the heal) carry traffic.
	t.Run("lossy", func(t *testing.T) { testHeal(t, true) })
}

func testHeal(t *testing.T, lossy bool) {
	const (
		electionTimeout = consensus.DefaultElectionTicks * consensus.DefaultTickInterval
		bound           = 2 * electionTimeout
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newHealCluster(t, lossy)

	var leader uint64
	waitFor(t, "a leader known to all", nil, func() bool {
		leader = 0
		for _, n := range c.nodes {
			l, ok := n.Leader()
			if !ok || (leader != 0 && l != leader) {
				return false
			}
			leader = l
		}
		return leader != 0
	})
	var follower uint64
	for id := range c.nodes {
		if id != leader {
			follower = id
			break
		}
	}
	lead, fol := c.nodes[leader], c.nodes[follower]
	if _, err := lead.Propose(ctx, consensustest.PutCommand("k", "before")); err != nil {
		t.Fatalf("propose before the stall: %v", err)
	}
	if err := fol.WaitApplied(ctx, lead.Status().Commit); err != nil {
		t.Fatal(err)
	}

	// The leader keeps committing throughout.
	stop := make(chan struct{})
	var proposer sync.WaitGroup
	proposer.Add(1)
	go func() {
		defer proposer.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			lead.Propose(pctx, consensustest.PutCommand("k", fmt.Sprint(i)))
			pcancel()
		}
	}()
	defer func() {
		close(stop)
		proposer.Wait()
	}()

	// The worst moment to heal: the link has been down long enough for
	// the leader's redials to back off to MaxBackoff, and its latest
	// attempt (a handshake that went unanswered for DialTimeout) has just
	// failed, so it is waiting out a whole backoff.
	cfg := c.trs[leader].cfg
	capped := 1 // dial failures after which the backoff is at its cap
	for d := cfg.MinBackoff; d < cfg.MaxBackoff; d *= 2 {
		capped++
	}
	before := c.trs[leader].Stats().Peers[follower]
	c.setLinks(follower, true)
	stalledAt := time.Now()
	start := lead.Status().Commit
	failed := func() uint64 { return c.trs[leader].Stats().Peers[follower].DialErrors - before.DialErrors }
	outage := time.Duration(capped+1) * (cfg.DialTimeout + cfg.MaxBackoff)
	deadline := time.Now().Add(cfg.LivenessTimeout + 2*outage)
	for failed() < uint64(capped) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v the leader's dialer failed %d times, want %d", cfg.LivenessTimeout+2*outage, failed(), capped)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for n := failed(); failed() == n; {
		if time.Now().After(deadline) {
			t.Fatalf("the leader's dialer stopped failing while the links stall")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The worst case happened: the streams stalled without breaking, the
	// leader committed without the follower, and the follower fell behind.
	st := lead.Status()
	if st.Leader != leader || st.Commit <= start {
		t.Fatalf("during the stall the leader is %d (was %d) and committed up to %d (from %d)", st.Leader, leader, st.Commit, start)
	}
	if got := c.trs[leader].Stats().Peers[follower].Stalls; got == before.Stalls {
		t.Fatalf("the leader's stream to member %d was never detected as stalled", follower)
	}
	if fst := fol.Status(); fst.Applied >= st.Commit {
		t.Fatalf("the cut-off follower applied %d, the leader committed %d", fst.Applied, st.Commit)
	}

	target := lead.Status().Commit
	healed := time.Now()
	c.setLinks(follower, false)
	if err := fol.WaitApplied(ctx, target); err != nil {
		t.Fatalf("follower %d catching up to %d: %v", follower, target, err)
	}
	took := time.Since(healed)
	t.Logf("heal-to-caught-up: %v (follower %d, index %d, stalled %v, bound %v)", took.Round(time.Millisecond), follower, target, healed.Sub(stalledAt).Round(100*time.Millisecond), bound)
	if took > bound {
		t.Fatalf("follower %d caught up %v after the links healed, want at most %v (2 election timeouts)", follower, took, bound)
	}
}
