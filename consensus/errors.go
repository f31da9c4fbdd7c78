package consensus

import (
	"errors"
	"fmt"
)

// Errors returned by Node. Test for them with errors.Is; most are wrapped
// with detail.
var (
	// ErrStopped is returned by every call on a node that has been closed or
	// has failed. A proposal in flight when the node stops also wraps
	// ErrUnknownOutcome; one never handed to raft also wraps ErrDropped.
	ErrStopped = errors.New("consensus: node stopped")
	// ErrDropped means the proposal will never be applied, so retrying it
	// is safe: it was never handed to raft, the leader refused it, or (a
	// membership change) another entry committed in its place.
	ErrDropped = errors.New("consensus: proposal dropped")
	// ErrUnknownOutcome means the proposal may or may not be applied (for
	// example the caller's context ended after it was forwarded to the
	// leader). Retry only with the same request id (WithRequestID).
	ErrUnknownOutcome = errors.New("consensus: proposal outcome unknown")
	// ErrNotLeader is returned where the caller asked for leader-only
	// behaviour and this member is not the leader. It is wrapped in a
	// *NotLeaderError that names the leader when one is known.
	ErrNotLeader = errors.New("consensus: not leader")
	// ErrNoLeader is returned when an operation needs a known leader and
	// none is known.
	ErrNoLeader = errors.New("consensus: no leader")
	// ErrTooLarge is returned for a command larger than Config.MaxEntryBytes.
	ErrTooLarge = errors.New("consensus: command too large")
	// ErrBusy is returned when too many proposals are waiting; back off and
	// retry. The proposal was not appended.
	ErrBusy = errors.New("consensus: busy")
	// ErrInvalidConfig is returned by Start for a Config it cannot run.
	ErrInvalidConfig = errors.New("consensus: invalid config")
	// ErrCorrupt is returned when stored state cannot be trusted.
	ErrCorrupt = errors.New("consensus: storage corrupt")
	// ErrRemoved is returned by operations on a member removed from the group.
	ErrRemoved = errors.New("consensus: member removed")
	// ErrUnknownMember is returned by membership calls naming an id that is
	// not a member (or, for additions, already is one).
	ErrUnknownMember = errors.New("consensus: unknown member")
	// ErrTransferFailed is returned by TransferLeadership when the target
	// cannot take over (not a voter, or this member is removed).
	ErrTransferFailed = errors.New("consensus: leadership transfer failed")
	// ErrStale is returned by StaleRead when this member's view is older
	// than the bound the caller allowed.
	ErrStale = errors.New("consensus: state too stale")
	// ErrDataLoss means this member lost state it had durably written and
	// may have acknowledged, so it must not vote or acknowledge again. Start
	// returns it when the log lost entries (a log file truncated, zeroed or
	// removed, or the log directory replaced by an older copy) and the
	// message says what is missing; a running member stops with it (see
	// Node.Err) when a leader shows that its log ends before entries it
	// acknowledged, or when the group knows its id under another
	// incarnation (its directory was wiped or replaced). It always comes
	// wrapped together with ErrCorrupt, of which it is a case. Restore the
	// directory from a copy that holds the missing entries, or remove the
	// member from the group and add it back under a new ID with an empty
	// directory; restarting cannot repair it.
	ErrDataLoss = errors.New("consensus: member lost acknowledged state")
	// ErrWrongGroup is returned by Start when the data directory (or
	// MemoryStore) holds the state of another group than Config.GroupID.
	ErrWrongGroup = errors.New("consensus: state belongs to another group")
	// ErrRefused is reported (Event.Err of EventMessageRefused) for an
	// inbound message the node refused without letting it reach raft: a
	// malformed or foreign payload, an impossible term, a sender that is
	// not a member, fields that would corrupt raft's state.
	ErrRefused = errors.New("consensus: message refused")
	// ErrMemberLostState is reported (wrapped with ErrRefused) for a message
	// from a member whose incarnation differs from the one the group
	// recorded: it restarted with empty or someone else's state. Remove it
	// and add it back under a new id.
	ErrMemberLostState = errors.New("consensus: member lost its state")
	// ErrClockOffset is returned (wrapped in ErrDropped) for proposals a
	// leader refused to stamp because its physical clock is behind the
	// group's replicated time by more than Config.MaxClockOffset, and is
	// reported in EventClockOffset.
	ErrClockOffset = errors.New("consensus: clock offset beyond MaxClockOffset")
)

// NotLeaderError carries the leader a caller should retry against. It
// unwraps to ErrNotLeader.
type NotLeaderError struct {
	Leader uint64 // 0 when no leader is known
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "consensus: not leader (leader unknown)"
	}
	return fmt.Sprintf("consensus: not leader (leader is %d)", e.Leader)
}

// Unwrap returns ErrNotLeader.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// CommandError is the error a proposer receives for a command whose state
// machine error was recorded under a request id and is being returned again
// for a retry. Only its message survives replication.
type CommandError struct {
	Msg string
}

func (e *CommandError) Error() string { return e.Msg }
