package tcp

import (
	"bufio"
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

const fuzzMaxFrame = 1 << 12

// fuzzTransport is just enough of a Transport to run the inbound decoders.
func fuzzTransport(h consensus.Handler) *Transport {
	return &Transport{
		cfg: Config{ID: 2, MaxFrameBytes: fuzzMaxFrame, MaxBatchMessages: 4},
		h:   h,
	}
}

func messageStream(hs handshake, frames ...[]byte) []byte {
	var b bytes.Buffer
	b.Write(hs.append(nil))
	w := bufio.NewWriter(&b)
	for _, f := range frames {
		writeFrame(w, frameMessage, f)
	}
	w.Flush()
	return b.Bytes()
}

// FuzzInbound feeds arbitrary bytes to what an inbound connection runs: the
// handshake decoder, then the message-stream reader. It must return an
// error, never panic, never buffer more than the frame bound, and deliver
// only well-formed messages.
func FuzzInbound(f *testing.F) {
	hs := handshake{stream: streamMessages, cluster: 9, from: 1, to: 2, addr: "127.0.0.1:7001"}
	f.Add(messageStream(hs, []byte{byte(consensus.KindAppend), 'a', 'b'}, []byte{byte(consensus.KindHeartbeat)}))
	f.Add(messageStream(hs, []byte{byte(consensus.KindOther), 'x'}, []byte{}, []byte{9, 9}))
	f.Add(messageStream(handshake{stream: streamSnapshot, from: 1, to: 2}))
	f.Add(append(messageStream(hs), 0xff, 0xff, 0xff, 0xff, wireVersion<<4|frameMessage))
	f.Add(append(messageStream(hs), 0, 0, 0, 1, 0x21, 0))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("DKRT"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		hs, err := readHandshake(br)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("handshake error %v is not a decoding error", err)
			}
			return
		}
		// A decoded handshake re-encodes to the bytes it came from.
		enc := hs.append(nil)
		if !bytes.Equal(enc, data[:len(enc)]) {
			t.Fatalf("handshake %+v re-encodes to %x, read from %x", hs, enc, data[:len(enc)])
		}
		var got []consensus.Message
		rec := newRecorder()
		tr := fuzzTransport(rec)
		err = tr.readMessages(nopDeadlines{}, br, hs.from)
		if err == nil {
			t.Fatalf("readMessages returned nil at end of input")
		}
		got = rec.received()
		for _, m := range got {
			if m.From != hs.from || m.To != 2 || m.Kind > consensus.KindHeartbeat || len(m.Payload) >= fuzzMaxFrame {
				t.Fatalf("delivered a bad message %+v", m)
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, n := range rec.batches {
			if n == 0 || n > 4 {
				t.Fatalf("batch of %d messages", n)
			}
		}
	})
}

func snapshotStream(chunks [][]byte, end snapEnd) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeFrame(w, frameSnapHeader, []byte("hdr"))
	for _, c := range chunks {
		writeFrame(w, frameSnapChunk, c)
	}
	writeFrame(w, frameSnapEnd, end.append(nil))
	w.Flush()
	return b.Bytes()
}

// FuzzSnapshotStream feeds arbitrary bytes after the header frame to the
// snapshot body reader: it yields io.EOF only when the bytes it returned
// match the trailer's length and checksum.
func FuzzSnapshotStream(f *testing.F) {
	body := []byte("hello, snapshot")
	good := snapEnd{total: uint64(len(body)), crc: crc32.Checksum(body, castagnoli)}
	f.Add(snapshotStream([][]byte{body[:5], body[5:]}, good))
	f.Add(snapshotStream([][]byte{body}, snapEnd{total: 3, crc: good.crc}))
	f.Add(snapshotStream(nil, snapEnd{}))
	f.Add(snapshotStream([][]byte{{}, body}, good)[:20])
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		typ, n, err := readFrameHeader(br, fuzzMaxFrame)
		if err != nil || typ != frameSnapHeader {
			return
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		tr := fuzzTransport(nil)
		tr.cfg.IOTimeout = DefaultIOTimeout
		sr := &snapReader{t: tr, conn: nopDeadlines{}, br: br, crc: crc32.New(castagnoli)}
		got, err := io.ReadAll(io.LimitReader(sr, int64(len(data))+1))
		if err != nil {
			if sr.done {
				t.Fatalf("error %v after a complete stream", err)
			}
			return
		}
		if !sr.done {
			t.Fatalf("EOF before the trailer")
		}
		if uint64(len(got)) != sr.total || crc32.Checksum(got, castagnoli) != sr.crc.Sum32() {
			t.Fatalf("returned %d bytes that do not match the verified trailer", len(got))
		}
	})
}

// nopDeadlines is a net.Conn stand-in for the snapshot reader's deadlines.
type nopDeadlines struct{ net.Conn }

func (nopDeadlines) SetReadDeadline(time.Time) error  { return nil }
func (nopDeadlines) SetWriteDeadline(time.Time) error { return nil }
func (nopDeadlines) Write(b []byte) (int, error)      { return len(b), nil }

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		in   []byte
		want error
	}{
		{appendResponse(nil, statusOK), nil},
		{appendResponse(nil, statusWrongReceiver), ErrRefused},
		{appendResponse(nil, 200), ErrRefused},
		{append(append([]byte{}, magic[:]...), 9, statusOK), ErrRefused},
		{[]byte("XXXX\x01\x00"), ErrMalformed},
		{[]byte("DKR"), ErrMalformed},
	}
	for _, tt := range tests {
		if err := decodeResponse(tt.in); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("decodeResponse(%q) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

// FuzzHandshakeDecoders feeds arbitrary bytes to the decoders of the
// handshake's parts: the hello, a response and a challenge. Each returns a
// value or an error wrapping ErrMalformed (or a refusal), never panics, and
// a decoded hello re-encodes to its bytes.
func FuzzHandshakeDecoders(f *testing.F) {
	hs := handshake{stream: streamMessages, auth: authSecret, cluster: 9, from: 1, to: 2, nonce: [nonceLen]byte{1, 2, 3}, addr: "127.0.0.1:7001"}
	ch := challenge{nonce: [nonceLen]byte{4}, mac: [macLen]byte{5}}
	f.Add(hs.append(nil))
	f.Add(handshake{stream: streamSnapshot}.append(nil))
	f.Add(ch.append(nil))
	f.Add(appendResponse(nil, statusOK))
	f.Add(appendResponse(nil, statusAuth))
	f.Add(append(hs.append(nil)[:6], 7))
	f.Add([]byte("DKRT\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, err := readHandshake(bytes.NewReader(data)); err == nil {
			enc := h.append(nil)
			if !bytes.Equal(enc, data[:len(enc)]) {
				t.Fatalf("hello %+v re-encodes to %x, read from %x", h, enc, data[:len(enc)])
			}
			if h.auth > authSecret {
				t.Fatalf("accepted auth mode %d", h.auth)
			}
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("hello error %v is not a decoding error", err)
		}
		if len(data) >= responseLen {
			s, err := decodeStatus(data[:responseLen])
			if err == nil && s != statusOK && s != statusChallenge {
				t.Fatalf("status %d without an error", s)
			}
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrRefused) {
				t.Fatalf("status error %v is neither malformed nor a refusal", err)
			}
			if rest := data[responseLen:]; err == nil && s == statusChallenge {
				c, err := decodeChallenge(rest)
				if (err == nil) != (len(rest) == challengeLen) {
					t.Fatalf("challenge of %d bytes: %v", len(rest), err)
				}
				if err == nil && !bytes.Equal(c.append(nil)[responseLen:], rest) {
					t.Fatalf("challenge does not re-encode")
				}
			}
		}
	})
}

// scriptedConn is a net.Conn whose reads return a fixed script and whose
// writes are recorded.
type scriptedConn struct {
	nopDeadlines
	r       io.Reader
	written bytes.Buffer
}

func (c *scriptedConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *scriptedConn) Write(b []byte) (int, error) { return c.written.Write(b) }

// FuzzAuthExchange runs both sides of the Secret exchange against
// arbitrary bytes from the other side: the dialer facing a forged acceptor
// and the acceptor facing a forged dialer. Neither may accept, since
// nobody without the Secret can compute a proof over the other side's
// fresh nonce, and neither may panic.
func FuzzAuthExchange(f *testing.F) {
	secret := []byte("fuzzing secret, 32 bytes long...")
	f.Add((&challenge{}).append(nil))
	f.Add(append((&challenge{}).append(nil), appendResponse(nil, statusOK)...))
	f.Add(appendResponse(nil, statusOK))
	f.Add(appendResponse(nil, statusChallenge))
	f.Add(make([]byte, macLen))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := fuzzTransport(nil)
		tr.cfg.Secret = secret
		tr.cfg.ID = 1
		c := &scriptedConn{r: bytes.NewReader(data)}
		if err := tr.clientHandshake(c, streamMessages, 2); err == nil {
			t.Fatalf("dialer accepted a forged acceptor")
		}
		// The dialer sends its proof only after verifying the acceptor's.
		if c.written.Len() > handshakeMax {
			t.Fatalf("dialer sent %d bytes to a forged acceptor", c.written.Len())
		}

		tr.cfg.ID = 2
		hs := handshake{stream: streamMessages, auth: authSecret, from: 1, to: 2, nonce: newNonce()}
		c = &scriptedConn{r: bytes.NewReader(data)}
		if err := tr.authenticate(c, hs); err == nil {
			t.Fatalf("acceptor accepted a forged proof")
		}
	})
}
