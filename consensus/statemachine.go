package consensus

import (
	"io"

	"github.com/distkit/distkit/clock"
)

// StateMachine is the replicated state an application embeds in a Node.
//
// Concurrency: Apply, Snapshot and Restore are called from one goroutine,
// never concurrently with each other. The SnapshotWriter that Snapshot
// returns is written out on another goroutine, concurrently with later
// Apply calls, so it must capture a point-in-time view (a copy, a
// copy-on-write reference, a storage engine snapshot).
//
// Determinism: every member applies the same commands in the same order and
// must reach the same state and the same results. Apply must not depend on
// wall time, randomness, or anything outside the commands and the state.
// A state machine that needs time (expiry, leases, TTLs) runs the node with
// Config.Timestamps and reads Command.Timestamp, the same on every member.
type StateMachine interface {
	// Apply applies committed commands in log order. It is given batches of
	// one or more commands; it sets cmds[i].Result (returned to the
	// proposer's Propose) and may set cmds[i].Err for an application-level
	// error that is returned to the proposer but does not stop the node.
	// Commands already applied are never given again, except after a
	// Restore. A non-nil return value is fatal: the node stops and every
	// call returns an error wrapping ErrStopped.
	Apply(cmds []Command) error

	// Snapshot returns a point-in-time view of the state as of the last
	// applied command. It should be quick; the expensive part belongs in the
	// returned writer's WriteTo.
	Snapshot() (SnapshotWriter, error)

	// Restore replaces the whole state with the one read from r, a stream
	// produced earlier by a SnapshotWriter (possibly on another member).
	// The stream is checksummed by the node; Restore reads until EOF.
	Restore(r io.Reader) error
}

// Command is one committed command handed to StateMachine.Apply.
type Command struct {
	Index uint64 // log index; strictly increasing across Apply calls
	Term  uint64 // term in which the command was proposed
	Data  []byte // the proposer's bytes; do not modify or retain beyond Apply without copying
	// Timestamp is the hybrid logical clock reading the leader stamped on
	// the command when it appended it (Config.Timestamps); zero when the
	// command was not stamped. Stamped commands carry strictly increasing
	// timestamps in log order, across leader changes and restarts.
	Timestamp clock.Timestamp

	// Result is returned to the proposer (set by Apply).
	Result []byte
	// Err, if set by Apply, is returned to the proposer instead of Result.
	// It is an application error, not a node failure.
	Err error
}

// SnapshotWriter writes a point-in-time snapshot as a stream.
type SnapshotWriter interface {
	// WriteTo writes the snapshot. It runs concurrently with Apply.
	WriteTo(w io.Writer) (int64, error)
	// Release is called once after WriteTo, whether or not it succeeded.
	Release()
}
