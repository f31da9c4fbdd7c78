package tcp

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/distkit/distkit/consensus"
)

const readBufferBytes = 64 << 10

// acceptLoop accepts connections until the listener closes.
func (t *Transport) acceptLoop(ctx context.Context) {
	defer t.wg.Done()
	delay := time.Duration(0)
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (out of file descriptors, ...): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("tcp: accept", "err", err, "retry_in", delay)
			timer := t.cfg.Clock.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C():
			}
			continue
		}
		delay = 0
		if !t.track(c, true) {
			if ctx.Err() != nil {
				c.Close()
				return
			}
			t.refused.Add(1)
			c.Close()
			t.log.Warn("tcp: too many inbound connections, refusing", "remote", c.RemoteAddr().String(), "max", t.cfg.MaxConns)
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(c)
			defer c.Close()
			t.serve(ctx, c)
		}()
	}
}

// serve runs the handshake of an inbound connection, then its stream.
func (t *Transport) serve(ctx context.Context, raw net.Conn) {
	log := t.log.With("remote", raw.RemoteAddr().String())
	t.tuneConn(raw)
	raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	conn := raw
	var tc *tls.Conn
	if t.cfg.TLS != nil {
		tc = tls.Server(raw, t.cfg.TLS)
		conn = tc
		if err := tc.HandshakeContext(ctx); err != nil {
			t.refused.Add(1)
			log.Warn("tcp: TLS handshake refused", "err", err)
			return
		}
	}
	// The dialer sends nothing after its hello until it is answered, so
	// reading it unbuffered loses nothing, and costs no buffer for
	// connections that never pass it.
	hs, err := readHandshake(conn)
	if err != nil {
		t.refused.Add(1)
		if errors.Is(err, errVersion) {
			_, _ = conn.Write(appendResponse(nil, statusBadVersion))
		}
		log.Warn("tcp: bad handshake", "err", err)
		return
	}
	if err := t.authenticate(conn, hs); err != nil {
		t.refused.Add(1)
		t.authFailures.Add(1)
		log.Warn("tcp: connection refused: authentication failed", "claims", hs.from, "err", err)
		return
	}
	status := t.admit(hs, raw, tc)
	if status != statusOK {
		// Counted before the dialer can read the answer.
		t.refused.Add(1)
		if status == statusIdentity {
			t.authFailures.Add(1)
		}
	}
	if _, err := conn.Write(appendResponse(nil, status)); err != nil {
		if status == statusOK {
			t.refused.Add(1)
		}
		log.Warn("tcp: handshake response", "err", err)
		return
	}
	log = log.With("peer", hs.from)
	if status != statusOK {
		log.Warn("tcp: connection refused", "reason", statusText[status], "cluster", hs.cluster, "to", hs.to)
		return
	}
	t.accepted.Add(1)
	raw.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(conn, readBufferBytes)
	switch hs.stream {
	case streamMessages:
		err = t.readMessages(conn, br, hs.from)
	case streamSnapshot:
		err = t.receiveSnapshot(ctx, conn, br, hs.from)
	}
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		log.Debug("tcp: inbound stream closed", "err", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.idleTimeouts.Add(1)
		log.Info("tcp: closing stalled inbound stream", "err", err)
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrFrameTooLarge):
		t.badFrames.Add(1)
		log.Warn("tcp: closing connection: bad frame", "err", err)
	default:
		log.Info("tcp: inbound stream failed", "err", err)
	}
}

// authenticate runs the acceptor's side of the Secret exchange (see the
// wire format in frame.go). It returns nil once the dialer proved it holds
// the Secret, or at once when no Secret is configured and the dialer
// claims none.
func (t *Transport) authenticate(conn net.Conn, hs handshake) error {
	secret := t.cfg.Secret
	want := byte(0)
	if secret != nil {
		want = authSecret
	}
	if hs.auth != want {
		_, _ = conn.Write(appendResponse(nil, statusAuth))
		if want == 0 {
			return fmt.Errorf("tcp: peer uses a Secret, this member none: %w", ErrAuth)
		}
		return fmt.Errorf("tcp: peer presents no Secret: %w", ErrAuth)
	}
	if secret == nil {
		return nil
	}
	hello := hs.append(make([]byte, 0, handshakeMax))
	ch := challenge{nonce: newNonce()}
	ch.mac = acceptorMAC(secret, hello, &ch.nonce)
	if _, err := conn.Write(ch.append(make([]byte, 0, responseLen+challengeLen))); err != nil {
		return fmt.Errorf("tcp: send challenge: %w", err)
	}
	var proof [macLen]byte
	if _, err := io.ReadFull(conn, proof[:]); err != nil {
		// A dialer with another Secret rejects our proof and hangs up.
		return fmt.Errorf("tcp: read proof: %w", err)
	}
	expect := dialerMAC(secret, hello, &ch)
	if !hmac.Equal(proof[:], expect[:]) {
		_, _ = conn.Write(appendResponse(nil, statusAuth))
		return fmt.Errorf("tcp: wrong proof of the Secret: %w", ErrAuth)
	}
	return nil
}

// admit checks a handshake and, if it is accepted, records the
// connection's sender and the address it advertised. A transport accepts
// only the members it was told about with AddPeer (and not removed since);
// one that was told about none yet (a new member waiting to be contacted)
// accepts any sender that passed authentication.
func (t *Transport) admit(hs handshake, raw net.Conn, tc *tls.Conn) byte {
	switch {
	case hs.stream != streamMessages && hs.stream != streamSnapshot:
		return statusBadStream
	case hs.cluster != t.cfg.ClusterID:
		return statusWrongCluster
	case hs.to != t.cfg.ID:
		return statusWrongReceiver
	case hs.from == 0 || hs.from == t.cfg.ID:
		return statusRefusedSender
	}
	if tc != nil && t.checkIdentity(tc, hs.from) != nil {
		return statusIdentity
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return statusClosing
	case !t.knownLocked(hs.from):
		return statusRefusedSender
	}
	if hs.addr != "" {
		if p := t.peers[hs.from]; p != nil {
			if p.address() == "" {
				p.setAddr(hs.addr)
			}
		} else if _, ok := t.learned[hs.from]; ok || len(t.learned) < maxLearned {
			t.learned[hs.from] = hs.addr
		}
	}
	if hs.stream == streamMessages {
		// One message stream per sender: a new one replaces the old,
		// which may be half-open after the sender crashed.
		for c, ci := range t.conns {
			if ci.inbound && ci.from == hs.from && ci.stream == streamMessages {
				c.Close()
			}
		}
	}
	if _, ok := t.conns[raw]; ok {
		t.conns[raw] = connInfo{inbound: true, from: hs.from, stream: hs.stream} // so RemovePeer closes it
	}
	return statusOK
}

// span locates one message's payload in the batch arena.
type span struct {
	kind     consensus.MessageKind
	off, end int
}

// readMessages reads message frames and hands them to the handler in
// batches: everything already buffered, up to MaxBatchMessages. Before it
// waits for more it answers with a keepalive frame (at most one per half
// KeepaliveInterval), so the sender knows the stream is alive, and arms the
// idle deadline (LivenessTimeout). A frame's buffer grows only as its
// bytes arrive.
func (t *Transport) readMessages(conn net.Conn, br *bufio.Reader, from uint64) error {
	var (
		arena  []byte
		spans  []span
		batch  []consensus.Message
		frames uint64
	)
	arenaMax := max(t.cfg.MaxFrameBytes, 1<<20)
	idle := t.cfg.LivenessTimeout
	replyEvery := t.cfg.KeepaliveInterval / 2
	keepalive := appendFrameHeader(nil, frameKeepalive, 0)
	// The read deadline is pushed back only when an eighth of it has
	// passed, which costs nothing per message: a stream is closed after
	// 7/8 to 8/8 of LivenessTimeout of silence.
	var lastReply, armed time.Time
	deliver := func() {
		batch = batch[:0]
		for _, s := range spans {
			batch = append(batch, consensus.Message{From: from, To: t.cfg.ID, Kind: s.kind, Payload: arena[s.off:s.end:s.end]})
		}
		t.received.Add(uint64(len(batch)))
		t.bytesReceived.Add(frames)
		t.h.HandleMessages(batch)
		clear(batch)
		spans, arena, frames = spans[:0], arena[:0], 0
		if cap(arena) > 4<<20 {
			arena = nil // do not pin a burst's memory
		}
	}
	progress := func() {
		armed = time.Now()
		conn.SetReadDeadline(armed.Add(idle))
	}
	for {
		if br.Buffered() == 0 {
			// About to wait for the network.
			if len(spans) > 0 {
				deliver()
			}
			now := time.Now()
			if now.Sub(lastReply) >= replyEvery {
				conn.SetWriteDeadline(now.Add(t.cfg.IOTimeout))
				if _, err := conn.Write(keepalive); err != nil {
					return err
				}
				lastReply = now
			}
			if now.Sub(armed) >= idle/8 {
				conn.SetReadDeadline(now.Add(idle))
				armed = now
			}
		}
		typ, n, err := readFrameHeader(br, t.cfg.MaxFrameBytes)
		if err != nil {
			return err
		}
		switch {
		case typ == frameKeepalive && n == 0:
			continue
		case typ != frameMessage:
			return errors.Join(ErrMalformed, errors.New("tcp: unexpected frame type on a message stream"))
		}
		if len(spans) > 0 && len(arena)+n > arenaMax {
			deliver()
		}
		off := len(arena)
		if arena, err = readBody(br, arena, n, progress); err != nil {
			return err
		}
		kind, _, err := decodeMessage(arena[off:])
		if err != nil {
			return err
		}
		spans = append(spans, span{kind: kind, off: off + 1, end: off + n})
		frames += uint64(frameHeaderLen + n)
		if len(spans) >= t.cfg.MaxBatchMessages {
			deliver()
		}
	}
}
