package idempotency

import "github.com/google/uuid"

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
