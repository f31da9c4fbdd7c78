package tcp

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

func TestHandshakeRefusals(t *testing.T) {
	b, recB := newTransport(t, 2, func(c *Config) { c.ClusterID = 42 })
	b.RemovePeer(5)
	ok := handshake{stream: streamMessages, cluster: 42, from: 1, to: 2}
	tests := []struct {
		name string
		mod  func(*handshake)
		want byte
	}{
		{"accepted", func(*handshake) {}, statusOK},
		{"wrong receiver", func(h *handshake) { h.to = 3 }, statusWrongReceiver},
		{"wrong cluster", func(h *handshake) { h.cluster = 43 }, statusWrongCluster},
		{"no cluster", func(h *handshake) { h.cluster = 0 }, statusWrongCluster},
		{"zero sender", func(h *handshake) { h.from = 0 }, statusRefusedSender},
		{"sender is receiver", func(h *handshake) { h.from = 2 }, statusRefusedSender},
		{"removed sender", func(h *handshake) { h.from = 5 }, statusRefusedSender},
		{"unknown stream", func(h *handshake) { h.stream = 9 }, statusBadStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := ok
			tt.mod(&hs)
			c := rawDial(t, b, hs)
			err := readResponse(c)
			if tt.want == statusOK {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// The stream works: deliver one message.
				w := bufio.NewWriter(c)
				if err := writeFrame(w, frameMessage, []byte{byte(consensus.KindOther)}, []byte("hi")); err != nil {
					t.Fatal(err)
				}
				w.Flush()
				recB.waitFor(t, "message", func() bool { return len(recB.received()) == 1 })
				return
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("err = %v, want ErrRefused", err)
			}
			if want := statusText[tt.want]; !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want reason %q", err, want)
			}
			expectClosed(t, c)
		})
	}
	if got := len(recB.received()); got != 1 {
		t.Fatalf("refused connections delivered %d messages", got-1)
	}
	if st := b.Stats(); st.Refused != uint64(len(tests)-1) {
		t.Fatalf("Refused = %d, want %d", st.Refused, len(tests)-1)
	}
}

// A transport dialing the wrong member (the address now belongs to someone
// else) is refused, counts the failure and delivers nothing.
func TestDialWrongMemberRefused(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	a.AddPeer(3, b.Addr().String()) // 3's address is really 2's
	waitFor(t, "refused dials", nil, func() bool { return a.Stats().Peers[3].DialErrors >= 2 })
	a.Send([]consensus.Message{msg(1, 3, 0)})
	if len(recB.received()) != 0 {
		t.Fatalf("message for member 3 delivered to member 2")
	}
	if b.Stats().Refused == 0 {
		t.Fatalf("receiver did not count the refusal")
	}
	waitFor(t, "unreachable report", nil, func() bool {
		a.Send([]consensus.Message{msg(1, 3, 0)})
		return recA.unreachableCount(3) > 0
	})
}

func TestWrongClusterRefused(t *testing.T) {
	a, _ := newTransport(t, 1, func(c *Config) { c.ClusterID = 1 })
	b, recB := newTransport(t, 2, func(c *Config) { c.ClusterID = 2 })
	a.AddPeer(2, b.Addr().String())
	waitFor(t, "refused dials", nil, func() bool { return a.Stats().Peers[2].DialErrors >= 2 })
	if len(recB.received()) != 0 || b.Stats().Accepted != 0 {
		t.Fatalf("a connection from another cluster was accepted")
	}
}

// Garbage, malformed and oversized frames close the connection; the
// transport keeps serving other peers.
func TestBadInputClosesConnection(t *testing.T) {
	// Sender 3, so the test's streams never replace the real stream from 1.
	good := handshake{stream: streamMessages, from: 3, to: 2}
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name      string
		handshake bool   // send a valid handshake first
		bytes     []byte // then these
		badFrame  bool   // counted in Stats.BadFrames
	}{
		{"garbage instead of handshake", false, garbage, false},
		{"http request", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + string(make([]byte, 64))), false},
		{"garbage frames", true, garbage, true},
		{"oversized frame", true, appendFrameHeader(nil, frameMessage, 1<<20+1), true},
		{"max uint32 length", true, []byte{0xff, 0xff, 0xff, 0xff, wireVersion<<4 | frameMessage}, true},
		{"unknown frame type", true, append(appendFrameHeader(nil, 0xf, 1), 0), true},
		{"wrong version", true, []byte{0, 0, 0, 1, 1<<4 | frameMessage, 0}, true},
		{"empty message", true, appendFrameHeader(nil, frameMessage, 0), true},
		{"snapshot kind on message stream", true, append(appendFrameHeader(nil, frameMessage, 2), byte(consensus.KindSnapshot), 0), true},
		{"snapshot frame on message stream", true, append(appendFrameHeader(nil, frameSnapChunk, 1), 0), true},
	}
	b, recB := newTransport(t, 2, func(c *Config) { c.MaxFrameBytes = 1 << 20 })
	a, _ := newTransport(t, 1, nil)
	a.AddPeer(2, b.Addr().String())
	bad := uint64(0)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.handshake {
				c.Write(good.append(nil))
				if err := readResponse(c); err != nil {
					t.Fatal(err)
				}
			}
			c.Write(tt.bytes)
			if !tt.handshake {
				// The acceptor answers nothing a dialer would accept.
				if err := readResponse(c); err == nil {
					t.Fatalf("garbage handshake accepted")
				}
			}
			expectClosed(t, c)
			if tt.badFrame {
				bad++
				waitFor(t, "bad frame count", nil, func() bool { return b.Stats().BadFrames == bad })
			}
			// The transport keeps serving: a real peer still gets through.
			a.Send([]consensus.Message{msg(1, 2, i)})
			recB.waitFor(t, "delivery after bad input", func() bool {
				for _, m := range recB.received() {
					if string(m.Payload) == string(msg(1, 2, i).Payload) {
						return true
					}
				}
				a.Send([]consensus.Message{msg(1, 2, i)})
				return false
			})
		})
	}
	for _, m := range recB.received() {
		if m.From != 1 {
			t.Fatalf("bad input delivered a message: %+v", m)
		}
	}
}

// An outbound message larger than MaxFrameBytes is dropped by the sender,
// and the stream stays up for the next one.
func TestOversizedMessageDropped(t *testing.T) {
	a, recA := newTransport(t, 1, func(c *Config) { c.MaxFrameBytes = 4096 })
	b, recB := newTransport(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	a.Send([]consensus.Message{
		{From: 1, To: 2, Kind: consensus.KindAppend, Payload: make([]byte, 4096)},
		msg(1, 2, 1),
	})
	recB.waitFor(t, "the small message", func() bool { return len(recB.received()) == 1 })
	if got := recB.received()[0]; string(got.Payload) != "m1" {
		t.Fatalf("got %q", got.Payload)
	}
	if st := a.Stats().Peers[2]; st.Dropped != 1 || !st.Connected {
		t.Fatalf("stats %+v", st)
	}
	if recA.unreachableCount(2) != 1 {
		t.Fatalf("dropped message not reported")
	}
}

func TestMaxConns(t *testing.T) {
	b, recB := newTransport(t, 2, func(c *Config) { c.MaxConns = 2; c.DialTimeout = time.Minute })
	var idle []net.Conn
	for range 2 { // two connections sit in the handshake
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	waitFor(t, "two tracked connections", nil, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.inbound == 2
	})
	c := rawDial(t, b, handshake{stream: streamMessages, from: 1, to: 2})
	expectClosed(t, c)
	if b.Stats().Refused == 0 {
		t.Fatalf("connection over the limit not counted")
	}
	for _, c := range idle {
		c.Close()
	}
	a, _ := newTransport(t, 1, nil)
	a.AddPeer(2, b.Addr().String())
	recB.waitFor(t, "delivery once connections closed", func() bool {
		a.Send([]consensus.Message{msg(1, 2, 0)})
		return len(recB.received()) > 0
	})
}

// A second message stream from the same sender replaces the first, which
// may be half-open after the sender crashed.
func TestNewStreamReplacesOld(t *testing.T) {
	b, recB := newTransport(t, 2, nil)
	hs := handshake{stream: streamMessages, from: 1, to: 2}
	old := rawDial(t, b, hs)
	if err := readResponse(old); err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, b, hs)
	if err := readResponse(c); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, old)
	w := bufio.NewWriter(c)
	writeFrame(w, frameMessage, []byte{byte(consensus.KindOther), 'x'})
	w.Flush()
	recB.waitFor(t, "message on the new stream", func() bool { return len(recB.received()) == 1 })
}
