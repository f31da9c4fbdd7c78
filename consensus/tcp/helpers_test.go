package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

// recorder is a consensus.Handler that remembers what it was given.
type recorder struct {
	mu          sync.Mutex
	msgs        []consensus.Message
	batches     []int
	unreachable map[uint64]int
	got         chan struct{} // signalled on every delivery
	snap        func(ctx context.Context, m consensus.Message, body io.Reader) error
}

func newRecorder() *recorder {
	return &recorder{unreachable: map[uint64]int{}, got: make(chan struct{}, 1)}
}

func (r *recorder) HandleMessages(msgs []consensus.Message) {
	r.mu.Lock()
	for _, m := range msgs {
		m.Payload = bytes.Clone(m.Payload) // the transport reuses its buffers
		r.msgs = append(r.msgs, m)
	}
	r.batches = append(r.batches, len(msgs))
	r.mu.Unlock()
	signal(r.got)
}

func (r *recorder) HandleSnapshot(ctx context.Context, m consensus.Message, body io.Reader) error {
	r.mu.Lock()
	snap := r.snap
	r.mu.Unlock()
	if snap != nil {
		return snap(ctx, m, body)
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

// setSnap installs f as the snapshot handler (nil: read and accept).
func (r *recorder) setSnap(f func(ctx context.Context, m consensus.Message, body io.Reader) error) {
	r.mu.Lock()
	r.snap = f
	r.mu.Unlock()
}

func (r *recorder) Unreachable(id uint64) {
	r.mu.Lock()
	r.unreachable[id]++
	r.mu.Unlock()
}

func (r *recorder) received() []consensus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]consensus.Message(nil), r.msgs...)
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

// waitFor waits until cond holds, re-checking on every delivery and at
// least every 10ms; it fails the test after 10s.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, r.got, cond)
}

func waitFor(t testing.TB, what string, wake <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-wake:
		case <-tick.C:
		}
	}
}

// testLogger logs errors to the test's output; TCP_TEST_LOG=debug (or
// info, warn) shows more.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelError
	if v := os.Getenv("TCP_TEST_LOG"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			t.Fatalf("TCP_TEST_LOG: %v", err)
		}
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// newTransport starts a transport for id on 127.0.0.1:0 with fast
// reconnects; mod adjusts its Config.
func newTransport(t testing.TB, id uint64, mod func(*Config)) (*Transport, *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ID:         id,
		Listener:   ln,
		MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		Logger:     testLogger(t),
		// Tests that need authentication set TLS or Secret in mod.
		AllowUnauthenticated: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := tr.Start(rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, rec
}

func msg(from, to uint64, i int) consensus.Message {
	return consensus.Message{From: from, To: to, Kind: consensus.KindAppend, Payload: fmt.Appendf(nil, "m%d", i)}
}

// waitConnected waits until tr's stream to id is up.
func waitConnected(t testing.TB, tr *Transport, id uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("stream to %d", id), nil, func() bool { return tr.Stats().Peers[id].Connected })
}

// rawDial opens a plain connection to tr and sends a handshake.
func rawDial(t testing.TB, tr *Transport, hs handshake) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hs.append(nil)); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectClosed checks that the remote end closes c without sending
// anything more than keepalive frames (a message stream's receiver sends
// one as soon as it waits for data).
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got bytes.Buffer
	_, err := io.Copy(&got, c)
	if err != nil && !isReset(err) {
		t.Fatalf("connection not closed by the transport: %v", err)
	}
	rest := got.Bytes()
	ka := appendFrameHeader(nil, frameKeepalive, 0)
	for bytes.HasPrefix(rest, ka) {
		rest = rest[len(ka):]
	}
	if len(rest) != 0 {
		t.Fatalf("got %d unexpected bytes before close", len(rest))
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// readResponse reads a final handshake response: nil for statusOK.
func readResponse(r io.Reader) error {
	s, err := readStatus(r)
	if err == nil && s != statusOK {
		err = fmt.Errorf("tcp: unexpected %s: %w", statusText[s], ErrMalformed)
	}
	return err
}

// decodeResponse decodes a final handshake response: nil for statusOK.
func decodeResponse(b []byte) error {
	s, err := decodeStatus(b)
	if err == nil && s != statusOK {
		err = fmt.Errorf("tcp: unexpected %s: %w", statusText[s], ErrMalformed)
	}
	return err
}
