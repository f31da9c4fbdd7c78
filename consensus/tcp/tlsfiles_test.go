package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
)

// writePEM writes cert and its key to dir/name.crt and dir/name.key with
// the given modification time.
func writePEM(t *testing.T, dir, name string, cert tls.Certificate, mtime time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	files := map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
	for f, b := range files {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func TestLoadTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "file CA")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	load := func(id uint64, name string) *tls.Config {
		c, k := writePEM(t, dir, name, ca.issue(t, id, time.Time{}), t0)
		cfg, err := LoadTLSConfig(caFile, c, k)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tls1, tls2 := load(1, "m1"), load(2, "m2")
	a, _ := newTransport(t, 1, func(c *Config) { c.TLS = tls1; c.PeerIdentity = MemberIDFromCertificate })
	b, recB := newTransport(t, 2, func(c *Config) { c.TLS = tls2; c.PeerIdentity = MemberIDFromCertificate })
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	a.Send([]consensus.Message{msg(1, 2, 0)})
	recB.waitFor(t, "message", func() bool { return len(recB.received()) == 1 })

	// Rotation: member 2's files change; new connections get the new pair.
	serial := func() string {
		c, err := tls.Dial("tcp", b.Addr().String(), &tls.Config{RootCAs: ca.pool, GetClientCertificate: tls1.GetClientCertificate})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	next := ca.issue(t, 2, time.Time{})
	writePEM(t, dir, "m2", next, t0.Add(time.Minute))
	leaf, _ := x509.ParseCertificate(next.Certificate[0])
	if got := serial(); got == before || got != leaf.SerialNumber.String() {
		t.Fatalf("after rotation the server presents serial %s, want %s (was %s)", got, leaf.SerialNumber, before)
	}
	// A half-written rotation (key does not match) keeps the current pair.
	other := ca.issue(t, 2, time.Time{})
	kf := filepath.Join(dir, "m2.key")
	key, _ := x509.MarshalPKCS8PrivateKey(other.PrivateKey)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	os.Chtimes(kf, t0.Add(2*time.Minute), t0.Add(2*time.Minute))
	if got := serial(); got != leaf.SerialNumber.String() {
		t.Fatalf("mismatched key pair replaced the working certificate")
	}
}

func TestLoadTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	caFile := filepath.Join(dir, "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600)
	notPEM := filepath.Join(dir, "junk")
	os.WriteFile(notPEM, []byte("junk"), 0o600)
	c, k := writePEM(t, dir, "m", ca.issue(t, 1, time.Time{}), time.Now())
	tests := []struct {
		name                     string
		ca, cert, key            string
		wantInvalid, wantMissing bool
	}{
		{"missing CA", filepath.Join(dir, "nope"), c, k, false, true},
		{"CA not PEM", notPEM, c, k, true, false},
		{"missing cert", caFile, filepath.Join(dir, "nope"), k, false, true},
		{"key not PEM", caFile, c, notPEM, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTLSConfig(tt.ca, tt.cert, tt.key)
			if err == nil {
				t.Fatalf("loaded")
			}
			if tt.wantInvalid && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if tt.wantMissing && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("err = %v, want os.ErrNotExist", err)
			}
		})
	}
}
