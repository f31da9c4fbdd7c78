package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/distkit/distkit/consensus"
)

// tcpTransport carries raft traffic between kvnode processes over TCP,
// optionally with mutual TLS. Each member dials one message stream to every
// peer (coalescing queued messages into each write) and one short-lived
// connection per snapshot.
//
// Wire format. A connection opens with a preface: the magic "KVR1", a
// stream type ('M' messages, 'S' snapshot), and the sender's and the
// receiver's member ids (8 bytes each, big endian). Then frames follow:
// a 4-byte big-endian length n (at most maxFrame), then n bytes: one kind
// byte and the payload. A snapshot stream is one frame holding the
// snapshot's header message, body chunks (kind chunkKind, an empty one
// ends the body), and then the receiver answers one frame: empty for
// success, otherwise the error text.
//
// The receiver refuses a connection whose receiver id is not its own or
// whose sender is not a known member, and closes any connection that
// breaks the format. With TLS, both sides present a certificate signed by
// the configured CA.
type tcpTransport struct {
	id     uint64
	ln     net.Listener
	tlsCfg *tls.Config // nil: plain TCP
	log    *slog.Logger

	mu      sync.Mutex
	handler consensus.Handler
	peers   map[uint64]*peer
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}
	started bool
}

const (
	transportMagic = "KVR1"
	maxFrame       = 16 << 20
	chunkKind      = 0xff
	chunkSize      = 256 << 10
	peerQueue      = 512
	dialTimeout    = time.Second
	ioTimeout      = 10 * time.Second
	redialBackoff  = 200 * time.Millisecond
)

var errFrame = errors.New("kvnode: bad raft frame")

type peer struct {
	id   uint64
	addr string
	q    chan []consensus.Message
	done chan struct{}
}

// newTCPTransport serves raft traffic for member id on ln.
func newTCPTransport(id uint64, ln net.Listener, tlsCfg *tls.Config, log *slog.Logger) *tcpTransport {
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	return &tcpTransport{
		id: id, ln: ln, tlsCfg: tlsCfg, log: log,
		peers: make(map[uint64]*peer),
		conns: make(map[net.Conn]struct{}),
		stop:  make(chan struct{}),
	}
}

// Start implements consensus.Transport.
func (t *tcpTransport) Start(h consensus.Handler) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		return errors.New("kvnode: transport already started or closed")
	}
	t.started = true
	t.handler = h
	t.wg.Add(1)
	go t.accept()
	return nil
}

// Close implements consensus.Transport.
func (t *tcpTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.stop)
	for c := range t.conns {
		c.Close()
	}
	for _, p := range t.peers {
		close(p.done)
	}
	t.peers = nil
	t.mu.Unlock()
	err := t.ln.Close()
	t.wg.Wait()
	return err
}

// AddPeer implements consensus.Transport.
func (t *tcpTransport) AddPeer(id uint64, addr string) {
	if id == t.id {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		if p.addr == addr || addr == "" {
			return // an empty address (a promotion, say) keeps the known one
		}
		close(p.done)
	}
	p := &peer{id: id, addr: addr, q: make(chan []consensus.Message, peerQueue), done: make(chan struct{})}
	t.peers[id] = p
	t.wg.Add(1)
	go t.runPeer(p)
}

// RemovePeer implements consensus.Transport.
func (t *tcpTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok && !t.closed {
		close(p.done)
		delete(t.peers, id)
	}
}

func (t *tcpTransport) knows(id uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.peers[id]
	return ok
}

// Send implements consensus.Transport. It never blocks: messages for a
// peer whose queue is full are dropped and the peer reported unreachable.
func (t *tcpTransport) Send(msgs []consensus.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(msgs) > 0 {
		to := msgs[0].To
		n := 1
		for n < len(msgs) && msgs[n].To == to {
			n++
		}
		batch := msgs[:n:n]
		msgs = msgs[n:]
		p, ok := t.peers[to]
		if !ok {
			continue
		}
		select {
		case p.q <- batch:
		default:
			go t.handler.Unreachable(to)
		}
	}
}

func (t *tcpTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpTransport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

func (t *tcpTransport) dial(ctx context.Context, addr string, stream byte, to uint64) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	var c net.Conn
	var err error
	if t.tlsCfg != nil {
		td := tls.Dialer{NetDialer: &d, Config: t.tlsCfg}
		c, err = td.DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	pre := make([]byte, 0, 21)
	pre = append(pre, transportMagic...)
	pre = append(pre, stream)
	pre = binary.BigEndian.AppendUint64(pre, t.id)
	pre = binary.BigEndian.AppendUint64(pre, to)
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(pre); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// runPeer owns the message stream to one peer.
func (t *tcpTransport) runPeer(p *peer) {
	defer t.wg.Done()
	var c net.Conn
	var w *bufio.Writer
	var lastFail time.Time
	defer func() {
		if c != nil {
			t.untrack(c)
		}
	}()
	for {
		var batch []consensus.Message
		select {
		case <-p.done:
			return
		case batch = <-p.q:
		}
		if c == nil {
			if time.Since(lastFail) < redialBackoff {
				t.handler.Unreachable(p.id)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
			nc, err := t.dial(ctx, p.addr, 'M', p.id)
			cancel()
			if err != nil {
				lastFail = time.Now()
				t.log.Debug("raft dial failed", "peer", p.id, "addr", p.addr, "err", err)
				t.handler.Unreachable(p.id)
				continue
			}
			if !t.track(nc) {
				return
			}
			c, w = nc, bufio.NewWriterSize(nc, 64<<10)
			// Drain replies so a peer's writes never block; the stream is
			// one-way, so anything received is ignored until EOF.
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				io.Copy(io.Discard, nc)
			}()
		}
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		err := writeMsgs(w, batch)
	more:
		for err == nil {
			select {
			case batch = <-p.q:
				err = writeMsgs(w, batch)
			default:
				break more
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			t.log.Debug("raft write failed", "peer", p.id, "err", err)
			t.untrack(c)
			c, w = nil, nil
			lastFail = time.Now()
			t.handler.Unreachable(p.id)
		}
	}
}

func writeMsgs(w *bufio.Writer, msgs []consensus.Message) error {
	for _, m := range msgs {
		if err := writeFrame(w, byte(m.Kind), m.Payload); err != nil {
			return err
		}
	}
	return nil
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload)+1 > maxFrame {
		return fmt.Errorf("%w: %d bytes", errFrame, len(payload))
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)+1))
	hdr[4] = kind
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame. It never allocates more than maxFrame bytes
// and returns errFrame for a frame that breaks the format.
func readFrame(r io.Reader) (kind byte, payload []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("%w: length %d", errFrame, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, io.ErrUnexpectedEOF
	}
	return buf[0], buf[1:], nil
}

// readPreface reads and checks a connection's preface.
func readPreface(r io.Reader) (stream byte, from, to uint64, err error) {
	var pre [21]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return 0, 0, 0, err
	}
	if string(pre[:4]) != transportMagic || (pre[4] != 'M' && pre[4] != 'S') {
		return 0, 0, 0, fmt.Errorf("%w: bad preface", errFrame)
	}
	return pre[4], binary.BigEndian.Uint64(pre[5:]), binary.BigEndian.Uint64(pre[13:]), nil
}

func (t *tcpTransport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. too many open files
			continue
		}
		if !t.track(c) {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(c)
			if err := t.serveConn(c); err != nil && !errors.Is(err, io.EOF) {
				select {
				case <-t.stop:
				default:
					t.log.Debug("raft connection closed", "remote", c.RemoteAddr().String(), "err", err)
				}
			}
		}()
	}
}

func (t *tcpTransport) serveConn(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return err
		}
	}
	r := bufio.NewReaderSize(c, 64<<10)
	stream, from, to, err := readPreface(r)
	if err != nil {
		return err
	}
	if to != t.id {
		return fmt.Errorf("%w: addressed to member %d, this is %d", errFrame, to, t.id)
	}
	if stream == 'S' {
		return t.serveSnapshot(c, r, from)
	}
	var batch []consensus.Message
	for {
		// Heartbeats arrive at least every tick; a silent stream is dead.
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		kind, payload, err := readFrame(r)
		if err != nil {
			return err
		}
		if !t.knows(from) {
			continue // not (or no longer) a member: refuse its traffic
		}
		batch = append(batch, consensus.Message{From: from, To: t.id, Kind: consensus.MessageKind(kind), Payload: payload})
		if r.Buffered() == 0 || len(batch) >= 256 {
			t.handler.HandleMessages(batch)
			batch = nil
		}
	}
}

// SendSnapshot implements consensus.Transport.
func (t *tcpTransport) SendSnapshot(ctx context.Context, msg consensus.Message, body io.Reader) error {
	t.mu.Lock()
	p, ok := t.peers[msg.To]
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("kvnode: snapshot for unknown member %d", msg.To)
	}
	c, err := t.dial(ctx, p.addr, 'S', msg.To)
	if err != nil {
		return err
	}
	if !t.track(c) {
		return net.ErrClosed
	}
	defer t.untrack(c)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	w := bufio.NewWriterSize(c, chunkSize+16)
	c.SetWriteDeadline(time.Time{})
	if err := writeFrame(w, byte(msg.Kind), msg.Payload); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	for {
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			if err := writeFrame(w, chunkKind, buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := writeFrame(w, chunkKind, nil); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, res, err := readFrame(bufio.NewReader(c))
	if err != nil {
		return fmt.Errorf("kvnode: snapshot to %d: %w", msg.To, err)
	}
	if len(res) > 0 {
		return fmt.Errorf("kvnode: snapshot to %d refused: %s", msg.To, res)
	}
	return nil
}

func (t *tcpTransport) serveSnapshot(c net.Conn, r *bufio.Reader, from uint64) error {
	c.SetReadDeadline(time.Time{})
	kind, payload, err := readFrame(r)
	if err != nil {
		return err
	}
	if consensus.MessageKind(kind) != consensus.KindSnapshot {
		return fmt.Errorf("%w: snapshot stream without a snapshot header", errFrame)
	}
	pr, pw := io.Pipe()
	go func() {
		for {
			c.SetReadDeadline(time.Now().Add(ioTimeout))
			k, chunk, err := readFrame(r)
			if err == nil && k != chunkKind {
				err = errFrame
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if len(chunk) == 0 {
				pw.Close()
				return
			}
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-t.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	msg := consensus.Message{From: from, To: t.id, Kind: consensus.KindSnapshot, Payload: payload}
	herr := t.handler.HandleSnapshot(ctx, msg, pr)
	pr.CloseWithError(errors.New("kvnode: snapshot handled"))
	var res []byte
	if herr != nil {
		res = []byte(herr.Error())
	}
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	return writeFrame(c, 0, res)
}
