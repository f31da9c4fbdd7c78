package quorum

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Test for them with [errors.Is]; they are usually wrapped
// with detail.
var (
	// ErrNoQuorum reports that fewer replicas succeeded than a call needed.
	// The concrete error is an [*Error] listing each replica's failure.
	ErrNoQuorum = errors.New("quorum: not enough successful replicas")
	// ErrNeed reports a need (or consistency level) outside 1..len(replicas).
	ErrNeed = errors.New("quorum: need out of range")
	// ErrInvalidConfig reports a Config or option value that cannot work.
	ErrInvalidConfig = errors.New("quorum: invalid configuration")
	// ErrTimeout is the Cause in an [*Error] when a request's
	// Config.Timeout passed before it reached its level.
	ErrTimeout = errors.New("quorum: request timed out")
	// ErrClosed is returned by a Coordinator after Close.
	ErrClosed = errors.New("quorum: coordinator closed")
	// ErrNoNodes reports an empty ring.
	ErrNoNodes = errors.New("quorum: ring has no nodes")
	// ErrMalformed reports bytes that do not decode to a valid value.
	ErrMalformed = errors.New("quorum: malformed encoding")
)

// ReplicaError is the failure of one replica in a quorum call.
type ReplicaError struct {
	Index int    // position of the replica in the slice given to the call
	Node  string // node name, when the caller knows it (the Coordinator does)
	Err   error
}

// Error is the concrete error of a call that could not reach its quorum.
// errors.Is(err, ErrNoQuorum) holds for it, as does errors.Is against each
// replica's error and against the caller's context error, if that ended the
// call.
type Error struct {
	Need      int            // successes the call needed
	Succeeded int            // successes seen before the call gave up
	Failed    []ReplicaError // every replica that failed before the call returned, in completion order
	Cause     error          // the caller's context error, if that ended the call; else nil
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "quorum: not enough successful replicas: %d of %d needed", e.Succeeded, e.Need)
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	for i, f := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if f.Node != "" {
			fmt.Fprintf(&b, "%s: %v", f.Node, f.Err)
		} else {
			fmt.Fprintf(&b, "replica %d: %v", f.Index, f.Err)
		}
	}
	return b.String()
}

// Unwrap returns ErrNoQuorum, the context error (if any) and each replica's
// error, so errors.Is and errors.As see all of them.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2+len(e.Failed))
	errs = append(errs, ErrNoQuorum)
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	for _, f := range e.Failed {
		errs = append(errs, f.Err)
	}
	return errs
}
