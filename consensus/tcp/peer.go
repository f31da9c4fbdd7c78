package tcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
)

type clockTimer = clock.Timer

// Peer connection states.
const (
	stateDialing = iota // an attempt is in progress: Send queues
	stateUp             // a stream is established: Send queues
	stateDown           // backing off or no address: Send drops
)

const writeBufferBytes = 64 << 10

// peer is the outbound stream to one member: a bounded queue filled by
// Send and drained by one writer goroutine (run) into batched writes.
type peer struct {
	t      *Transport
	id     uint64
	cancel context.CancelFunc // set before run starts
	wake   chan struct{}      // cap 1: the queue is non-empty
	redial chan struct{}      // cap 1: the address changed

	mu      sync.Mutex
	addr    string
	state   int
	conn    net.Conn // current stream, to close on an address change
	q       []consensus.Message
	qBytes  int
	dialled bool // a stream was established at least once

	sent, bytesSent, dropped, flushes atomic.Uint64
	stalls                            atomic.Uint64
	connects, reconnects, dialErrs    atomic.Uint64
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	state := stateDialing // queue while the first dial runs
	if addr == "" {
		state = stateDown
	}
	return &peer{
		t:      t,
		id:     id,
		addr:   addr,
		state:  state,
		wake:   make(chan struct{}, 1),
		redial: make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setAddr changes the address; a live stream to the old one is closed.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	if addr == p.addr {
		p.mu.Unlock()
		return
	}
	p.addr = addr
	c := p.conn
	p.mu.Unlock()
	p.t.log.Info("tcp: peer address changed", "peer", p.id, "addr", addr)
	signal(p.redial)
	if c != nil {
		c.Close()
	}
}

// enqueue appends the messages of msgs addressed to this peer to its
// queue, in order. It reports false if any was dropped.
//
// Log appends may fill only 7/8 of the queue: the rest is kept for
// heartbeats, votes and responses, so a burst of appends to a slow
// follower does not also starve the messages that keep leadership stable.
func (p *peer) enqueue(msgs []consensus.Message) bool {
	cfg := &p.t.cfg
	appendMsgs := cfg.MaxQueueMessages - cfg.MaxQueueMessages/8
	appendBytes := cfg.MaxQueueBytes - cfg.MaxQueueBytes/8
	queued, dropped := 0, 0
	p.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		if m.To != p.id {
			continue
		}
		n := len(m.Payload)
		switch {
		case p.state == stateDown:
			dropped++
		case m.From != cfg.ID || m.Kind > consensus.KindHeartbeat || n+1 > cfg.MaxFrameBytes:
			dropped++
		case len(p.q) >= cfg.MaxQueueMessages || p.qBytes+n > cfg.MaxQueueBytes:
			dropped++
		case m.Kind == consensus.KindAppend && (len(p.q) >= appendMsgs || p.qBytes+n > appendBytes):
			dropped++
		default:
			p.q = append(p.q, *m)
			p.qBytes += n
			queued++
		}
	}
	p.mu.Unlock()
	if queued > 0 {
		signal(p.wake)
	}
	if dropped > 0 {
		p.dropped.Add(uint64(dropped))
		return false
	}
	return true
}

// setState changes the state; entering stateDown drops the queue and
// reports the peer unreachable if anything was lost.
func (p *peer) setState(s int) {
	p.mu.Lock()
	p.state = s
	lost := 0
	if s == stateDown {
		lost = len(p.q)
		clear(p.q)
		p.q = p.q[:0]
		p.qBytes = 0
	}
	p.mu.Unlock()
	if lost > 0 {
		p.dropped.Add(uint64(lost))
		p.t.h.Unreachable(p.id)
	}
}

// backoff returns the jittered delay before attempt n (0-based).
func (p *peer) backoff(n int) time.Duration {
	lo, hi := p.t.cfg.MinBackoff, p.t.cfg.MaxBackoff
	d := lo
	for i := 0; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// run dials, streams and redials until ctx ends.
func (p *peer) run(ctx context.Context) {
	failures := 0
	for {
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		var err error
		if addr == "" {
			err = errNoAddr
		} else {
			p.setState(stateDialing)
			var conn net.Conn
			conn, err = p.t.dial(ctx, p.id, addr, streamMessages)
			if err == nil {
				failures = 0
				err = p.stream(ctx, conn, addr)
			} else {
				p.dialErrs.Add(1)
				failures++
			}
		}
		p.setState(stateDown)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errAddrChange) {
			p.t.log.Info("tcp: redialing peer at its new address", "peer", p.id)
		} else if err != errNoAddr {
			// Warn once per outage, not on every retry.
			level := slog.LevelWarn
			if failures > 1 {
				level = slog.LevelDebug
			}
			p.t.log.Log(ctx, level, "tcp: peer unreachable", "peer", p.id, "addr", addr, "err", err, "attempt", failures)
		}
		var wait <-chan time.Time
		var timer clockTimer
		if addr != "" {
			timer = p.t.cfg.Clock.NewTimer(p.backoff(max(failures-1, 0)))
			wait = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-p.redial:
			failures = 0
		case <-wait:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

var (
	errNoAddr     = errors.New("tcp: no address for peer")
	errAddrChange = errors.New("tcp: address changed")
	errStalled    = errors.New("tcp: stream to peer broke or stalled")
)

// stream writes queued messages to conn in batches until the connection
// fails, the address changes or ctx ends. It always closes conn.
func (p *peer) stream(ctx context.Context, conn net.Conn, addr string) error {
	// Aborts close the TCP connection under any TLS: tls.Conn.Close may
	// wait seconds to send close_notify to a peer that stopped reading.
	raw := rawConn(conn)
	p.mu.Lock()
	if p.addr != addr {
		p.mu.Unlock()
		raw.Close()
		return errAddrChange
	}
	p.conn = raw
	p.state = stateUp
	again := p.dialled
	p.dialled = true
	p.mu.Unlock()
	p.connects.Add(1)
	if again {
		p.reconnects.Add(1)
	}
	p.t.log.Debug("tcp: peer stream up", "peer", p.id, "addr", addr)

	// The acceptor answers with keepalive frames only; missing them for
	// LivenessTimeout means the link stalled (the kernel may still accept
	// our writes into its buffers for minutes): redial.
	broken := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		err := p.watch(conn)
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			p.stalls.Add(1)
			p.t.log.Warn("tcp: peer stream stalled, reconnecting", "peer", p.id, "addr", addr, "silent_for", p.t.cfg.LivenessTimeout)
		}
		close(broken)
	}()
	stopClose := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		stopClose()
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		raw.Close()
		<-watched
	}()

	bw := bufio.NewWriterSize(conn, writeBufferBytes)
	keepalive := time.NewTicker(p.t.cfg.KeepaliveInterval)
	defer keepalive.Stop()
	wrote := false // since the last tick
	var batch []consensus.Message
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-broken:
			return errStalled
		case <-p.redial:
			signal(p.redial) // run redials at once
			return errAddrChange
		case <-keepalive.C:
			if wrote {
				wrote = false
				continue
			}
			// Quiet for an interval: tell the receiver we are alive.
			conn.SetWriteDeadline(time.Now().Add(p.t.cfg.IOTimeout))
			if err := writeFrame(bw, frameKeepalive); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			continue
		case <-p.wake:
		}
		p.mu.Lock()
		batch, p.q = p.q, batch[:0]
		p.qBytes = 0
		p.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(p.t.cfg.IOTimeout))
		var bytes uint64
		var err error
		for i, m := range batch {
			var n int
			n, err = writeMessage(bw, m)
			if err == nil && p.t.flushEach {
				err = bw.Flush()
			}
			if err != nil {
				p.dropped.Add(uint64(len(batch) - i))
				break
			}
			bytes += uint64(n)
		}
		if err == nil {
			err = bw.Flush()
			if err != nil {
				p.dropped.Add(uint64(len(batch)))
			}
		}
		n := len(batch)
		clear(batch)
		if err != nil {
			p.t.h.Unreachable(p.id)
			return err
		}
		p.sent.Add(uint64(n))
		p.bytesSent.Add(bytes)
		p.flushes.Add(1)
		wrote = true
	}
}

// watch reads the keepalive frames the receiver sends back on a message
// stream, each within LivenessTimeout, until the stream fails.
func (p *peer) watch(conn net.Conn) error {
	for {
		conn.SetReadDeadline(time.Now().Add(p.t.cfg.LivenessTimeout))
		typ, _, err := readFrameHeader(conn, 0)
		if err != nil {
			return err
		}
		if typ != frameKeepalive {
			return fmt.Errorf("tcp: frame type %d from a message stream's receiver: %w", typ, ErrMalformed)
		}
	}
}

func (p *peer) stats() PeerStats {
	p.mu.Lock()
	s := PeerStats{
		Addr:        p.addr,
		Connected:   p.state == stateUp,
		Queued:      len(p.q),
		QueuedBytes: p.qBytes,
	}
	p.mu.Unlock()
	s.Sent = p.sent.Load()
	s.BytesSent = p.bytesSent.Load()
	s.Dropped = p.dropped.Load()
	s.Stalls = p.stalls.Load()
	s.Batches = p.flushes.Load()
	s.Connects = p.connects.Load()
	s.Reconnects = p.reconnects.Load()
	s.DialErrors = p.dialErrs.Load()
	return s
}
