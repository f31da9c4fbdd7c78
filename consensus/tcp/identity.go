package tcp

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// memberURIPrefix is how a certificate names the member it belongs to.
const memberURIPrefix = "distkit://member/"

// MemberURI returns the URI "distkit://member/<id>" to put in the URIs
// (subject alternative names) of the certificate issued to member id, so
// MemberIDFromCertificate can tell which member a peer is.
func MemberURI(id uint64) *url.URL {
	u, _ := url.Parse(memberURIPrefix + strconv.FormatUint(id, 10))
	return u
}

// MemberIDFromCertificate returns the member id named by the one
// "distkit://member/<id>" URI in cert (see MemberURI). It is the default
// Config.PeerIdentity with TLS. A certificate with none, several, or a
// malformed one is an error.
func MemberIDFromCertificate(cert *x509.Certificate) (uint64, error) {
	var id uint64
	found := 0
	for _, u := range cert.URIs {
		s := u.String()
		rest, ok := strings.CutPrefix(s, memberURIPrefix)
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(rest, 10, 64)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("tcp: certificate names member %q: %w", rest, ErrRefused)
		}
		id = v
		found++
	}
	if found != 1 {
		return 0, fmt.Errorf("tcp: certificate names %d members, want 1: %w", found, ErrRefused)
	}
	return id, nil
}
