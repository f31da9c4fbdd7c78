package tcp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// LoadTLSConfig builds a Config.TLS from PEM files: caFile holds the
// cluster's CA certificate(s), certFile this member's certificate (chain)
// and keyFile its private key. The certificate and key are read again when
// either file's modification time changes, so rotating short-lived
// certificates on disk takes effect for new connections without a restart;
// if the new pair does not load (say, only one file was replaced so far),
// the previous one stays in use.
func LoadTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tcp: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tcp: no PEM certificate in %s: %w", caFile, ErrInvalidConfig)
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:   pool,
		ClientCAs: pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.get()
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.get()
		},
		MinVersion: tls.VersionTLS12,
	}, nil
}

// keyPair caches a certificate and key loaded from files.
type keyPair struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certTime time.Time
	keyTime  time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	ci, err1 := os.Stat(k.certFile)
	ki, err2 := os.Stat(k.keyFile)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err1 == nil && err2 == nil && k.cert != nil && ci.ModTime().Equal(k.certTime) && ki.ModTime().Equal(k.keyTime) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // mid-rotation: keep serving the old pair
		}
		return nil, fmt.Errorf("tcp: load certificate: %w", err)
	}
	k.cert = &cert
	if err1 == nil && err2 == nil {
		k.certTime, k.keyTime = ci.ModTime(), ki.ModTime()
	}
	return k.cert, nil
}
