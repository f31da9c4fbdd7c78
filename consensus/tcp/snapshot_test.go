package tcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

func snapMsg(from, to uint64) consensus.Message {
	return consensus.Message{From: from, To: to, Kind: consensus.KindSnapshot, Payload: []byte("header")}
}

func randomBody(n int) []byte {
	var seed [32]byte
	seed[0] = byte(n)
	b := make([]byte, n)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// snapResult is what a receiving handler saw.
type snapResult struct {
	hdr      consensus.Message
	sum      [32]byte
	n        int
	maxRead  int
	readErr  error
	returned error
}

// storingHandler reads the body like a real node: to EOF, then "commits"
// only if the stream was complete.
func storingHandler(results chan<- snapResult, verdict error) func(context.Context, consensus.Message, io.Reader) error {
	return func(ctx context.Context, m consensus.Message, body io.Reader) error {
		r := snapResult{hdr: m}
		h := sha256.New()
		buf := make([]byte, 1<<20)
		for {
			n, err := body.Read(buf)
			h.Write(buf[:n])
			r.n += n
			r.maxRead = max(r.maxRead, n)
			if err == io.EOF {
				break
			}
			if err != nil {
				r.readErr = err
				break
			}
		}
		copy(r.sum[:], h.Sum(nil))
		r.returned = r.readErr
		if r.returned == nil {
			r.returned = verdict
		}
		results <- r
		return r.returned
	}
}

func TestSnapshotStreamsInChunks(t *testing.T) {
	const chunk = 64 << 10
	a, _ := newTransport(t, 1, func(c *Config) { c.SnapshotChunkBytes = chunk })
	b, recB := newTransport(t, 2, nil)
	results := make(chan snapResult, 1)
	recB.setSnap(storingHandler(results, nil))
	a.AddPeer(2, b.Addr().String())

	body := randomBody(5<<20 + 123)
	if err := a.SendSnapshot(context.Background(), snapMsg(1, 2), bytes.NewReader(body)); err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	r := <-results
	if r.readErr != nil || r.n != len(body) || r.sum != sha256.Sum256(body) {
		t.Fatalf("receiver got %d bytes (err %v), want %d identical bytes", r.n, r.readErr, len(body))
	}
	if r.maxRead > chunk {
		t.Fatalf("a read returned %d bytes, more than one %d-byte chunk", r.maxRead, chunk)
	}
	if r.hdr.From != 1 || r.hdr.To != 2 || r.hdr.Kind != consensus.KindSnapshot || string(r.hdr.Payload) != "header" {
		t.Fatalf("header %+v", r.hdr)
	}
	// The receiver counts a snapshot once its acknowledgement is written,
	// which may be just after the sender has read it.
	waitFor(t, "snapshot counts", nil, func() bool {
		return a.Stats().SnapshotsSent == 1 && b.Stats().SnapshotsReceived == 1
	})
	if a.Stats().SnapshotFailures != 0 || b.Stats().SnapshotFailures != 0 {
		t.Fatalf("failures counted: sender %d receiver %d", a.Stats().SnapshotFailures, b.Stats().SnapshotFailures)
	}
}

// A snapshot does not wait behind, nor block, the message stream.
func TestSnapshotDoesNotBlockMessages(t *testing.T) {
	a, _ := newTransport(t, 1, func(c *Config) { c.SnapshotChunkBytes = 4 << 10 })
	b, recB := newTransport(t, 2, nil)
	release := make(chan struct{})
	inHandler := make(chan struct{})
	recB.setSnap(func(ctx context.Context, m consensus.Message, body io.Reader) error {
		close(inHandler)
		<-release
		_, err := io.Copy(io.Discard, body)
		return err
	})
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	done := make(chan error, 1)
	go func() {
		done <- a.SendSnapshot(context.Background(), snapMsg(1, 2), bytes.NewReader(randomBody(1<<20)))
	}()
	<-inHandler // the receiver holds the snapshot stream
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recB.waitFor(t, "a message during the snapshot", func() bool { return len(recB.received()) == 1 })
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotFailures(t *testing.T) {
	errBody := errors.New("disk read failed")
	tests := []struct {
		name     string
		body     func(cancel context.CancelFunc) io.Reader
		verdict  error // what the receiving handler returns on a complete stream
		wantSend error
		wantRecv bool // the receiver must see a read error
	}{
		{
			name: "source fails mid-stream",
			body: func(context.CancelFunc) io.Reader {
				return io.MultiReader(bytes.NewReader(randomBody(1<<20)), iotestErrReader{errBody})
			},
			wantSend: errBody,
			wantRecv: true,
		},
		{
			name: "context canceled mid-stream",
			body: func(cancel context.CancelFunc) io.Reader {
				return io.MultiReader(bytes.NewReader(randomBody(1<<20)), cancelingReader{cancel})
			},
			wantSend: context.Canceled,
			wantRecv: true,
		},
		{
			name:     "receiver rejects",
			body:     func(context.CancelFunc) io.Reader { return bytes.NewReader(randomBody(100 << 10)) },
			verdict:  errors.New("no space left"),
			wantSend: ErrSnapshotRejected,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newTransport(t, 1, func(c *Config) { c.SnapshotChunkBytes = 16 << 10 })
			b, recB := newTransport(t, 2, nil)
			results := make(chan snapResult, 1)
			recB.setSnap(storingHandler(results, tt.verdict))
			a.AddPeer(2, b.Addr().String())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := a.SendSnapshot(ctx, snapMsg(1, 2), tt.body(cancel))
			if !errors.Is(err, tt.wantSend) {
				t.Fatalf("SendSnapshot = %v, want %v", err, tt.wantSend)
			}
			r := <-results
			if tt.wantRecv && r.readErr == nil {
				t.Fatalf("receiver read a broken stream without error (%d bytes)", r.n)
			}
			if r.returned == nil {
				t.Fatalf("receiver accepted a failed snapshot")
			}
			waitFor(t, "failure counts", nil, func() bool {
				return a.Stats().SnapshotFailures == 1 && b.Stats().SnapshotFailures == 1
			})
			if b.Stats().SnapshotsReceived != 0 {
				t.Fatalf("receiver counted a failed snapshot as received")
			}
		})
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// cancelingReader cancels the sender's context, then blocks the stream
// until the cancellation is noticed.
type cancelingReader struct{ cancel context.CancelFunc }

func (r cancelingReader) Read(p []byte) (int, error) {
	r.cancel()
	return copy(p, make([]byte, len(p))), nil
}

// A stream whose bytes do not match the declared checksum is rejected.
func TestSnapshotChecksumMismatch(t *testing.T) {
	b, recB := newTransport(t, 2, nil)
	results := make(chan snapResult, 1)
	recB.setSnap(storingHandler(results, nil))
	c := rawDial(t, b, handshake{stream: streamSnapshot, from: 1, to: 2})
	if err := readResponse(c); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(c)
	body := []byte("snapshot body")
	writeFrame(w, frameSnapHeader, []byte("hdr"))
	writeFrame(w, frameSnapChunk, body)
	writeFrame(w, frameSnapEnd, snapEnd{total: uint64(len(body)), crc: 12345}.append(nil))
	w.Flush()
	r := <-results
	if !errors.Is(r.readErr, ErrChecksum) {
		t.Fatalf("receiver read error %v, want ErrChecksum", r.readErr)
	}
	typ, n, err := readFrameHeader(c, 1+maxAckReason)
	if err != nil || typ != frameSnapAck {
		t.Fatalf("ack header: type %d, %v", typ, err)
	}
	ack := make([]byte, n)
	io.ReadFull(c, ack)
	if err := decodeAck(ack); !errors.Is(err, ErrSnapshotRejected) {
		t.Fatalf("ack = %v, want a rejection", err)
	}
}

// A sender that stops mid-stream is a read error for the receiver, which
// must not block forever (IOTimeout) nor accept the snapshot.
func TestSnapshotSenderVanishes(t *testing.T) {
	b, recB := newTransport(t, 2, func(c *Config) { c.IOTimeout = 200 * time.Millisecond })
	results := make(chan snapResult, 2)
	recB.setSnap(storingHandler(results, nil))
	for _, close := range []bool{true, false} {
		t.Run(fmt.Sprintf("close=%v", close), func(t *testing.T) {
			c := rawDial(t, b, handshake{stream: streamSnapshot, from: 1, to: 2})
			if err := readResponse(c); err != nil {
				t.Fatal(err)
			}
			w := bufio.NewWriter(c)
			writeFrame(w, frameSnapHeader, []byte("hdr"))
			w.Write(appendFrameHeader(nil, frameSnapChunk, 1000))
			w.Write(make([]byte, 10)) // 990 bytes short
			w.Flush()
			if close {
				c.Close()
			} // else: stall until the receiver's IOTimeout
			r := <-results
			if r.readErr == nil || r.returned == nil {
				t.Fatalf("receiver accepted a truncated stream: %+v", r)
			}
		})
	}
}

func TestSendSnapshotErrors(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	ctx := context.Background()
	if err := a.SendSnapshot(ctx, snapMsg(1, 9), bytes.NewReader(nil)); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
	if err := a.SendSnapshot(ctx, msg(1, 9, 0), bytes.NewReader(nil)); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("wrong kind: %v", err)
	}
	if err := a.SendSnapshot(ctx, snapMsg(2, 9), bytes.NewReader(nil)); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("wrong sender: %v", err)
	}
	if got := a.Stats().SnapshotFailures; got != 1 {
		t.Fatalf("SnapshotFailures = %d, want 1 (the unknown peer; invalid calls are not transfers)", got)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.SendSnapshot(done, snapMsg(1, 9), bytes.NewReader(nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: %v", err)
	}
	a.Close()
	if err := a.SendSnapshot(ctx, snapMsg(1, 9), bytes.NewReader(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	fresh, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.SendSnapshot(ctx, snapMsg(1, 9), bytes.NewReader(nil)); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("before Start: %v", err)
	}
}
