package tcp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

func TestConfigValidation(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"no id", Config{ListenAddr: "127.0.0.1:0"}, "ID is required"},
		{"no address", Config{ID: 1}, "exactly one of"},
		{"both addresses", Config{ID: 1, ListenAddr: "127.0.0.1:0", Listener: ln}, "exactly one of"},
		{"negative timeout", Config{ID: 1, ListenAddr: "127.0.0.1:0", DialTimeout: -1}, "positive"},
		{"backoff order", Config{ID: 1, ListenAddr: "127.0.0.1:0", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "exceeds MaxBackoff"},
		{"tiny frames", Config{ID: 1, ListenAddr: "127.0.0.1:0", MaxFrameBytes: 10}, "MaxFrameBytes"},
		{"chunk over frame", Config{ID: 1, ListenAddr: "127.0.0.1:0", MaxFrameBytes: 1024, SnapshotChunkBytes: 2048}, "SnapshotChunkBytes"},
		{"identity without TLS", Config{ID: 1, ListenAddr: "127.0.0.1:0", PeerIdentity: MemberIDFromCertificate}, "requires TLS"},
		{"long advertise", Config{ID: 1, ListenAddr: "127.0.0.1:0", AdvertiseAddr: strings.Repeat("a", 256)}, "255"},
		{"bad listen address", Config{ID: 1, ListenAddr: "nonsense", AllowUnauthenticated: true}, "listen"},
		{"no authentication", Config{ID: 1, ListenAddr: "127.0.0.1:0"}, "no authentication"},
		{"short secret", Config{ID: 1, ListenAddr: "127.0.0.1:0", Secret: make([]byte, MinSecretBytes-1)}, "Secret of"},
		{"any certificate without TLS", Config{ID: 1, ListenAddr: "127.0.0.1:0", AllowUnauthenticated: true, InsecureAnyCertificate: true}, "requires TLS"},
		{"liveness under keepalive", Config{ID: 1, ListenAddr: "127.0.0.1:0", AllowUnauthenticated: true, KeepaliveInterval: time.Second, LivenessTimeout: 3 * time.Second}, "4 KeepaliveIntervals"},
		{"valid unauthenticated", Config{ID: 1, ListenAddr: "127.0.0.1:0", AllowUnauthenticated: true}, ""},
		{"valid secret", Config{ID: 1, ListenAddr: "127.0.0.1:0", Secret: make([]byte, MinSecretBytes)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				defer tr.Close()
				c := tr.cfg
				if c.DialTimeout != DefaultDialTimeout || c.MaxQueueMessages != DefaultMaxQueueMessages ||
					c.MaxFrameBytes != DefaultMaxFrameBytes || c.SnapshotChunkBytes != DefaultSnapshotChunkBytes ||
					c.MinBackoff != DefaultMinBackoff || c.MaxBackoff != DefaultMaxBackoff || c.IOTimeout != DefaultIOTimeout {
					t.Fatalf("defaults not applied: %+v", c)
				}
				if tr.advertise != tr.Addr().String() {
					t.Fatalf("advertise = %q, want the listener address %q", tr.advertise, tr.Addr())
				}
				return
			}
			if err == nil {
				tr.Close()
				t.Fatalf("New accepted an invalid config")
			}
			if tt.name != "bad listen address" && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDeliveryInOrderAndBatched(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	c, recC := newTransport(t, 3, nil)
	a.AddPeer(2, b.Addr().String())
	a.AddPeer(3, c.Addr().String())
	waitConnected(t, a, 2)
	waitConnected(t, a, 3)

	// One Send with 500 messages to each peer, interleaved in runs.
	const n = 500
	var msgs []consensus.Message
	for i := range n {
		msgs = append(msgs, msg(1, 2, i), msg(1, 3, i))
	}
	a.Send(msgs)
	for _, r := range []*recorder{recB, recC} {
		r.waitFor(t, "all messages", func() bool { return len(r.received()) >= n })
	}
	for id, r := range map[uint64]*recorder{2: recB, 3: recC} {
		got := r.received()
		if len(got) != n {
			t.Fatalf("peer %d got %d messages, want %d", id, len(got), n)
		}
		for i, m := range got {
			if m.From != 1 || m.To != id || m.Kind != consensus.KindAppend || string(m.Payload) != fmt.Sprintf("m%d", i) {
				t.Fatalf("peer %d message %d = %+v (%q)", id, i, m, m.Payload)
			}
		}
		waitFor(t, "send stats", nil, func() bool { return a.Stats().Peers[id].Sent == n })
		st := a.Stats().Peers[id]
		if st.Sent != n || st.Dropped != 0 {
			t.Fatalf("stats to %d: %+v", id, st)
		}
		// The writer had everything queued at once: far fewer writes than
		// messages.
		if st.Batches == 0 || st.Batches > n/10 {
			t.Fatalf("%d messages took %d batched writes", n, st.Batches)
		}
	}
	if st := b.Stats(); st.Received != n || st.Accepted != 1 {
		t.Fatalf("receiver stats %+v", st)
	}
	recB.mu.Lock()
	batches := len(recB.batches)
	recB.mu.Unlock()
	if batches >= n {
		t.Fatalf("receiver got %d messages in %d batches: no batching", n, batches)
	}
}

func TestSendFiltersMessages(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	a.Send([]consensus.Message{
		{From: 7, To: 2, Kind: consensus.KindAppend, Payload: []byte("forged")},
		{From: 1, To: 2, Kind: consensus.KindSnapshot, Payload: []byte("snap")},
		{From: 1, To: 9, Kind: consensus.KindOther, Payload: []byte("nobody")},
		{From: 1, To: 2, Kind: consensus.KindHeartbeat, Payload: []byte("ok")},
	})
	recB.waitFor(t, "the valid message", func() bool { return len(recB.received()) == 1 })
	if got := recB.received()[0]; string(got.Payload) != "ok" || got.Kind != consensus.KindHeartbeat {
		t.Fatalf("got %+v", got)
	}
	if recA.unreachableCount(9) != 1 {
		t.Fatalf("unknown peer not reported unreachable")
	}
	if st := a.Stats().Peers[2]; st.Dropped != 2 {
		t.Fatalf("dropped = %d, want 2", st.Dropped)
	}
}

// stallingPeer accepts one message stream (with TLS if tc is set), answers
// its handshake and then never reads, so the sender's buffers fill up.
func stallingPeer(t *testing.T, tc *tls.Config) (addr string, accepted <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	done := make(chan struct{})
	var held net.Conn
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		held = c
		if tc != nil {
			c = tls.Server(c, tc)
		}
		if _, err := readHandshake(c); err == nil {
			c.Write(appendResponse(nil, statusOK))
		}
		close(ch)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		if held != nil {
			held.Close()
		}
	})
	return ln.Addr().String(), ch
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	ca := newCA(t, "ca")
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			var peerTLS *tls.Config
			if withTLS {
				peerTLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 2, time.Time{})}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}
			}
			fullQueue(t, ca, peerTLS)
		})
	}
}

func fullQueue(t *testing.T, ca *testCA, peerTLS *tls.Config) {
	addr, accepted := stallingPeer(t, peerTLS)
	a, recA := newTransport(t, 1, func(c *Config) {
		c.MaxQueueMessages = 64
		c.MaxQueueBytes = 1 << 20
		c.IOTimeout = time.Minute // the writer stays stuck in its write
		if peerTLS != nil {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 1, time.Time{})}, RootCAs: ca.pool}
		}
	})
	a.AddPeer(2, addr)
	<-accepted
	waitConnected(t, a, 2)
	payload := make([]byte, 16<<10)
	const sends = 2000 // 32 MiB: far beyond socket buffers and the queue
	for i := range sends {
		a.Send([]consensus.Message{{From: 1, To: 2, Kind: consensus.KindAppend, Payload: payload[:len(payload)-i%7]}})
	}
	st := a.Stats().Peers[2]
	if st.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", st)
	}
	if st.Queued > 64 || st.QueuedBytes > 1<<20 {
		t.Fatalf("queue exceeded its bounds: %+v", st)
	}
	if recA.unreachableCount(2) == 0 {
		t.Fatalf("drops not reported with Unreachable")
	}
	if st.Sent+st.Dropped+uint64(st.Queued) > sends {
		t.Fatalf("accounting: %+v for %d messages", st, sends)
	}
	// Appends fill only their share of the queue; heartbeats still fit.
	waitFor(t, "the append share to fill", nil, func() bool {
		// Keep pushing until the socket buffers are full and the writer
		// is stuck, so the queue stops draining.
		more := make([]consensus.Message, 64)
		for i := range more {
			more[i] = consensus.Message{From: 1, To: 2, Kind: consensus.KindAppend, Payload: payload}
		}
		a.Send(more)
		q := a.Stats().Peers[2].Queued
		if q > 56 {
			t.Fatalf("appends fill %d of 64 queue slots, want 56", q)
		}
		return q == 56
	})
	recA.mu.Lock()
	before := recA.unreachable[2]
	recA.mu.Unlock()
	a.Send([]consensus.Message{{From: 1, To: 2, Kind: consensus.KindHeartbeat, Payload: []byte("hb")}})
	if got := a.Stats().Peers[2]; got.Queued != 57 || recA.unreachableCount(2) != before {
		t.Fatalf("heartbeat not queued behind a full append share: %+v", got)
	}
	// Close does not wait for the stuck write (IOTimeout is a minute).
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Close blocked behind a stalled peer")
	}
}

func TestDropsWhilePeerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here
	a, recA := newTransport(t, 1, nil)
	a.AddPeer(2, addr)
	waitFor(t, "a failed dial", nil, func() bool { return a.Stats().Peers[2].DialErrors > 0 })
	waitFor(t, "a drop", nil, func() bool {
		a.Send([]consensus.Message{msg(1, 2, 0)})
		return a.Stats().Peers[2].Dropped > 0
	})
	if recA.unreachableCount(2) == 0 {
		t.Fatalf("no Unreachable for a down peer")
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	addr := b.Addr().String()
	a.AddPeer(2, addr)
	waitConnected(t, a, 2)
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recB.waitFor(t, "first message", func() bool { return len(recB.received()) == 1 })

	b.Close()
	waitFor(t, "the stream to notice", nil, func() bool { return !a.Stats().Peers[2].Connected })
	ln, err := net.Listen("tcp", addr) // the same member comes back on the same address
	if err != nil {
		t.Fatal(err)
	}
	_, recB2 := newTransport(t, 2, func(c *Config) { c.Listener = ln })
	i := 1
	recB2.waitFor(t, "delivery after restart", func() bool {
		a.Send([]consensus.Message{msg(1, 2, i)})
		i++
		return len(recB2.received()) > 0
	})
	if st := a.Stats().Peers[2]; st.Reconnects < 1 || st.Connects < 2 {
		t.Fatalf("stats after restart: %+v", st)
	}
}

func TestAddressChange(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	old, recOld := newTransport(t, 2, nil)
	a.AddPeer(2, old.Addr().String())
	waitConnected(t, a, 2)
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recOld.waitFor(t, "message at the old address", func() bool { return len(recOld.received()) == 1 })

	// Member 2 moves; the old process keeps running but must not get more.
	moved, recNew := newTransport(t, 2, nil)
	a.AddPeer(2, moved.Addr().String())
	i := 1
	recNew.waitFor(t, "delivery at the new address", func() bool {
		a.Send([]consensus.Message{msg(1, 2, i)})
		i++
		return len(recNew.received()) > 0
	})
	if st := a.Stats().Peers[2]; st.Addr != moved.Addr().String() {
		t.Fatalf("stats addr %q, want %q", st.Addr, moved.Addr())
	}
	before := len(recOld.received())
	a.Send([]consensus.Message{msg(1, 2, 1000)})
	recNew.waitFor(t, "the marker", func() bool {
		got := recNew.received()
		return string(got[len(got)-1].Payload) == "m1000"
	})
	if len(recOld.received()) != before {
		t.Fatalf("the old address still receives")
	}
}

func TestRemovePeer(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, _ := newTransport(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	b.AddPeer(1, a.Addr().String())
	waitConnected(t, b, 1)
	b.Send([]consensus.Message{msg(2, 1, 0)})
	recA.waitFor(t, "message from 2", func() bool { return len(recA.received()) == 1 })

	a.RemovePeer(2)
	if _, ok := a.Stats().Peers[2]; ok {
		t.Fatalf("removed peer still in stats")
	}
	// a closes 2's stream and refuses it from now on.
	waitFor(t, "refusal of the removed member", nil, func() bool {
		b.Send([]consensus.Message{msg(2, 1, 1)})
		return a.Stats().Refused > 0
	})
	if got := len(recA.received()); got != 1 {
		t.Fatalf("a received %d messages from a removed member", got-1)
	}
	a.Send([]consensus.Message{msg(1, 2, 0)})
	if recA.unreachableCount(2) == 0 {
		t.Fatalf("send to a removed member not reported unreachable")
	}
}

func TestLearnsAdvertisedAddress(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	// b knows a, a was never told about b (a new member being caught up).
	b.AddPeer(1, a.Addr().String())
	waitConnected(t, b, 1)
	b.Send([]consensus.Message{msg(2, 1, 0)})
	recA.waitFor(t, "message from 2", func() bool { return len(recA.received()) == 1 })
	a.Send([]consensus.Message{msg(1, 2, 0)}) // creates the stream; may drop while dialing
	i := 1
	recB.waitFor(t, "a reply", func() bool {
		a.Send([]consensus.Message{msg(1, 2, i)})
		i++
		return len(recB.received()) > 0
	})
	if st := a.Stats().Peers[2]; st.Addr != b.Addr().String() {
		t.Fatalf("learned addr %q, want %q", st.Addr, b.Addr())
	}
}

func TestCloseIdempotentAndRefusesWork(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, _ := newTransport(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	for range 2 {
		if err := a.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	a.Send([]consensus.Message{msg(1, 2, 0), msg(1, 9, 0)}) // no panic, no goroutine, no handler call
	if n := recA.unreachableCount(2) + recA.unreachableCount(9); n != 0 {
		t.Fatalf("Unreachable called %d times after Close", n)
	}
	a.AddPeer(3, "127.0.0.1:1")
	if err := a.Start(newRecorder()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if _, err := net.Dial("tcp", a.Addr().String()); err == nil {
		t.Fatalf("listener still open after Close")
	}
}

func TestCloseBeforeStart(t *testing.T) {
	tr, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0", AllowUnauthenticated: true})
	if err != nil {
		t.Fatal(err)
	}
	tr.AddPeer(2, "127.0.0.1:1")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// A member added without an address becomes reachable once it connects
// and advertises one.
func TestEmptyAddressFilledByHandshake(t *testing.T) {
	a, recA := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	a.AddPeer(2, "")
	a.Send([]consensus.Message{msg(1, 2, 0)})
	if recA.unreachableCount(2) != 1 {
		t.Fatalf("send to a member without address not reported unreachable")
	}
	b.AddPeer(1, a.Addr().String())
	waitConnected(t, b, 1)
	b.Send([]consensus.Message{msg(2, 1, 0)})
	recA.waitFor(t, "message from 2", func() bool { return len(recA.received()) == 1 })
	i := 1
	recB.waitFor(t, "a reply", func() bool {
		a.Send([]consensus.Message{msg(1, 2, i)})
		i++
		return len(recB.received()) > 0
	})
}

// AddPeer with an empty address (the node knows no better) keeps the
// address a member already has.
func TestAddPeerEmptyKeepsAddress(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	a.AddPeer(2, "")
	if st := a.Stats().Peers[2]; st.Addr != b.Addr().String() || st.Reconnects != 0 {
		t.Fatalf("empty AddPeer changed the peer: %+v", st)
	}
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recB.waitFor(t, "delivery", func() bool { return len(recB.received()) == 1 })
}

// A peer that stops reading is disconnected after IOTimeout instead of
// holding the stream (and its queue) forever.
func TestStalledPeerDisconnected(t *testing.T) {
	addr, accepted := stallingPeer(t, nil)
	a, recA := newTransport(t, 1, func(c *Config) {
		c.IOTimeout = 100 * time.Millisecond
		c.DialTimeout = 100 * time.Millisecond
	})
	a.AddPeer(2, addr)
	<-accepted
	waitConnected(t, a, 2)
	payload := make([]byte, 64<<10)
	waitFor(t, "the stalled stream to be dropped", nil, func() bool {
		a.Send([]consensus.Message{{From: 1, To: 2, Kind: consensus.KindAppend, Payload: payload}})
		return !a.Stats().Peers[2].Connected
	})
	if recA.unreachableCount(2) == 0 {
		t.Fatalf("stalled peer not reported unreachable")
	}
}
