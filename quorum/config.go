package quorum

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/distkit/distkit/clock"
)

// Coordinator defaults.
const (
	// DefaultN is the default replication factor.
	DefaultN = 3
	// DefaultTimeout bounds every request, and the background work a request
	// leaves behind (write replication beyond W, read repair).
	DefaultTimeout = 2 * time.Second
	// DefaultMaxBackground bounds the background read-repair collectors
	// running at once; reads beyond it skip their repair.
	DefaultMaxBackground = 256
	// DefaultHintInterval is how often stored hints are offered to their
	// nodes, and how long a failed node is avoided before it is tried again.
	DefaultHintInterval = time.Second
	// DefaultMaxHints bounds the (node, key) hints held in memory; hints
	// beyond it are dropped and left to anti-entropy.
	DefaultMaxHints = 100_000
	// DefaultHedgeFloor is the smallest delay before a hedged read.
	DefaultHedgeFloor = time.Millisecond
	// DefaultHedgeWindow is the number of recent latencies kept per node.
	DefaultHedgeWindow = 128
)

// RepairMode says how a read repairs the stale replicas it saw.
type RepairMode int

const (
	// RepairAsync (the default) returns the read at once and keeps
	// collecting the replies of the replicas it asked, for at most the
	// request timeout, in a goroutine owned by the Coordinator; then it
	// writes the merged object to every replica that answered with less.
	RepairAsync RepairMode = iota
	// RepairSync writes the merged object to the stale replicas among those
	// that answered before the read returns, and waits for those writes.
	RepairSync
	// RepairOff never repairs on read; anti-entropy is left to converge
	// replicas.
	RepairOff
)

// HedgePolicy configures hedged (speculative) reads: a read first asks as
// many replicas as its level needs, and when they have not all answered
// after a delay, it asks one more, then another after the same delay again,
// until the preference list is used up.
//
// The delay is the Percentile of recent latencies of each node, taken as the
// median over the key's replicas, so one slow node does not inflate it, and
// clamped to [Floor, Max]. Latencies are tracked per node over the last
// Window successful calls; a node with fewer than 8 samples does not count,
// and with no data at all the delay is Floor.
type HedgePolicy struct {
	// Percentile in (0, 1), such as 0.95; zero disables hedging.
	Percentile float64
	// Floor is the smallest delay (default DefaultHedgeFloor).
	Floor time.Duration
	// Max is the largest delay; zero means no cap.
	Max time.Duration
	// Window is the number of samples kept per node (default
	// DefaultHedgeWindow).
	Window int
}

// Config configures a [Coordinator]. Ring and Replica are required; every
// other zero field means its documented default.
type Config[V any] struct {
	// Ring places keys on nodes. Required.
	Ring *Ring
	// Replica returns the replica of a node named on the ring. It is called
	// for every replica call, from many goroutines, so it must be cheap and
	// safe for concurrent use (typically a map lookup). An error counts as
	// that replica failing. Required.
	Replica func(node string) (Replica[V], error)
	// N is the replication factor: how many nodes of a key's preference list
	// hold it (default DefaultN). A ring with fewer nodes holds each key on
	// all of them.
	N int
	// Read and Write are the default consistency levels (default Quorum).
	Read, Write Level
	// Merge, if set, resolves concurrent siblings on read into one value,
	// for values that are CRDTs or otherwise mergeable. It must be
	// commutative, associative and idempotent. Nil keeps siblings and returns
	// them all.
	Merge func(a, b V) V
	// Timeout bounds each request and the background work it leaves
	// (default DefaultTimeout). Measured on Clock.
	Timeout time.Duration
	// Hedge configures hedged reads; the zero value disables them.
	Hedge HedgePolicy
	// Repair is the read-repair mode (default RepairAsync).
	Repair RepairMode
	// MaxBackground bounds concurrent background read repairs (default
	// DefaultMaxBackground).
	MaxBackground int
	// Strict disables the sloppy quorum: requests use only the first N nodes
	// of the preference list, healthy or not, and no hints are stored.
	Strict bool
	// Fallbacks is how many nodes past the first N may stand in for failed
	// ones (default N).
	Fallbacks int
	// HintInterval is the period of hinted-handoff delivery and the time a
	// failed node is avoided (default DefaultHintInterval).
	HintInterval time.Duration
	// MaxHints bounds stored hints (default DefaultMaxHints).
	MaxHints int
	// AntiEntropyInterval, if positive, runs a full anti-entropy pass
	// ([Coordinator.AntiEntropy]) in the background at this period. Zero runs
	// it only when called.
	AntiEntropyInterval time.Duration
	// Clock is the time source for timeouts, hedging and background loops
	// (default clock.Real).
	Clock clock.Clock
	// Logger receives debug and warning logs; nil is silent.
	Logger *slog.Logger
}

func (c Config[V]) withDefaults() (Config[V], error) {
	bad := func(format string, a ...any) (Config[V], error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.Ring == nil:
		return bad("Ring is nil")
	case c.Replica == nil:
		return bad("Replica is nil")
	case c.N < 0:
		return bad("N (%d) is negative", c.N)
	case c.Timeout < 0:
		return bad("Timeout (%v) is negative", c.Timeout)
	case c.Hedge.Percentile < 0 || c.Hedge.Percentile >= 1:
		return bad("Hedge.Percentile (%v) is outside [0, 1)", c.Hedge.Percentile)
	case c.Hedge.Floor < 0 || c.Hedge.Max < 0 || c.Hedge.Window < 0:
		return bad("negative Hedge field")
	case c.Hedge.Max > 0 && c.Hedge.Max < c.Hedge.Floor:
		return bad("Hedge.Max (%v) is below Hedge.Floor (%v)", c.Hedge.Max, c.Hedge.Floor)
	case c.Repair < RepairAsync || c.Repair > RepairOff:
		return bad("unknown Repair mode %d", c.Repair)
	case c.MaxBackground < 0 || c.Fallbacks < 0 || c.MaxHints < 0:
		return bad("negative MaxBackground, Fallbacks or MaxHints")
	case c.HintInterval < 0 || c.AntiEntropyInterval < 0:
		return bad("negative interval")
	}
	if c.N == 0 {
		c.N = DefaultN
	}
	for _, l := range []*Level{&c.Read, &c.Write} {
		if *l == Default {
			*l = Quorum
		}
		if _, err := l.Need(c.N); err != nil {
			return bad("level %v with N=%d: %v", *l, c.N, err)
		}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Hedge.Floor == 0 {
		c.Hedge.Floor = DefaultHedgeFloor
	}
	if c.Hedge.Window == 0 {
		c.Hedge.Window = DefaultHedgeWindow
	}
	if c.MaxBackground == 0 {
		c.MaxBackground = DefaultMaxBackground
	}
	if c.Fallbacks == 0 {
		c.Fallbacks = c.N
	}
	if c.HintInterval == 0 {
		c.HintInterval = DefaultHintInterval
	}
	if c.MaxHints == 0 {
		c.MaxHints = DefaultMaxHints
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Option adjusts one request.
type Option func(*reqOpts)

type reqOpts struct {
	level  Level
	repair RepairMode
	hedge  bool
	strict bool
}

// WithLevel sets the request's consistency level (R for a read, W for a
// write), overriding the Config's.
func WithLevel(l Level) Option { return func(o *reqOpts) { o.level = l } }

// WithRepair sets the request's read-repair mode.
func WithRepair(m RepairMode) Option { return func(o *reqOpts) { o.repair = m } }

// WithoutHedge disables hedging for one read.
func WithoutHedge() Option { return func(o *reqOpts) { o.hedge = false } }

// WithStrict uses only the first N nodes of the preference list for one
// request: no sloppy quorum, no hints.
func WithStrict() Option { return func(o *reqOpts) { o.strict = true } }
