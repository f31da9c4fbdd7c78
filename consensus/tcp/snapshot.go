package tcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"time"

	"github.com/distkit/distkit/consensus"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SendSnapshot streams a snapshot to msg.To on a connection of its own, so
// a large snapshot never delays the message stream: the header, then body
// in chunks of Config.SnapshotChunkBytes, then the body's length and
// CRC-32C. It returns nil only after the receiver's Handler.HandleSnapshot
// returned nil for a stream that passed the checksum; any failure (ctx,
// the network, body, the receiver) is an error and the receiver discards
// what it got.
func (t *Transport) SendSnapshot(ctx context.Context, msg consensus.Message, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !t.started.Load() {
		return ErrNotStarted
	}
	switch {
	case msg.From != t.cfg.ID:
		return fmt.Errorf("tcp: snapshot from member %d sent by %d: %w", msg.From, t.cfg.ID, ErrInvalidMessage)
	case msg.Kind != consensus.KindSnapshot:
		return fmt.Errorf("tcp: SendSnapshot with message kind %d: %w", msg.Kind, ErrInvalidMessage)
	case len(msg.Payload) > t.cfg.MaxFrameBytes:
		return fmt.Errorf("tcp: snapshot header of %d bytes: %w", len(msg.Payload), ErrFrameTooLarge)
	}
	err := t.sendSnapshot(ctx, msg, body)
	if err != nil {
		t.snapsBad.Add(1)
	}
	return err
}

// sendSnapshot dials, streams and waits for the receiver's verdict.
func (t *Transport) sendSnapshot(ctx context.Context, msg consensus.Message, body io.Reader) error {
	t.mu.Lock()
	closed := t.closed
	addr := ""
	if p := t.peers[msg.To]; p != nil {
		p.mu.Lock()
		addr = p.addr
		p.mu.Unlock()
	} else if !t.removed[msg.To] {
		addr = t.learned[msg.To]
	}
	t.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case addr == "":
		return fmt.Errorf("tcp: snapshot to member %d: %w", msg.To, ErrUnknownPeer)
	}

	conn, err := t.dial(ctx, msg.To, addr, streamSnapshot)
	if err != nil {
		return err
	}
	raw := rawConn(conn) // see peer.stream
	defer raw.Close()
	if !t.track(raw, false) {
		return ErrClosed
	}
	defer t.untrack(raw)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := t.streamSnapshot(ctx, conn, msg, body); err != nil {
		return ctxErr(ctx, err)
	}
	t.snapsSent.Add(1)
	return nil
}

func (t *Transport) streamSnapshot(ctx context.Context, conn net.Conn, msg consensus.Message, body io.Reader) error {
	chunk := t.cfg.SnapshotChunkBytes
	bw := bufio.NewWriterSize(conn, chunk+frameHeaderLen)
	// Each write gets IOTimeout; checking ctx after setting the deadline
	// keeps the expired deadline SendSnapshot sets when ctx ends.
	deadline := func() error {
		conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
		return ctx.Err()
	}
	if err := deadline(); err != nil {
		return err
	}
	if err := writeFrame(bw, frameSnapHeader, msg.Payload); err != nil {
		return fmt.Errorf("tcp: send snapshot header: %w", err)
	}
	buf := make([]byte, chunk)
	crc := crc32.New(castagnoli)
	var total uint64
	for {
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			crc.Write(buf[:n])
			total += uint64(n)
			if err := deadline(); err != nil {
				return err
			}
			if err := writeFrame(bw, frameSnapChunk, buf[:n]); err != nil {
				return fmt.Errorf("tcp: send snapshot: %w", err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("tcp: read snapshot body: %w", rerr)
		}
	}
	if err := deadline(); err != nil {
		return err
	}
	end := snapEnd{total: total, crc: crc.Sum32()}
	if err := writeFrame(bw, frameSnapEnd, end.append(nil)); err != nil {
		return fmt.Errorf("tcp: send snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tcp: send snapshot: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(t.cfg.SnapshotAckTimeout))
	typ, n, err := readFrameHeader(conn, 1+maxAckReason)
	if err != nil {
		return fmt.Errorf("tcp: snapshot ack: %w", err)
	}
	if typ != frameSnapAck {
		return fmt.Errorf("tcp: snapshot ack: frame type %d: %w", typ, ErrMalformed)
	}
	ack := make([]byte, n)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("tcp: snapshot ack: %w", err)
	}
	return decodeAck(ack)
}

// receiveSnapshot reads a snapshot stream, hands it to the handler and
// answers with its verdict.
func (t *Transport) receiveSnapshot(ctx context.Context, conn net.Conn, br *bufio.Reader, from uint64) error {
	conn.SetReadDeadline(time.Now().Add(t.cfg.IOTimeout))
	typ, n, err := readFrameHeader(br, t.cfg.MaxFrameBytes)
	if err != nil {
		return err
	}
	if typ != frameSnapHeader {
		return fmt.Errorf("tcp: snapshot stream starts with frame type %d: %w", typ, ErrMalformed)
	}
	hdr, err := readBody(br, nil, n, func() { conn.SetReadDeadline(time.Now().Add(t.cfg.IOTimeout)) })
	if err != nil {
		return err
	}
	sr := &snapReader{t: t, conn: conn, br: br, crc: crc32.New(castagnoli)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	herr := t.h.HandleSnapshot(ctx, consensus.Message{From: from, To: t.cfg.ID, Kind: consensus.KindSnapshot, Payload: hdr}, sr)
	if herr == nil && !sr.done && sr.err == nil {
		// The handler stopped before EOF: the sender still expects its
		// verdict, which needs the checksum.
		_, herr = io.Copy(io.Discard, sr)
	}
	if sr.err != nil && !errors.Is(sr.err, ErrChecksum) {
		// The stream broke: there is nobody to answer.
		t.snapsBad.Add(1)
		return sr.err
	}
	if herr == nil && sr.err != nil {
		herr = sr.err
	}
	conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
	verdict := appendAck(nil, herr)
	frame := append(appendFrameHeader(nil, frameSnapAck, len(verdict)), verdict...)
	if _, err := conn.Write(frame); err != nil {
		t.snapsBad.Add(1)
		return err
	}
	if herr != nil {
		t.snapsBad.Add(1)
		return fmt.Errorf("tcp: snapshot from member %d rejected: %w", from, herr)
	}
	t.snapsRecv.Add(1)
	return nil
}

// snapReader is the body a receiving Handler reads: the chunks' bytes,
// then io.EOF once the trailer's length and checksum match. Any other
// outcome is a sticky error, so a handler never mistakes a broken stream
// for a complete snapshot.
type snapReader struct {
	t      *Transport
	conn   net.Conn
	br     *bufio.Reader
	crc    hash.Hash32
	total  uint64
	remain int // bytes left in the current chunk
	done   bool
	err    error
}

func (r *snapReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.done {
		return 0, io.EOF
	}
	for r.remain == 0 {
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
		if r.done {
			return 0, io.EOF
		}
	}
	p = p[:min(len(p), r.remain)]
	n, err := r.br.Read(p)
	r.crc.Write(p[:n])
	r.total += uint64(n)
	r.remain -= n
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = fmt.Errorf("tcp: snapshot stream: %w", err)
		return n, r.err
	}
	return n, nil
}

// next reads the next frame header (and the trailer).
func (r *snapReader) next() error {
	r.conn.SetReadDeadline(time.Now().Add(r.t.cfg.IOTimeout))
	typ, n, err := readFrameHeader(r.br, r.t.cfg.MaxFrameBytes)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("tcp: snapshot stream: %w", err)
	}
	switch typ {
	case frameSnapChunk:
		r.remain = n
		return nil
	case frameSnapEnd:
		if n != snapEndLen {
			return fmt.Errorf("tcp: snapshot trailer of %d bytes: %w", n, ErrMalformed)
		}
		var b [snapEndLen]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return fmt.Errorf("tcp: snapshot stream: %w", err)
		}
		end, err := decodeSnapEnd(b[:])
		if err != nil {
			return err
		}
		if end.total != r.total || end.crc != r.crc.Sum32() {
			return fmt.Errorf("tcp: snapshot of %d bytes, crc %08x; sender declared %d bytes, crc %08x: %w",
				r.total, r.crc.Sum32(), end.total, end.crc, ErrChecksum)
		}
		r.done = true
		return nil
	default:
		return fmt.Errorf("tcp: frame type %d in a snapshot stream: %w", typ, ErrMalformed)
	}
}
