package tcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

var (
	testSecret  = []byte("the group's secret, 32 bytes....")
	otherSecret = []byte("another group's secret, 32 bytes")
)

func withSecret(secret []byte) func(*Config) {
	return func(c *Config) {
		c.Secret = secret
		c.AllowUnauthenticated = false
	}
}

// status reads a response on c and returns its status (or fails).
func status(t testing.TB, c net.Conn) byte {
	t.Helper()
	s, err := readStatus(c)
	if err != nil && s == 0 {
		t.Fatalf("read response: %v", err)
	}
	return s
}

// A transport told its members refuses every other sender id, and removed
// members, before reading any frame; while it knows no member yet (a new
// member waiting to be contacted) it accepts any sender that passes
// authentication.
func TestUnknownSenderRefused(t *testing.T) {
	b, recB := newTransport(t, 2, nil)
	b.AddPeer(1, "127.0.0.1:1") // b knows 1 (and 3, removed below)
	b.AddPeer(3, "127.0.0.1:1")
	b.RemovePeer(3)
	for _, from := range []uint64{77, 3} {
		refused, before := b.Stats().Refused, b.Stats().Accepted
		c := rawDial(t, b, handshake{stream: streamMessages, from: from, to: 2})
		if s := status(t, c); s != statusRefusedSender {
			t.Fatalf("sender %d: status %q, want %q", from, statusText[s], statusText[statusRefusedSender])
		}
		// Whatever it sends next is never read.
		var w bytes.Buffer
		bw := bufio.NewWriter(&w)
		writeMessage(bw, msg(from, 2, 0))
		bw.Flush()
		c.Write(w.Bytes())
		expectClosed(t, c)
		if s := b.Stats(); s.Refused != refused+1 || s.Accepted != before {
			t.Fatalf("sender %d: refused %d -> %d, accepted %d -> %d", from, refused, s.Refused, before, s.Accepted)
		}
	}
	// The same for snapshot streams.
	c := rawDial(t, b, handshake{stream: streamSnapshot, from: 77, to: 2})
	if s := status(t, c); s != statusRefusedSender {
		t.Fatalf("snapshot from 77: status %q", statusText[s])
	}
	// A known member gets through.
	c = rawDial(t, b, handshake{stream: streamMessages, from: 1, to: 2})
	if s := status(t, c); s != statusOK {
		t.Fatalf("member 1: status %q", statusText[s])
	}
	if n := len(recB.received()); n != 0 {
		t.Fatalf("%d messages delivered from refused senders", n)
	}

	// A new member that knows nobody answers whoever contacts it first.
	fresh, _ := newTransport(t, 4, nil)
	c = rawDial(t, fresh, handshake{stream: streamMessages, from: 77, to: 4})
	if s := status(t, c); s != statusOK {
		t.Fatalf("new member refused its first contact: %q", statusText[s])
	}
	fresh.AddPeer(1, "127.0.0.1:1")
	c = rawDial(t, fresh, handshake{stream: streamMessages, from: 78, to: 4})
	if s := status(t, c); s != statusRefusedSender {
		t.Fatalf("after AddPeer, an unknown sender got %q", statusText[s])
	}
}

// With TLS and no PeerIdentity, a certificate speaks for the one member it
// names: a member holding a valid certificate for 2 can neither claim to
// be 3 when dialing nor answer for 3 when dialed.
func TestTLSIdentityBoundByDefault(t *testing.T) {
	ca := newCA(t, "cluster CA")
	tlsOnly := func(cert tls.Certificate) func(*Config) {
		return func(c *Config) {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}
			c.AllowUnauthenticated = false
		}
	}
	a, recA := newTransport(t, 1, tlsOnly(ca.issue(t, 1, time.Time{})))
	mallory := ca.issue(t, 2, time.Time{})
	for _, id := range []uint64{2, 3} {
		a.AddPeer(id, "127.0.0.1:1")
	}
	dialA := func(t *testing.T, cert tls.Certificate, from uint64) byte {
		c, err := tls.Dial("tcp", a.Addr().String(), &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(handshake{stream: streamMessages, from: from, to: 1}.append(nil))
		return status(t, c)
	}

	t.Run("inbound", func(t *testing.T) {
		auth := a.Stats().AuthFailures
		if s := dialA(t, mallory, 3); s != statusIdentity {
			t.Fatalf("certificate of 2 claiming 3: %q, want %q", statusText[s], statusText[statusIdentity])
		}
		if got := a.Stats().AuthFailures; got != auth+1 {
			t.Fatalf("AuthFailures %d -> %d", auth, got)
		}
		noMember := ca.issueURIs(t, []*url.URL{{Scheme: "https", Host: "example.org"}}, time.Time{})
		if s := dialA(t, noMember, 2); s != statusIdentity {
			t.Fatalf("certificate naming no member: %q", statusText[s])
		}
		if s := dialA(t, mallory, 2); s != statusOK {
			t.Fatalf("certificate of 2 as 2: %q", statusText[s])
		}
		if n := len(recA.received()); n != 0 {
			t.Fatalf("%d messages delivered", n)
		}
	})

	t.Run("outbound", func(t *testing.T) {
		// Mallory listens where a believes member 3 is.
		m, recM := newTransport(t, 3, tlsOnly(mallory))
		a.AddPeer(3, m.Addr().String())
		auth := a.Stats().AuthFailures
		waitFor(t, "the impostor's refusal", nil, func() bool {
			a.Send([]consensus.Message{msg(1, 3, 0)})
			return a.Stats().AuthFailures >= auth+2
		})
		err := a.SendSnapshot(context.Background(), snapMsg(1, 3), bytes.NewReader(nil))
		if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrRefused) {
			t.Fatalf("SendSnapshot to an impostor = %v, want ErrAuth", err)
		}
		if n := len(recM.received()); n != 0 {
			t.Fatalf("impostor got %d messages", n)
		}
	})

	t.Run("explicit opt-out", func(t *testing.T) {
		loose, _ := newTransport(t, 5, func(c *Config) {
			tlsOnly(ca.issue(t, 5, time.Time{}))(c)
			c.InsecureAnyCertificate = true
		})
		c, err := tls.Dial("tcp", loose.Addr().String(), &tls.Config{Certificates: []tls.Certificate{mallory}, RootCAs: ca.pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(handshake{stream: streamMessages, from: 3, to: 5}.append(nil))
		if s := status(t, c); s != statusOK {
			t.Fatalf("InsecureAnyCertificate refused: %q", statusText[s])
		}
	})
}

// clientHello sends a Secret hello for member from to c's acceptor and
// returns it with the challenge that answers it.
func clientHello(t testing.TB, c net.Conn, hs handshake) ([]byte, challenge) {
	t.Helper()
	hs.auth = authSecret
	hello := hs.append(nil)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	if s := status(t, c); s != statusChallenge {
		t.Fatalf("status %q, want a challenge", statusText[s])
	}
	var b [challengeLen]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	ch, err := decodeChallenge(b[:])
	if err != nil {
		t.Fatal(err)
	}
	return hello, ch
}

func TestSecret(t *testing.T) {
	b, recB := newTransport(t, 2, withSecret(testSecret))
	a, recA := newTransport(t, 1, withSecret(testSecret))
	a.AddPeer(2, b.Addr().String())
	b.AddPeer(1, a.Addr().String())

	t.Run("same secret", func(t *testing.T) {
		a.Send([]consensus.Message{msg(1, 2, 0)})
		b.Send([]consensus.Message{msg(2, 1, 0)})
		recB.waitFor(t, "a to b", func() bool { return len(recB.received()) == 1 })
		recA.waitFor(t, "b to a", func() bool { return len(recA.received()) == 1 })
	})

	// Each case dials b as member 1 and must be refused.
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"another secret", withSecret(otherSecret)},
		{"no secret", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(recB.received())
			refused := b.Stats().Refused
			evil, _ := newTransport(t, 1, tt.mod)
			evil.AddPeer(2, b.Addr().String())
			waitFor(t, "refusal", nil, func() bool {
				evil.Send([]consensus.Message{msg(1, 2, 666)})
				return evil.Stats().Peers[2].DialErrors >= 2 && b.Stats().Refused > refused
			})
			if b.Stats().AuthFailures == 0 {
				t.Fatalf("refusal not counted as an authentication failure")
			}
			if err := evil.SendSnapshot(context.Background(), snapMsg(1, 2), bytes.NewReader([]byte("evil"))); !errors.Is(err, ErrAuth) {
				t.Fatalf("snapshot with %s: %v, want ErrAuth", tt.name, err)
			}
			evil.Close()
			if got := len(recB.received()); got != before {
				t.Fatalf("%d messages injected", got-before)
			}
		})
	}

	t.Run("an acceptor with another secret gets nothing", func(t *testing.T) {
		evil, recEvil := newTransport(t, 3, withSecret(otherSecret))
		a.AddPeer(3, evil.Addr().String())
		waitFor(t, "dial errors", nil, func() bool {
			a.Send([]consensus.Message{msg(1, 3, 0)})
			return a.Stats().Peers[3].DialErrors >= 2
		})
		if n := len(recEvil.received()); n != 0 {
			t.Fatalf("%d messages sent to an acceptor without the secret", n)
		}
		a.RemovePeer(3)
	})

	t.Run("replayed dialer proof", func(t *testing.T) {
		hs := handshake{stream: streamMessages, from: 1, to: 2, nonce: newNonce()}
		// A genuine exchange, recorded.
		c1, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		c1.SetDeadline(time.Now().Add(10 * time.Second))
		hello, ch := clientHello(t, c1, hs)
		if want := acceptorMAC(testSecret, hello, &ch.nonce); ch.mac != want {
			t.Fatalf("acceptor's proof does not verify")
		}
		proof := dialerMAC(testSecret, hello, &ch)
		c1.Write(proof[:])
		if s := status(t, c1); s != statusOK {
			t.Fatalf("genuine exchange: %q", statusText[s])
		}
		// The same hello and proof, replayed on a new connection: the
		// acceptor's fresh nonce makes the old proof worthless.
		auth := b.Stats().AuthFailures
		c2, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(10 * time.Second))
		_, ch2 := clientHello(t, c2, hs)
		if ch2.nonce == ch.nonce {
			t.Fatalf("acceptor reused its nonce")
		}
		c2.Write(proof[:])
		if s := status(t, c2); s != statusAuth {
			t.Fatalf("replayed proof: %q, want %q", statusText[s], statusText[statusAuth])
		}
		expectClosed(t, c2)
		if got := b.Stats().AuthFailures; got != auth+1 {
			t.Fatalf("AuthFailures %d -> %d", auth, got)
		}
	})

	t.Run("replayed acceptor proof", func(t *testing.T) {
		// Record a genuine challenge from b, then serve it to a, which
		// dials with a fresh nonce of its own: a must refuse and never
		// send a proof.
		c1, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c1.Close()
		c1.SetDeadline(time.Now().Add(10 * time.Second))
		_, recorded := clientHello(t, c1, handshake{stream: streamMessages, from: 1, to: 2, nonce: newNonce()})

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		sent := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				sent <- nil
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := readHandshake(c); err != nil {
				sent <- nil
				return
			}
			c.Write(recorded.append(nil))
			rest, _ := io.ReadAll(c)
			sent <- rest
		}()
		auth := a.Stats().AuthFailures
		a.AddPeer(4, ln.Addr().String())
		got := <-sent
		if len(got) != 0 {
			t.Fatalf("dialer sent %d bytes after a replayed challenge", len(got))
		}
		waitFor(t, "dialer's authentication failure", nil, func() bool { return a.Stats().AuthFailures > auth })
		a.RemovePeer(4)
	})
}

// Connections that stall anywhere in the handshake (before TLS, inside
// it, or in the Secret exchange) are closed after DialTimeout, counted,
// and never reach a frame.
func TestHandshakeDeadline(t *testing.T) {
	ca := newCA(t, "cluster CA")
	for _, tt := range []struct {
		name  string
		mod   func(*Config)
		stall func(t *testing.T, c net.Conn) net.Conn // runs the handshake partway
	}{
		{"silent before TLS", func(c *Config) {
			withTLS(ca, ca.issue(t, 2, time.Time{}))(c)
			c.Secret = testSecret
		}, func(t *testing.T, c net.Conn) net.Conn { return c }},
		{"silent after TLS", func(c *Config) {
			withTLS(ca, ca.issue(t, 2, time.Time{}))(c)
			c.Secret = testSecret
		}, func(t *testing.T, c net.Conn) net.Conn {
			tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, 1, time.Time{})}, RootCAs: ca.pool, ServerName: "127.0.0.1"})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			return tc
		}},
		{"no proof after the challenge", withSecret(testSecret), func(t *testing.T, c net.Conn) net.Conn {
			clientHello(t, c, handshake{stream: streamMessages, from: 1, to: 2, nonce: newNonce()})
			return c
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTransport(t, 2, func(c *Config) {
				tt.mod(c)
				c.AllowUnauthenticated = false
				c.DialTimeout = 300 * time.Millisecond
			})
			c, err := net.Dial("tcp", b.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			conn := tt.stall(t, c)
			n, err := io.Copy(io.Discard, conn)
			if err != nil && !isReset(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("connection not closed: %v (after %d bytes)", err, n)
			}
			if d := time.Since(start); d > 10*b.cfg.DialTimeout {
				t.Fatalf("closed after %v, DialTimeout is %v", d, b.cfg.DialTimeout)
			}
			waitFor(t, "refusal counted", nil, func() bool { return b.Stats().Refused == 1 })
			if s := b.Stats(); s.Accepted != 0 {
				t.Fatalf("stalled handshake accepted: %+v", s)
			}
		})
	}
}
