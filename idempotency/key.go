package idempotency

import (
	"strconv"

	"github.com/google/uuid"
)

// NewKey returns a new idempotency key: a version 7 UUID in its canonical
// 36-character text form. Keys are unique and ordered by creation time, so
// stores indexed by key keep recent keys together.
//
// A client makes one key per logical operation and sends that same key on
// every retry of it; a key made per attempt defeats deduplication.
func NewKey() string {
	// NewV7 fails only if the system's random source fails, which
	// crypto/rand reports by crashing the process rather than by an error.
	return uuid.Must(uuid.NewV7()).String()
}

// ScopedKey returns the store key for key sent by the client named scope
// (a tenant, account or authenticated user), so that equal keys of
// different clients are different records: one client can neither replay
// nor pre-claim another's key. Pass the result to [Guard.Do]. The scope is
// length-prefixed, so no two (scope, key) pairs with non-empty scopes
// meet; an empty scope gives key unchanged, so when some clients have a
// scope, give every client one.
func ScopedKey(scope, key string) string {
	if scope == "" {
		return key
	}
	return strconv.Itoa(len(scope)) + ":" + scope + "\n" + key
}
