package idempotency

import "errors"

// Errors returned by [Guard.Do], [Store] implementations and [Middleware].
// Test for them with [errors.Is]; they are usually wrapped with detail.
var (
	// ErrKeyReused reports a key used again with a different fingerprint
	// (another request body, path or method). The function is not run and
	// the record is left unchanged.
	ErrKeyReused = errors.New("idempotency: key reused with a different request")

	// ErrInProgress reports that a call with the same key is still running,
	// either in this process (with [WithFailFast]) or in another process
	// sharing the store (when not waiting, or after waiting too long). It is
	// safe to retry later with the same key.
	ErrInProgress = errors.New("idempotency: request with this key is in progress")

	// ErrLeaseLost is returned by a [Store] when the caller's claim is no
	// longer current: its lease expired, it was released, or a newer claim
	// replaced it. Guard.Do wraps it when a result could not be recorded.
	ErrLeaseLost = errors.New("idempotency: lease lost")

	// ErrNotFound is returned by [Store.Get] when no live record exists.
	ErrNotFound = errors.New("idempotency: record not found")

	// ErrInvalidKey reports an empty key passed to Guard.Do, or a malformed
	// Idempotency-Key header in [Middleware].
	ErrInvalidKey = errors.New("idempotency: invalid key")

	// ErrStoreFull is returned by [Store.Claim] of a new key when the store
	// has no room left for another record without dropping a live one,
	// which would break the at-most-once guarantee. Nothing ran; retry
	// later with the same key ([Middleware] answers 503 with Retry-After).
	ErrStoreFull = errors.New("idempotency: store full")
)

// RecordedError is the error replayed for a key whose first call failed
// with an error recorded as final (see [WithRecordErrors]). Only the text of
// the original error survives the store, so replays, possibly in other
// processes, see a RecordedError rather than the original value.
type RecordedError struct {
	// Message is the text of the original error.
	Message string
}

// Error returns the original error's text.
func (e *RecordedError) Error() string { return e.Message }
