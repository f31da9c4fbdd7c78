package tcp

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

// fastLiveness makes stalls show within a fraction of a second.
func fastLiveness(c *Config) {
	c.KeepaliveInterval = 50 * time.Millisecond
	c.LivenessTimeout = 400 * time.Millisecond
	c.DialTimeout = 400 * time.Millisecond
	c.IOTimeout = 400 * time.Millisecond
}

// Connections that announce the largest frame and then stall hold only
// what they sent (plus a bounded step), not what they announced, and are
// closed by the idle deadline; those that stall in the handshake are closed
// by the handshake deadline.
func TestStalledFramesPinNoMemory(t *testing.T) {
	const (
		maxFrame  = 4 << 20
		messages  = 50 // message streams, each from another sender
		snapshots = 30 // snapshot streams, all from member 1
		partial   = 20 // stalled halfway through the hello
	)
	b, recB := newTransport(t, 2, func(c *Config) {
		fastLiveness(c)
		c.MaxFrameBytes = maxFrame
		c.MaxConns = 2 * (messages + snapshots + partial)
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	var conns []net.Conn
	sent := bytes.Repeat([]byte{byte(consensus.KindAppend)}, 1000)
	for i := range messages + snapshots {
		hs := handshake{stream: streamMessages, from: uint64(100 + i), to: 2}
		typ := frameMessage
		if i >= messages {
			hs = handshake{stream: streamSnapshot, from: 1, to: 2}
			typ = frameSnapHeader
		}
		c := rawDial(t, b, hs)
		if err := readResponse(c); err != nil {
			t.Fatal(err)
		}
		c.Write(append(appendFrameHeader(nil, typ, maxFrame), sent...))
		conns = append(conns, c)
	}
	for range partial {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write(handshake{stream: streamMessages, from: 1, to: 2}.append(nil)[:20])
		conns = append(conns, c)
	}

	// Watch the heap until every connection is closed.
	var peak uint64
	closed := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if err != nil && !isReset(err) {
				t.Errorf("connection not closed by the transport: %v", err)
			}
		})
	}
	go func() { wg.Wait(); close(closed) }()
	for done := false; !done; {
		select {
		case <-closed:
			done = true
		case <-time.After(5 * time.Millisecond):
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > base {
			peak = max(peak, ms.HeapInuse-base)
		}
	}
	announced := uint64(messages+snapshots) * maxFrame
	t.Logf("announced %d MiB; heap grew by at most %.1f MiB", announced>>20, float64(peak)/(1<<20))
	if peak > announced/8 {
		t.Fatalf("stalled connections pinned %d MiB of the %d MiB they announced", peak>>20, announced>>20)
	}
	s := b.Stats()
	if s.IdleTimeouts != messages+snapshots {
		t.Fatalf("IdleTimeouts = %d, want %d", s.IdleTimeouts, messages+snapshots)
	}
	if s.Refused != partial {
		t.Fatalf("Refused = %d, want %d (the stalled handshakes)", s.Refused, partial)
	}
	if n := len(recB.received()); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
}

// stallProxy forwards TCP connections to a target until stall is called.
// Then every connection it holds, and every one it accepts until heal, is
// a black hole: it reads and discards, forwards nothing and never closes,
// the way a link whose state was lost looks to both ends (their writes
// still succeed into kernel buffers). Connections accepted after heal are
// forwarded again.
type stallProxy struct {
	ln     net.Listener
	target string
	stall  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		if p.stall.Load() {
			p.wg.Go(func() { io.Copy(io.Discard, c) })
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.track(up)
		// Once stalled, a connection stays dead even after heal.
		dead := &atomic.Bool{}
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if p.stall.Load() {
					dead.Store(true)
				}
				if n > 0 && !dead.Load() {
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					if !dead.Load() {
						dst.Close()
					}
					return
				}
			}
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// A link that stops forwarding without closing (both ends' writes still
// succeed) is detected by the keepalives: once a path works again, messages
// flow within about LivenessTimeout + DialTimeout + MaxBackoff, not after
// minutes of TCP retransmissions.
func TestStalledLinkRecovers(t *testing.T) {
	b, recB := newTransport(t, 2, fastLiveness)
	proxy := newStallProxy(t, b.Addr().String())
	a, recA := newTransport(t, 1, func(c *Config) {
		fastLiveness(c)
		c.MaxBackoff = 50 * time.Millisecond
	})
	a.AddPeer(2, proxy.addr())
	b.AddPeer(1, "")
	cfg := a.cfg
	// Generous: a loaded machine can delay each step.
	bound := 3 * (cfg.LivenessTimeout + cfg.DialTimeout + cfg.MaxBackoff)

	seq := 0
	deliveredWithin := func(what string, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			seq++
			m := msg(1, 2, seq)
			a.Send([]consensus.Message{m})
			deadline := time.Now().Add(20 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, got := range recB.received() {
					if bytes.Equal(got.Payload, m.Payload) {
						return time.Since(start)
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			if time.Since(start) > d {
				t.Fatalf("%s: no message delivered within %v", what, d)
			}
		}
	}
	deliveredWithin("before the stall", 10*time.Second)

	proxy.stall.Store(true)
	start := time.Now()
	waitFor(t, "the sender to detect the stall", nil, func() bool {
		a.Send([]consensus.Message{msg(1, 2, 0)}) // like raft's heartbeats
		return a.Stats().Peers[2].Stalls >= 1
	})
	if d := time.Since(start); d > bound {
		t.Fatalf("stall detected after %v, want within %v", d, bound)
	}
	// The receiver closes its end of the dead stream too.
	waitFor(t, "the receiver to close the idle stream", nil, func() bool { return b.Stats().IdleTimeouts >= 1 })

	proxy.stall.Store(false)
	took := deliveredWithin("after the link healed", bound)
	t.Logf("stall detected; messages flow again %v after the heal (bound %v)", took, bound)
	if len(recA.received()) != 0 {
		t.Fatalf("a received messages")
	}
}

// A quiet but healthy stream stays up: keepalives flow both ways, so
// neither end's deadline fires.
func TestQuietStreamStaysUp(t *testing.T) {
	quiet := func(c *Config) {
		c.KeepaliveInterval = 20 * time.Millisecond
		c.LivenessTimeout = time.Second
	}
	b, recB := newTransport(t, 2, quiet)
	a, _ := newTransport(t, 1, quiet)
	a.AddPeer(2, b.Addr().String())
	b.AddPeer(1, a.Addr().String())
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recB.waitFor(t, "first message", func() bool { return len(recB.received()) == 1 })
	before := a.Stats().Peers[2].Connects
	// Several liveness timeouts of silence (the silence is what is
	// tested, so this sleep is not a wait for a condition).
	time.Sleep(2 * a.cfg.LivenessTimeout)
	ps := a.Stats().Peers[2]
	if ps.Connects != before || ps.Stalls != 0 || b.Stats().IdleTimeouts != 0 {
		t.Fatalf("quiet stream was torn down: %+v, receiver idle timeouts %d", ps, b.Stats().IdleTimeouts)
	}
	a.Send([]consensus.Message{msg(1, 2, 1)})
	recB.waitFor(t, "message after the quiet spell", func() bool { return len(recB.received()) == 2 })
}
