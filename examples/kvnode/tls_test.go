package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes ca.pem, <name>.pem and <name>.key into dir and returns the
// kvnode flags that use them.
func (ca *testCA) issue(t *testing.T, dir, name string) []string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	caPath, certPath, keyPath := filepath.Join(dir, name+"-ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	for path, b := range map[string][]byte{
		caPath:   ca.pem,
		certPath: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"-tls-ca", caPath, "-tls-cert", certPath, "-tls-key", keyPath}
}

// TestMutualTLS runs a cluster with mutual TLS between members; a peer
// whose certificate comes from another CA can neither join nor get a
// message accepted, and the cluster keeps serving.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	good, rogue := newTestCA(t, "cluster"), newTestCA(t, "rogue")
	flags := good.issue(t, dir, "member") // one certificate for all members
	flags = append(flags, "-tls-any-member")
	c := newCluster(t, 3, flags...)
	l := c.leader()
	before, err := l.status()
	if err != nil {
		t.Fatal(err)
	}

	rogueFlags := rogue.issue(t, dir, "rogue")
	t.Run("join is refused", func(t *testing.T) {
		p := c.joinProc(9, l, "https://", rogueFlags...) // later flags win
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("rogue member still running after 30s")
		}
		if p.exitErr() == nil || !strings.Contains(p.out.String(), "certificate") {
			t.Fatalf("rogue join: exit %v, output:\n%s", p.exitErr(), p.out)
		}
		c.forget(9)
	})
	t.Run("messages are refused", func(t *testing.T) {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "rogue.pem"), filepath.Join(dir, "rogue.key"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(good.pem) // the rogue trusts the cluster, but the cluster does not trust it
		for _, id := range c.memberIDs() {
			p := c.procOf(id)
			for _, addr := range []string{p.raft, p.http} {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr,
					&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool})
				if err != nil {
					continue // refused during the handshake
				}
				// TLS 1.3: the server checks the client certificate after
				// the client's handshake ends; the first read fails.
				conn.Write([]byte("forged raft traffic"))
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, rerr := conn.Read(make([]byte, 1))
				conn.Close()
				if rerr == nil || !strings.Contains(rerr.Error(), "certificate") {
					t.Errorf("%s: rogue connection not refused: %v", addr, rerr)
				}
			}
			// Plain TCP gets nowhere either.
			if reply, closed := rawExchange(t, p.raft, []byte("plain text")); !closed {
				t.Errorf("plain TCP to %s left open (%q)", p.raft, reply)
			}
		}
	})

	// Still 3 voters, same leader and term, and serving.
	after, err := c.procOf(l.id).status()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Members) != 3 || after.Leader != before.Leader || after.Term != before.Term {
		t.Fatalf("cluster changed: before %+v after %+v", before, after)
	}
	cl := l.client()
	defer cl.Close()
	ctx := t.Context()
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cl2 := c.procOf(c.memberIDs()[0]).client()
	defer cl2.Close()
	if v, err := cl2.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after rogue attempts: %q %v", v, err)
	}
}
