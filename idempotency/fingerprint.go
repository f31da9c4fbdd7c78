package idempotency

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Fingerprint returns the SHA-256 digest of parts, each prefixed with its
// length so that ("ab", "c") and ("a", "bc") differ. It is stable across
// processes and releases, so fingerprints can live in a shared store.
func Fingerprint(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		writePart(h, p)
	}
	return h.Sum(make([]byte, 0, sha256.Size))
}

func writePart(h hash.Hash, p []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(p)))
	h.Write(n[:])
	h.Write(p)
}
