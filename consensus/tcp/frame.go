package tcp

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/distkit/distkit/consensus"
)

// Wire format (version 2). All integers are big-endian.
//
// A connection starts (after TLS, when configured) with a hello from the
// dialer:
//
//	magic "DKRT" | version u8 | stream u8 | auth u8 | cluster u64 | from u64 | to u64 |
//	nonce [32] | addrLen u8 | addr
//
// auth is authSecret when the dialer holds a group Secret, else 0. The
// acceptor answers with a response
//
//	magic "DKRT" | version u8 | status u8
//
// which, with a Secret, first has status statusChallenge and carries the
// acceptor's proof:
//
//	... | nonce [32] | mac [32]   mac = HMAC(secret, "distkit/tcp/2 acceptor" | hello | nonce)
//
// The dialer checks it and sends its own proof
//
//	mac [32]                     mac = HMAC(secret, "distkit/tcp/2 dialer" | hello | acceptor nonce | acceptor mac)
//
// and the acceptor sends a final response. Both proofs cover both fresh
// nonces, so no recorded handshake verifies again.
//
// After an accepted handshake, both directions carry frames:
//
//	length u32 | version<<4 | type u8 | body (length bytes)
//
// Message streams carry frameMessage (kind u8 | payload) and empty
// frameKeepalive from dialer to acceptor, and empty frameKeepalive back.
// Snapshot streams carry frameSnapHeader (payload), any number of
// frameSnapChunk (bytes) and one frameSnapEnd (total u64 | crc32c u32)
// from the dialer, then one frameSnapAck (status u8 | reason) back.

const (
	wireVersion = 2

	nonceLen       = 32
	macLen         = sha256.Size
	handshakeFixed = 4 + 1 + 1 + 1 + 8 + 8 + 8 + nonceLen + 1 // up to addrLen
	handshakeMax   = handshakeFixed + 255
	responseLen    = 4 + 1 + 1
	challengeLen   = nonceLen + macLen
	frameHeaderLen = 5
	maxAckReason   = 1 << 10

	// authSecret in a hello says the dialer authenticates with a Secret.
	authSecret byte = 1
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
	frameKeepalive  byte = 6
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
	statusAuth
	statusChallenge // not final: a challenge follows
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
	statusAuth:          "authentication failed",
	statusChallenge:     "challenge",
}

// handshake is the hello a dialer sends.
type handshake struct {
	stream  byte
	auth    byte
	cluster uint64
	from    uint64
	to      uint64
	nonce   [nonceLen]byte
	addr    string // the sender's advertised listen address, may be empty
}

func (h handshake) append(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, wireVersion, h.stream, h.auth)
	b = binary.BigEndian.AppendUint64(b, h.cluster)
	b = binary.BigEndian.AppendUint64(b, h.from)
	b = binary.BigEndian.AppendUint64(b, h.to)
	b = append(b, h.nonce[:]...)
	addr := h.addr
	if len(addr) > 255 {
		addr = "" // validated in New; never send a truncated address
	}
	b = append(b, byte(len(addr)))
	return append(b, addr...)
}

// readHandshake reads and decodes a hello. It reads at most handshakeMax
// bytes. A version mismatch is reported as errVersion so the acceptor can
// answer with statusBadVersion.
func readHandshake(r io.Reader) (handshake, error) {
	var buf [handshakeMax]byte
	// Magic and version first, so garbage (an HTTP request, say) is
	// refused at once rather than waited on.
	if _, err := io.ReadFull(r, buf[:5]); err != nil {
		return handshake{}, fmt.Errorf("tcp: read handshake: %w", err)
	}
	if err := checkHelloPrefix(buf[:5]); err != nil {
		return handshake{}, err
	}
	if _, err := io.ReadFull(r, buf[5:handshakeFixed]); err != nil {
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

// checkHelloPrefix checks the magic and version that start a hello (at
// least 5 bytes).
func checkHelloPrefix(b []byte) error {
	if [4]byte(b[:4]) != magic {
		return fmt.Errorf("tcp: bad handshake magic %q: %w", b[:4], ErrMalformed)
	}
	if b[4] != wireVersion {
		return fmt.Errorf("tcp: protocol version %d: %w", b[4], errVersion)
	}
	return nil
}

// decodeHandshakeFixed decodes the fixed part of a hello and returns the
// length of the address that follows.
func decodeHandshakeFixed(b []byte) (handshake, int, error) {
	if len(b) < handshakeFixed {
		return handshake{}, 0, fmt.Errorf("tcp: short handshake: %w", ErrMalformed)
	}
	if err := checkHelloPrefix(b); err != nil {
		return handshake{}, 0, err
	}
	h := handshake{
		stream:  b[5],
		auth:    b[6],
		cluster: binary.BigEndian.Uint64(b[7:]),
		from:    binary.BigEndian.Uint64(b[15:]),
		to:      binary.BigEndian.Uint64(b[23:]),
	}
	if h.auth > authSecret {
		return handshake{}, 0, fmt.Errorf("tcp: handshake auth mode %d: %w", h.auth, ErrMalformed)
	}
	copy(h.nonce[:], b[31:31+nonceLen])
	return h, int(b[31+nonceLen]), nil
}

// Domain-separation labels of the two proofs.
const (
	acceptorLabel = "distkit/tcp/2 acceptor\x00"
	dialerLabel   = "distkit/tcp/2 dialer\x00"
)

// acceptorMAC is the acceptor's proof that it holds secret, bound to the
// dialer's hello (and so its nonce) and the acceptor's nonce.
func acceptorMAC(secret, hello []byte, nonce *[nonceLen]byte) [macLen]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(acceptorLabel))
	m.Write(hello)
	m.Write(nonce[:])
	return [macLen]byte(m.Sum(nil))
}

// dialerMAC is the dialer's proof, bound to the whole exchange.
func dialerMAC(secret, hello []byte, ch *challenge) [macLen]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(dialerLabel))
	m.Write(hello)
	m.Write(ch.nonce[:])
	m.Write(ch.mac[:])
	return [macLen]byte(m.Sum(nil))
}

// challenge is what follows a statusChallenge response.
type challenge struct {
	nonce [nonceLen]byte
	mac   [macLen]byte
}

func (c *challenge) append(b []byte) []byte {
	b = appendResponse(b, statusChallenge)
	b = append(b, c.nonce[:]...)
	return append(b, c.mac[:]...)
}

func decodeChallenge(b []byte) (challenge, error) {
	var c challenge
	if len(b) != challengeLen {
		return c, fmt.Errorf("tcp: challenge of %d bytes: %w", len(b), ErrMalformed)
	}
	copy(c.nonce[:], b)
	copy(c.mac[:], b[nonceLen:])
	return c, nil
}

// newNonce returns fresh random bytes.
func newNonce() [nonceLen]byte {
	var n [nonceLen]byte
	_, _ = rand.Read(n[:]) // crypto/rand.Read never fails
	return n
}

func appendResponse(b []byte, status byte) []byte {
	b = append(b, magic[:]...)
	return append(b, wireVersion, status)
}

// readStatus reads a response and returns its status. The error is nil
// for statusOK and statusChallenge.
func readStatus(r io.Reader) (byte, error) {
	var b [responseLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("tcp: read handshake response: %w", err)
	}
	return decodeStatus(b[:])
}

func decodeStatus(b []byte) (byte, error) {
	if len(b) != responseLen || [4]byte(b[:4]) != magic {
		return 0, fmt.Errorf("tcp: bad handshake response: %w", ErrMalformed)
	}
	if b[4] != wireVersion {
		return 0, fmt.Errorf("tcp: peer speaks protocol version %d: %w", b[4], ErrRefused)
	}
	switch s := b[5]; {
	case s == statusOK, s == statusChallenge:
		return s, nil
	case s == statusAuth:
		return s, fmt.Errorf("tcp: %s: %w", statusText[s], errors.Join(ErrAuth, ErrRefused))
	case s < numStatuses:
		return s, fmt.Errorf("tcp: %s: %w", statusText[s], ErrRefused)
	default:
		return s, fmt.Errorf("tcp: status %d: %w", s, ErrRefused)
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
	if t < frameMessage || t > frameKeepalive {
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

// readStep is how much a frame body's buffer grows at a time as its bytes
// arrive: a peer that announces a large frame and then stalls makes the
// receiver hold at most this much more than it actually sent.
const readStep = 64 << 10

// readBody appends the next n bytes of r to dst, growing dst in steps of
// readStep as they arrive. progress, if not nil, is called after each step
// but the last (to extend a read deadline). On error, dst is returned
// without the partial body.
func readBody(r io.Reader, dst []byte, n int, progress func()) ([]byte, error) {
	off := len(dst)
	for left := n; left > 0; {
		step := min(left, readStep)
		at := len(dst)
		dst = append(dst, make([]byte, step)...)
		if _, err := io.ReadFull(r, dst[at:]); err != nil {
			return dst[:off], err
		}
		left -= step
		if left > 0 && progress != nil {
			progress()
		}
	}
	return dst, nil
}
