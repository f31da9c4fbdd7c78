package consensus

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/distkit/distkit/clock"
)

// Defaults applied to zero fields of Config.
const (
	DefaultTickInterval        = 100 * time.Millisecond
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultSnapshotEntries     = 10_000
	DefaultSnapshotBytes       = 64 << 20
	DefaultTrailingEntries     = 5_000
	DefaultMaxEntryBytes       = 1 << 20
	DefaultMaxMsgBytes         = 1 << 20
	DefaultMaxInflightMsgs     = 256
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultMaxPendingProposals = 8192
	DefaultDedupEntries        = 100_000
	DefaultPromoteLagEntries   = 64
	DefaultMaxEventQueue       = 1024
	// DefaultMaxTermJump is the default Config.MaxTermJump. With PreVote
	// and CheckQuorum a group's term rises only through real elections,
	// each of which takes at least an election timeout (one second at the
	// defaults), so a jump of 2^20 means weeks of back-to-back elections
	// while this member was not listening.
	DefaultMaxTermJump = 1 << 20
	// MaxTerm is the largest term the node accepts in any message: terms
	// beyond it can only be forged or corrupt, and a term accepted near
	// the top of the range would overflow at the next election.
	MaxTerm               = 1 << 48
	DefaultMaxClockOffset = 500 * time.Millisecond
)

// ReadMode selects how ReadBarrier and ReadIndex establish a linearizable
// read point.
type ReadMode int

const (
	// ReadIndexSafe confirms leadership with a quorum round for every batch
	// of reads. Correct regardless of clocks. The default.
	ReadIndexSafe ReadMode = iota
	// ReadLease trusts the leader's lease instead of a quorum round: faster,
	// but correct only while clock drift between members stays well under
	// the election timeout. Requires CheckQuorum (the default).
	ReadLease
)

// StorageMode selects how the raft loop makes the log durable.
type StorageMode int

const (
	// StoragePipelined (the default) persists the log on a dedicated
	// goroutine: while one batch of entries is being written and synced,
	// the raft loop keeps accepting proposals, acknowledgements and reads
	// and builds the next batch, which the next sync covers (pipelined
	// group commit). Acknowledgements, votes and the local apply of an entry
	// still wait for the sync that covers it.
	StoragePipelined StorageMode = iota
	// StorageInline writes and syncs each batch on the raft loop itself:
	// nothing else happens on the loop while the disk syncs. Simpler to
	// reason about; slower under load.
	StorageInline
)

// String returns "pipelined" or "inline".
func (m StorageMode) String() string {
	switch m {
	case StoragePipelined:
		return "pipelined"
	case StorageInline:
		return "inline"
	}
	return fmt.Sprintf("StorageMode(%d)", int(m))
}

// Member names a member of the group.
type Member struct {
	ID      uint64 // non-zero and never reused after removal
	Addr    string // transport address; may be empty for in-memory transports
	Learner bool   // a non-voting member that receives the log
}

// Config configures a Node. Zero fields take the documented defaults; Start
// copies the Config and never modifies the caller's value.
type Config struct {
	// ID of this member: non-zero, unique for all time. Required.
	ID uint64
	// GroupID names the group. Every member of a group uses the same value;
	// it is recorded with the member's state on first start (Start refuses
	// state of another group with ErrWrongGroup) and carried in every
	// message (messages of another group are refused). Zero is a valid id.
	GroupID uint64

	// Dir holds the durable log (Dir/wal) and snapshot files (Dir/snap).
	// Required unless Memory is set.
	Dir string
	// Memory, when non-nil, keeps the log and snapshots in memory instead of
	// Dir. State survives a Close and a new Start over the same MemoryStore,
	// which is how tests simulate a restart. Not durable across processes.
	Memory *MemoryStore

	// Bootstrap lists the initial members of a brand-new group. Every
	// initial member passes the same list on its first start; it is ignored
	// once the member has state. A member started with no state and no
	// Bootstrap waits to be added by the group (see AddVoter/AddLearner).
	Bootstrap []Member

	// Transport carries messages between members. Required.
	Transport Transport

	// TickInterval is the length of one raft tick. Default DefaultTickInterval.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks; it must exceed
	// HeartbeatTicks (10x is recommended). Default DefaultElectionTicks.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default DefaultHeartbeatTicks.
	HeartbeatTicks int

	// DisablePreVote turns off the pre-vote phase (on by default), which
	// keeps a partitioned member from disrupting the group when it returns.
	DisablePreVote bool
	// DisableCheckQuorum turns off CheckQuorum (on by default): a leader
	// that has not heard from a quorum for an election timeout steps down.
	// Not allowed with ReadLease.
	DisableCheckQuorum bool
	// ReadMode selects ReadIndexSafe (default) or ReadLease.
	ReadMode ReadMode

	// SnapshotEntries triggers a snapshot after this many applied entries.
	// Default DefaultSnapshotEntries.
	SnapshotEntries uint64
	// SnapshotBytes triggers a snapshot after this many bytes of applied
	// commands. Default DefaultSnapshotBytes.
	SnapshotBytes uint64
	// TrailingEntries is how many entries stay in the log behind a snapshot
	// so slightly lagging followers catch up without one. Default
	// DefaultTrailingEntries.
	TrailingEntries uint64

	// MaxEntryBytes bounds one command; larger proposals fail with
	// ErrTooLarge. Default DefaultMaxEntryBytes.
	MaxEntryBytes int
	// MaxMsgBytes bounds the entries carried by one append message.
	// Default DefaultMaxMsgBytes.
	MaxMsgBytes uint64
	// MaxInflightMsgs bounds append messages in flight per follower.
	// Default DefaultMaxInflightMsgs.
	MaxInflightMsgs int
	// MaxUncommittedBytes bounds the leader's uncommitted log; beyond it
	// proposals fail with ErrDropped. Default DefaultMaxUncommittedBytes.
	MaxUncommittedBytes uint64
	// MaxPendingProposals bounds proposals waiting on this member; beyond
	// it Propose fails fast with ErrBusy. Default DefaultMaxPendingProposals.
	MaxPendingProposals int

	// DedupEntries is how many request ids (WithRequestID) the replicated
	// dedup window remembers, oldest evicted first. Default DefaultDedupEntries.
	DedupEntries int
	// MaxTermJump bounds how far above this member's current term an
	// inbound message's term may be; a larger jump is refused before it
	// reaches raft (and is never persisted). A member with no state yet
	// (term 0) accepts any term up to MaxTerm. A member that was away for
	// longer than MaxTermJump elections refuses the group until this is
	// raised. Default DefaultMaxTermJump.
	MaxTermJump uint64
	// PromoteLagEntries: PromoteLearner waits until the learner is within
	// this many entries of the leader's log. Default DefaultPromoteLagEntries.
	PromoteLagEntries uint64

	// StorageMode selects how log writes are made durable: StoragePipelined
	// (the default) or StorageInline.
	StorageMode StorageMode

	// UnsafeNoSync skips every fsync of the log and snapshots in Dir. A
	// crash can then lose acknowledged writes or corrupt state: tests only.
	UnsafeNoSync bool

	// Timestamps makes the leader stamp every command it appends with a
	// reading of its hybrid logical clock, handed to Apply as
	// Command.Timestamp: replicated time that every member agrees on,
	// strictly increasing in log order across leader changes, and never
	// more than MaxClockOffset ahead of the clocks of the members that
	// accepted it. See "Time" in the package documentation for the policy
	// towards members whose clocks are off.
	Timestamps bool
	// MaxClockOffset is the largest difference between members' physical
	// clocks the group tolerates when Timestamps is on. Default
	// DefaultMaxClockOffset.
	MaxClockOffset time.Duration

	// Clock is the time source for ticks and timeouts, and the physical
	// clock behind Timestamps. Default clock.Real.
	Clock clock.Clock
	// Logger receives structured logs, including raft's own. Nil is silent.
	Logger *slog.Logger
	// OnEvent, if set, receives notifications (leader changes, applied
	// indexes, membership changes, snapshots) on a dedicated goroutine, in
	// order, never under a lock. If the callback falls behind by more than
	// DefaultMaxEventQueue events, further events are dropped and counted
	// in Stats.EventsDropped.
	OnEvent func(Event)

	// wrapLog, set only by tests, wraps the log store (fault injection).
	wrapLog func(logStore) logStore
}

// withDefaults returns a validated copy of c with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("consensus: "+format+": %w", append(args, ErrInvalidConfig)...)
	}
	if c.ID == 0 || c.ID >= math.MaxUint64-1 {
		return bad("ID %d is reserved", c.ID)
	}
	if c.Dir == "" && c.Memory == nil {
		return bad("one of Dir or Memory is required")
	}
	if c.Transport == nil {
		return bad("Transport is required")
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.TrailingEntries == 0 {
		c.TrailingEntries = DefaultTrailingEntries
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if c.MaxMsgBytes == 0 {
		c.MaxMsgBytes = DefaultMaxMsgBytes
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxUncommittedBytes == 0 {
		c.MaxUncommittedBytes = DefaultMaxUncommittedBytes
	}
	if c.MaxPendingProposals == 0 {
		c.MaxPendingProposals = DefaultMaxPendingProposals
	}
	if c.DedupEntries == 0 {
		c.DedupEntries = DefaultDedupEntries
	}
	if c.PromoteLagEntries == 0 {
		c.PromoteLagEntries = DefaultPromoteLagEntries
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.MaxTermJump == 0 {
		c.MaxTermJump = DefaultMaxTermJump
	}
	if c.MaxClockOffset == 0 {
		c.MaxClockOffset = DefaultMaxClockOffset
	}
	switch {
	case c.TickInterval < 0:
		return bad("TickInterval %v must be positive", c.TickInterval)
	case c.HeartbeatTicks < 0:
		return bad("HeartbeatTicks %d must be positive", c.HeartbeatTicks)
	case c.ElectionTicks <= c.HeartbeatTicks:
		return bad("ElectionTicks (%d) must exceed HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	case c.MaxEntryBytes < 0:
		return bad("MaxEntryBytes %d must be positive", c.MaxEntryBytes)
	case c.MaxInflightMsgs < 0:
		return bad("MaxInflightMsgs %d must be positive", c.MaxInflightMsgs)
	case c.MaxPendingProposals < 0:
		return bad("MaxPendingProposals %d must be positive", c.MaxPendingProposals)
	case c.DedupEntries < 0:
		return bad("DedupEntries %d must be positive", c.DedupEntries)
	case c.TrailingEntries > c.SnapshotEntries*1000:
		return bad("TrailingEntries %d is unreasonably large", c.TrailingEntries)
	case c.ReadMode != ReadIndexSafe && c.ReadMode != ReadLease:
		return bad("unknown ReadMode %d", c.ReadMode)
	case c.StorageMode != StoragePipelined && c.StorageMode != StorageInline:
		return bad("unknown StorageMode %d", c.StorageMode)
	case c.MaxClockOffset < 0:
		return bad("MaxClockOffset %v must be positive", c.MaxClockOffset)
	case c.ReadMode == ReadLease && c.DisableCheckQuorum:
		return bad("ReadLease requires CheckQuorum")
	case c.MaxTermJump > MaxTerm:
		return bad("MaxTermJump %d exceeds MaxTerm", c.MaxTermJump)
	}
	seen := make(map[uint64]bool, len(c.Bootstrap))
	voters := 0
	for _, m := range c.Bootstrap {
		if m.ID == 0 || m.ID >= math.MaxUint64-1 {
			return bad("Bootstrap member ID %d is reserved", m.ID)
		}
		if seen[m.ID] {
			return bad("Bootstrap lists member %d twice", m.ID)
		}
		seen[m.ID] = true
		if !m.Learner {
			voters++
		}
	}
	if len(c.Bootstrap) > 0 && !seen[c.ID] {
		return bad("Bootstrap must list this member (%d)", c.ID)
	}
	if len(c.Bootstrap) > 0 && voters == 0 {
		return bad("Bootstrap needs at least one voter")
	}
	c.Bootstrap = append([]Member(nil), c.Bootstrap...)
	return c, nil
}
