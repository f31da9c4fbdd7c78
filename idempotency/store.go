package idempotency

import (
	"context"
	"time"
)

// State is the state of a [Record].
type State uint8

// States of a record.
const (
	// StateInProgress: a caller holds a claim on the key and is running the
	// operation. The claim is valid until Record.LeaseExpires.
	StateInProgress State = iota + 1
	// StateCompleted: the operation finished and its [Result] is recorded
	// until Record.Expires.
	StateCompleted
)

// String returns "in-progress", "completed" or "unknown".
func (s State) String() string {
	switch s {
	case StateInProgress:
		return "in-progress"
	case StateCompleted:
		return "completed"
	}
	return "unknown"
}

// Result is the recorded outcome of an operation.
type Result struct {
	// Value is what the operation returned.
	Value []byte
	// Err, if non-empty, is the text of an error the operation returned and
	// the caller chose to record as final (see [WithRecordErrors]). Value is
	// nil then.
	Err string
}

// Record is what a [Store] keeps for one key.
type Record struct {
	// Key is the key the record is stored under.
	Key string
	// Fingerprint identifies the request that claimed the key. A later call
	// with the same key must present the same fingerprint.
	Fingerprint []byte
	// State is StateInProgress or StateCompleted.
	State State
	// Token identifies the claim that created the record (a fencing token).
	// Every successful Claim of a key yields a token never handed out before
	// for that key, so a late Complete by a holder whose claim was replaced
	// is recognised and refused.
	Token uint64
	// Result is the recorded outcome; set only when State is StateCompleted.
	Result Result
	// LeaseExpires is when an in-progress claim lapses unless renewed.
	LeaseExpires time.Time
	// Expires is when a completed record stops being replayed.
	Expires time.Time
}

// Store persists idempotency records. [MemoryStore] keeps them in process;
// implement Store over a shared database (SQL, Redis, DynamoDB, a replicated
// state machine) to deduplicate across processes. Check an implementation
// with [github.com/distkit/distkit/idempotency/storetest.Run].
//
// # Records and time
//
// A key has at most one live record. An in-progress record is live until
// its lease expires; a completed record is live until it expires (its TTL).
// A record that is no longer live does not exist for any method: Claim may
// take the key, Get reports [ErrNotFound], and Renew, Complete and Release
// report [ErrLeaseLost]. The store decides what "now" is (its own clock, or
// a database server's), and may delete dead records at any time.
//
// A store must never drop a live record to make room: a completed record
// dropped before its TTL lets a retry run the operation again. A store
// that has no room for a new record fails Claim of a new key with an error
// wrapping [ErrStoreFull] and changes nothing.
//
// # Tokens
//
// Every successful Claim returns a fencing token that the store never
// handed out before for that key, including after the key was released,
// expired or deleted. A store-wide counter, a per-key counter kept across
// deletions, or 64 random bits are all acceptable. Renew, Complete and
// Release act only when the presented token is that of the key's live
// in-progress record; otherwise they change nothing and return
// [ErrLeaseLost].
//
// # Concurrency
//
// All methods may be called concurrently from many goroutines and, for a
// shared store, many processes. Each method must be atomic with respect to
// the others on the same key: in particular, of several concurrent Claims
// of a free key exactly one succeeds. Methods may block on I/O and must
// honour ctx, returning an error wrapping ctx.Err() if it ends first.
//
// # Memory
//
// A store must not retain slices passed to it after the call returns (copy
// them). Slices in returned Records may be shared with the store and must
// not be modified by the caller.
type Store interface {
	// Claim atomically claims key for the request with the given
	// fingerprint. If the key has no live record, Claim creates an
	// in-progress record holding fingerprint, a new token and a lease of
	// the given duration, and returns it with claimed true. Otherwise it
	// returns the live record unchanged with claimed false; comparing
	// fingerprints is the caller's business.
	Claim(ctx context.Context, key string, fingerprint []byte, lease time.Duration) (rec Record, claimed bool, err error)

	// Renew extends the lease of the in-progress claim identified by key
	// and token to lease from now, or returns [ErrLeaseLost].
	Renew(ctx context.Context, key string, token uint64, lease time.Duration) error

	// Complete turns the in-progress claim identified by key and token into
	// a completed record holding res, live for ttl from now, or returns
	// [ErrLeaseLost] and changes nothing.
	Complete(ctx context.Context, key string, token uint64, res Result, ttl time.Duration) error

	// Release deletes the in-progress claim identified by key and token,
	// so the next Claim of key succeeds, or returns [ErrLeaseLost].
	Release(ctx context.Context, key string, token uint64) error

	// Get returns the live record for key, or [ErrNotFound].
	Get(ctx context.Context, key string) (Record, error)
}
