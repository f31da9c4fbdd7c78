package tcp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for member id, valid for 127.0.0.1, named
// with MemberURI, valid from notBefore for an hour (now if zero).
func (ca *testCA) issue(t testing.TB, id uint64, notBefore time.Time) tls.Certificate {
	t.Helper()
	return ca.issueURIs(t, []*url.URL{MemberURI(id)}, notBefore)
}

// issueURIs is issue with the certificate's URIs given.
func (ca *testCA) issueURIs(t testing.TB, uris []*url.URL, notBefore time.Time) tls.Certificate {
	t.Helper()
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Minute)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "member"},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// withTLS configures mutual TLS with cert, trusting ca, checking member ids.
func withTLS(ca *testCA, cert tls.Certificate) func(*Config) {
	return func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}
		c.PeerIdentity = MemberIDFromCertificate
	}
}

func TestMutualTLS(t *testing.T) {
	ca := newCA(t, "cluster CA")
	other := newCA(t, "another CA")
	b, recB := newTransport(t, 2, withTLS(ca, ca.issue(t, 2, time.Time{})))
	bAddr := b.Addr().String()

	t.Run("same CA delivers messages and snapshots", func(t *testing.T) {
		a, _ := newTransport(t, 1, withTLS(ca, ca.issue(t, 1, time.Time{})))
		a.AddPeer(2, bAddr)
		waitConnected(t, a, 2)
		a.Send([]consensus.Message{msg(1, 2, 0)})
		recB.waitFor(t, "message over TLS", func() bool { return len(recB.received()) == 1 })
		body := randomBody(300 << 10)
		got := make(chan []byte, 1)
		recB.setSnap(func(ctx context.Context, m consensus.Message, r io.Reader) error {
			var buf bytes.Buffer
			_, err := buf.ReadFrom(r)
			got <- buf.Bytes()
			return err
		})
		defer func() { recB.setSnap(nil) }()
		if err := a.SendSnapshot(context.Background(), snapMsg(1, 2), bytes.NewReader(body)); err != nil {
			t.Fatalf("snapshot over TLS: %v", err)
		}
		if !bytes.Equal(<-got, body) {
			t.Fatalf("snapshot body differs")
		}
	})

	// Each case dials b and must be refused without delivering anything.
	refused := []struct {
		name string
		mod  func(*Config)
	}{
		{"certificate from another CA", func(c *Config) {
			// It trusts b's CA, so only b's check of its certificate stops it.
			pool := ca.pool.Clone()
			pool.AddCert(other.cert)
			c.TLS = &tls.Config{Certificates: []tls.Certificate{other.issue(t, 1, time.Time{})}, RootCAs: pool}
		}},
		{"certificate of another member", withTLS(ca, ca.issue(t, 3, time.Time{}))},
		{"expired certificate", withTLS(ca, ca.issue(t, 1, time.Now().Add(-2*time.Hour)))},
		{"no TLS", nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := len(recB.received())
			refusedBefore := b.Stats().Refused
			evil, _ := newTransport(t, 1, tt.mod)
			evil.AddPeer(2, bAddr)
			waitFor(t, "refusal", nil, func() bool {
				evil.Send([]consensus.Message{msg(1, 2, 666)})
				return evil.Stats().Peers[2].DialErrors >= 2 && b.Stats().Refused > refusedBefore
			})
			if err := evil.SendSnapshot(context.Background(), snapMsg(1, 2), bytes.NewReader([]byte("evil"))); err == nil {
				t.Fatalf("snapshot accepted")
			}
			evil.Close()
			if got := len(recB.received()); got != before {
				t.Fatalf("%d messages injected", got-before)
			}
		})
	}

	t.Run("client without certificate", func(t *testing.T) {
		refusedBefore := b.Stats().Refused
		c, err := tls.Dial("tcp", bAddr, &tls.Config{RootCAs: ca.pool})
		if err == nil {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(handshake{stream: streamMessages, from: 1, to: 2}.append(nil))
			if err := readResponse(c); err == nil {
				t.Fatalf("handshake accepted without a client certificate")
			}
		}
		waitFor(t, "refusal", nil, func() bool { return b.Stats().Refused > refusedBefore })
	})

	t.Run("server of another member", func(t *testing.T) {
		// a thinks member 3 lives at b's address: b's certificate says 2.
		a, _ := newTransport(t, 1, withTLS(ca, ca.issue(t, 1, time.Time{})))
		a.AddPeer(3, bAddr)
		waitFor(t, "dial errors", nil, func() bool { return a.Stats().Peers[3].DialErrors >= 1 })
		err := a.SendSnapshot(context.Background(), snapMsg(1, 3), bytes.NewReader(nil))
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("SendSnapshot to an impostor = %v, want ErrRefused", err)
		}
	})
}

func TestTLSConfigValidation(t *testing.T) {
	ca := newCA(t, "ca")
	cert := ca.issue(t, 1, time.Time{})
	tests := []struct {
		name string
		tls  *tls.Config
	}{
		{"no certificate", &tls.Config{RootCAs: ca.pool}},
		{"no roots", &tls.Config{Certificates: []tls.Certificate{cert}}},
		{"skip verify", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, InsecureSkipVerify: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0", TLS: tt.tls})
			if !errors.Is(err, ErrInvalidConfig) {
				if tr != nil {
					tr.Close()
				}
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	user := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}
	tr, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0", TLS: user})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if user.ClientAuth != tls.NoClientCert || user.ClientCAs != nil {
		t.Fatalf("New modified the caller's tls.Config")
	}
	if tr.cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert || tr.cfg.TLS.ClientCAs != ca.pool {
		t.Fatalf("client certificates not required")
	}
}

func TestMemberIDFromCertificate(t *testing.T) {
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	tests := []struct {
		name string
		uris []*url.URL
		want uint64 // 0: error
	}{
		{"one member", []*url.URL{MemberURI(7)}, 7},
		{"with unrelated URIs", []*url.URL{u("spiffe://example.org/x"), MemberURI(1<<64 - 1)}, 1<<64 - 1},
		{"none", nil, 0},
		{"two", []*url.URL{MemberURI(1), MemberURI(2)}, 0},
		{"zero", []*url.URL{u("distkit://member/0")}, 0},
		{"not a number", []*url.URL{u("distkit://member/x1")}, 0},
		{"overflow", []*url.URL{u("distkit://member/18446744073709551616")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MemberIDFromCertificate(&x509.Certificate{URIs: tt.uris})
			if tt.want == 0 {
				if err == nil || !errors.Is(err, ErrRefused) {
					t.Fatalf("got %d, %v; want ErrRefused", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
