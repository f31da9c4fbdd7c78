package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/distkit/distkit/consensus"
)

// tcpTransport is a minimal consensus.Transport over loopback TCP for this
// benchmark: one outbound stream per peer with batched writes, and a
// separate connection per snapshot, streamed in chunks.
type tcpTransport struct {
	id uint64
	ln net.Listener
	h  consensus.Handler

	mu    sync.Mutex
	peers map[uint64]*tcpPeer
	conns map[net.Conn]struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

const (
	frameMsg       = 1
	frameSnapHdr   = 2
	frameSnapChunk = 3
	frameSnapEnd   = 4
	maxFrame       = 64 << 20
	peerQueue      = 4096
)

func listenTCP(id uint64) (*tcpTransport, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &tcpTransport{id: id, ln: ln, peers: map[uint64]*tcpPeer{}, conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}, nil
}

func (t *tcpTransport) Addr() string { return t.ln.Addr().String() }

func (t *tcpTransport) Start(h consensus.Handler) error {
	t.h = h
	t.wg.Add(1)
	go t.accept()
	return nil
}

func (t *tcpTransport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go t.serve(c)
	}
}

func writeFrame(w *bufio.Writer, typ byte, parts ...[]byte) error {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	var hdr [5]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(n))
	hdr[4] = typ
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func readFrame(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("bad frame length %d", n)
	}
	if cap(buf) < int(n-1) {
		buf = make([]byte, n-1)
	}
	buf = buf[:n-1]
	_, err := io.ReadFull(r, buf)
	return hdr[4], buf, err
}

func encodeMsg(m consensus.Message) []byte {
	b := make([]byte, 17, 17+len(m.Payload))
	binary.LittleEndian.PutUint64(b, m.From)
	binary.LittleEndian.PutUint64(b[8:], m.To)
	b[16] = byte(m.Kind)
	return append(b, m.Payload...)
}

func decodeMsg(b []byte) (consensus.Message, error) {
	if len(b) < 17 {
		return consensus.Message{}, errors.New("short message")
	}
	return consensus.Message{
		From: binary.LittleEndian.Uint64(b), To: binary.LittleEndian.Uint64(b[8:]),
		Kind: consensus.MessageKind(b[16]), Payload: append([]byte(nil), b[17:]...),
	}, nil
}

// serve reads one inbound connection: a message stream or one snapshot.
func (t *tcpTransport) serve(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		c.Close()
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c, 256<<10)
	var batch []consensus.Message
	var buf []byte
	for {
		typ, p, err := readFrame(r, buf)
		if err != nil {
			return
		}
		buf = p
		switch typ {
		case frameMsg:
			m, err := decodeMsg(p)
			if err != nil {
				return
			}
			batch = append(batch, m)
			if r.Buffered() == 0 {
				t.h.HandleMessages(batch)
				batch = nil
			}
		case frameSnapHdr:
			m, err := decodeMsg(p)
			if err != nil {
				return
			}
			t.receiveSnapshot(c, r, m)
			return
		default:
			return
		}
	}
}

func (t *tcpTransport) receiveSnapshot(c net.Conn, r *bufio.Reader, m consensus.Message) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		err := t.h.HandleSnapshot(ctx, m, pr)
		pr.CloseWithError(err)
		done <- err
	}()
	var buf []byte
	for {
		typ, p, err := readFrame(r, buf)
		if err != nil {
			pw.CloseWithError(err)
			break
		}
		buf = p
		if typ == frameSnapEnd {
			pw.Close()
			break
		}
		if _, err := pw.Write(p); err != nil {
			break
		}
	}
	err := <-done
	ack := []byte{0}
	if err != nil {
		ack[0] = 1
	}
	c.Write(ack)
}

func (t *tcpTransport) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok && p.addr == addr {
		return
	} else if ok {
		close(p.quit)
	}
	p := &tcpPeer{t: t, id: id, addr: addr, q: make(chan consensus.Message, peerQueue), quit: make(chan struct{})}
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

func (t *tcpTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		close(p.quit)
		delete(t.peers, id)
	}
}

func (t *tcpTransport) Send(msgs []consensus.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		p := t.peers[m.To]
		if p == nil {
			continue
		}
		select {
		case p.q <- m:
		default:
			go t.h.Unreachable(m.To)
		}
	}
}

func (t *tcpTransport) SendSnapshot(ctx context.Context, m consensus.Message, body io.Reader) error {
	t.mu.Lock()
	p := t.peers[m.To]
	t.mu.Unlock()
	if p == nil {
		return errors.New("unknown peer")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	w := bufio.NewWriterSize(c, 256<<10)
	if err := writeFrame(w, frameSnapHdr, encodeMsg(m)); err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for {
		n, err := body.Read(chunk)
		if n > 0 {
			if werr := writeFrame(w, frameSnapChunk, chunk[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := writeFrame(w, frameSnapEnd); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return err
	}
	if ack[0] != 0 {
		return errors.New("snapshot refused")
	}
	return nil
}

func (t *tcpTransport) Close() error {
	close(t.stop)
	t.ln.Close()
	t.mu.Lock()
	for _, p := range t.peers {
		close(p.quit)
	}
	t.peers = map[uint64]*tcpPeer{}
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

type tcpPeer struct {
	t    *tcpTransport
	id   uint64
	addr string
	q    chan consensus.Message
	quit chan struct{}
}

// run keeps one stream to the peer, writing every queued message and
// flushing when the queue is empty.
func (p *tcpPeer) run() {
	defer p.t.wg.Done()
	var c net.Conn
	var w *bufio.Writer
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		var m consensus.Message
		select {
		case <-p.quit:
			return
		case m = <-p.q:
		}
		if c == nil {
			var err error
			c, err = net.DialTimeout("tcp", p.addr, time.Second)
			if err != nil {
				c = nil
				p.t.h.Unreachable(p.id)
				continue
			}
			w = bufio.NewWriterSize(c, 256<<10)
		}
		err := writeFrame(w, frameMsg, encodeMsg(m))
	drain:
		for err == nil {
			select {
			case m = <-p.q:
				err = writeFrame(w, frameMsg, encodeMsg(m))
			default:
				break drain
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.Close()
			c = nil
			p.t.h.Unreachable(p.id)
		}
	}
}
