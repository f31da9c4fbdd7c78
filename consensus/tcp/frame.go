package tcp

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/distkit/distkit/consensus"
)

// Wire format (version 1). All integers are big-endian.
//
// A connection starts with a handshake from the dialer:
//
//	magic "DKRT" | version u8 | stream u8 | cluster u64 | from u64 | to u64 | addrLen u8 | addr
//
// answered by the acceptor with
//
//	magic "DKRT" | version u8 | status u8
//
// After an accepted handshake, both directions carry frames:
//
//	length u32 | version<<4 | type u8 | body (length bytes)
//
// Message streams carry frameMessage (kind u8 | payload) from dialer to
// acceptor only. Snapshot streams carry frameSnapHeader (payload), any
// number of frameSnapChunk (bytes) and one frameSnapEnd (total u64 |
// crc32c u32) from the dialer, then one frameSnapAck (status u8 | reason)
// back.

const (
	wireVersion = 1

	handshakeFixed = 4 + 1 + 1 + 8 + 8 + 8 + 1 // up to addrLen
	handshakeMax   = handshakeFixed + 255
	responseLen    = 4 + 1 + 1
	frameHeaderLen = 5
	maxAckReason   = 1 << 10
)

var magic = [4]byte{'D', 'K', 'R', 'T'}

// Stream kinds named in the handshake.
const (
	streamMessages byte = 1
	streamSnapshot byte = 2
)

// Frame types.
const (
	frameMessage    byte = 1
	frameSnapHeader byte = 2
	frameSnapChunk  byte = 3
	frameSnapEnd    byte = 4
	frameSnapAck    byte = 5
)

// Handshake statuses.
const (
	statusOK byte = iota
	statusBadVersion
	statusWrongCluster
	statusWrongReceiver
	statusRefusedSender
	statusIdentity
	statusClosing
	statusBadStream
	numStatuses
)

var statusText = [numStatuses]string{
	statusOK:            "ok",
	statusBadVersion:    "unsupported protocol version",
	statusWrongCluster:  "wrong cluster id",
	statusWrongReceiver: "wrong receiver id",
	statusRefusedSender: "sender refused (unknown id or removed member)",
	statusIdentity:      "certificate does not match sender id",
	statusClosing:       "transport closing",
	statusBadStream:     "unknown stream kind",
}

// handshake is the first thing a dialer sends.
type handshake struct {
	stream  byte
	cluster uint64
	from    uint64
	to      uint64
	addr    string // the sender's advertised listen address, may be empty
}

func (h handshake) append(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, wireVersion, h.stream)
	b = binary.BigEndian.AppendUint64(b, h.cluster)
	b = binary.BigEndian.AppendUint64(b, h.from)
	b = binary.BigEndian.AppendUint64(b, h.to)
	addr := h.addr
	if len(addr) > 255 {
		addr = "" // validated in New; never send a truncated address
	}
	b = append(b, byte(len(addr)))
	return append(b, addr...)
}

// readHandshake reads and decodes a handshake. It reads at most
// handshakeMax bytes. A version mismatch is reported as errVersion so the
// acceptor can answer with statusBadVersion.
func readHandshake(r io.Reader) (handshake, error) {
	var buf [handshakeMax]byte
	if _, err := io.ReadFull(r, buf[:handshakeFixed]); err != nil {
		return handshake{}, fmt.Errorf("tcp: read handshake: %w", err)
	}
	h, n, err := decodeHandshakeFixed(buf[:handshakeFixed])
	if err != nil {
		return handshake{}, err
	}
	if n > 0 {
		if _, err := io.ReadFull(r, buf[handshakeFixed:handshakeFixed+n]); err != nil {
			return handshake{}, fmt.Errorf("tcp: read handshake: %w", err)
		}
		h.addr = string(buf[handshakeFixed : handshakeFixed+n])
	}
	return h, nil
}

// decodeHandshakeFixed decodes the fixed part of a handshake and returns
// the length of the address that follows.
func decodeHandshakeFixed(b []byte) (handshake, int, error) {
	if len(b) < handshakeFixed {
		return handshake{}, 0, fmt.Errorf("tcp: short handshake: %w", ErrMalformed)
	}
	if [4]byte(b[:4]) != magic {
		return handshake{}, 0, fmt.Errorf("tcp: bad handshake magic %q: %w", b[:4], ErrMalformed)
	}
	if b[4] != wireVersion {
		return handshake{}, 0, fmt.Errorf("tcp: protocol version %d: %w", b[4], errVersion)
	}
	h := handshake{
		stream:  b[5],
		cluster: binary.BigEndian.Uint64(b[6:]),
		from:    binary.BigEndian.Uint64(b[14:]),
		to:      binary.BigEndian.Uint64(b[22:]),
	}
	return h, int(b[30]), nil
}

func appendResponse(b []byte, status byte) []byte {
	b = append(b, magic[:]...)
	return append(b, wireVersion, status)
}

// readResponse reads the acceptor's answer and returns nil if the
// handshake was accepted.
func readResponse(r io.Reader) error {
	var b [responseLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("tcp: read handshake response: %w", err)
	}
	return decodeResponse(b[:])
}

func decodeResponse(b []byte) error {
	if len(b) != responseLen || [4]byte(b[:4]) != magic {
		return fmt.Errorf("tcp: bad handshake response: %w", ErrMalformed)
	}
	if b[4] != wireVersion {
		return fmt.Errorf("tcp: peer speaks protocol version %d: %w", b[4], ErrRefused)
	}
	switch s := b[5]; {
	case s == statusOK:
		return nil
	case s < numStatuses:
		return fmt.Errorf("tcp: %s: %w", statusText[s], ErrRefused)
	default:
		return fmt.Errorf("tcp: status %d: %w", s, ErrRefused)
	}
}

// appendFrameHeader appends the header of a frame whose body is n bytes.
func appendFrameHeader(b []byte, typ byte, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, wireVersion<<4|typ)
}

// writeFrame writes a frame whose body is the concatenation of parts.
func writeFrame(w *bufio.Writer, typ byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var hdr [frameHeaderLen]byte
	if _, err := w.Write(appendFrameHeader(hdr[:0], typ, n)); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// writeMessage writes m as a message frame and returns the frame's size.
func writeMessage(w *bufio.Writer, m consensus.Message) (int, error) {
	if w.Available() < frameHeaderLen+1 {
		if err := w.Flush(); err != nil {
			return 0, err
		}
	}
	// Build the header in place in w's buffer: no copy, no allocation.
	h := appendFrameHeader(w.AvailableBuffer(), frameMessage, len(m.Payload)+1)
	h = append(h, byte(m.Kind))
	if _, err := w.Write(h); err != nil {
		return 0, err
	}
	if _, err := w.Write(m.Payload); err != nil {
		return 0, err
	}
	return len(h) + len(m.Payload), nil
}

// readFrameHeader reads a frame header and checks its version, type and
// length against max. It never allocates.
func readFrameHeader(r io.Reader, max int) (typ byte, n int, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	return decodeFrameHeader(hdr[:], max)
}

func decodeFrameHeader(hdr []byte, max int) (typ byte, n int, err error) {
	l := binary.BigEndian.Uint32(hdr)
	v, t := hdr[4]>>4, hdr[4]&0x0f
	if v != wireVersion {
		return 0, 0, fmt.Errorf("tcp: frame version %d: %w", v, ErrMalformed)
	}
	if t < frameMessage || t > frameSnapAck {
		return 0, 0, fmt.Errorf("tcp: frame type %d: %w", t, ErrMalformed)
	}
	if uint64(l) > uint64(max) {
		return 0, 0, fmt.Errorf("tcp: frame of %d bytes exceeds %d: %w", l, max, ErrFrameTooLarge)
	}
	return t, int(l), nil
}

// decodeMessage checks a message frame body and returns its kind and
// payload (aliasing body).
func decodeMessage(body []byte) (consensus.MessageKind, []byte, error) {
	if len(body) < 1 {
		return 0, nil, fmt.Errorf("tcp: empty message frame: %w", ErrMalformed)
	}
	k := consensus.MessageKind(body[0])
	if k > consensus.KindHeartbeat { // snapshots travel on their own stream
		return 0, nil, fmt.Errorf("tcp: message kind %d: %w", k, ErrMalformed)
	}
	return k, body[1:], nil
}

// snapEnd is the trailer of a snapshot stream.
type snapEnd struct {
	total uint64
	crc   uint32
}

const snapEndLen = 12

func (e snapEnd) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, e.total)
	return binary.BigEndian.AppendUint32(b, e.crc)
}

func decodeSnapEnd(b []byte) (snapEnd, error) {
	if len(b) != snapEndLen {
		return snapEnd{}, fmt.Errorf("tcp: snapshot trailer of %d bytes: %w", len(b), ErrMalformed)
	}
	return snapEnd{total: binary.BigEndian.Uint64(b), crc: binary.BigEndian.Uint32(b[8:])}, nil
}

// decodeAck decodes the receiver's verdict on a snapshot: nil if it was
// stored, an error wrapping ErrSnapshotRejected otherwise.
func decodeAck(b []byte) error {
	if len(b) < 1 || len(b) > 1+maxAckReason {
		return fmt.Errorf("tcp: snapshot ack of %d bytes: %w", len(b), ErrMalformed)
	}
	if b[0] == statusOK {
		if len(b) != 1 {
			return fmt.Errorf("tcp: snapshot ack: %w", ErrMalformed)
		}
		return nil
	}
	return fmt.Errorf("tcp: %w: %q", ErrSnapshotRejected, b[1:])
}

func appendAck(b []byte, err error) []byte {
	if err == nil {
		return append(b, statusOK)
	}
	reason := err.Error()
	if len(reason) > maxAckReason {
		reason = reason[:maxAckReason]
	}
	return append(append(b, 1), reason...)
}
