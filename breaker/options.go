package breaker

import (
	"fmt"
	"math"
	"time"
)

// Defaults used when the corresponding option is not given.
const (
	// DefaultConsecutiveFailures is how many failures in a row open the
	// breaker when neither [WithConsecutiveFailures] nor [WithFailureRate]
	// is given.
	DefaultConsecutiveFailures = 5
	// DefaultOpenTimeout is how long the breaker stays open before letting
	// trial calls through.
	DefaultOpenTimeout = 30 * time.Second
	// DefaultHalfOpenRequests is how many trial calls run half-open; that
	// many successes in a row close the breaker.
	DefaultHalfOpenRequests = 1
	// DefaultWindow is the length of the sliding window over which
	// [WithFailureRate] counts requests, and DefaultWindowBuckets the number
	// of buckets it slides by.
	DefaultWindow        = time.Minute
	DefaultWindowBuckets = 10
	// DefaultMaxKeys bounds the number of breakers a [Group] keeps.
	DefaultMaxKeys = 1024
	// DefaultIdleTTL is how long a [Group]'s breaker may go unused before it
	// is evicted (unless it is open).
	DefaultIdleTTL = 10 * time.Minute
)

// Option configures a [Breaker], a [Group] (whose breakers all share the
// options) or a [Transport]. A later option overrides an earlier one for the
// same knob.
type Option func(*config)

type config struct {
	consecutive   uint32 // 0: not set
	rate          float64
	minRequests   uint32
	rateSet       bool
	openTimeout   time.Duration
	halfOpen      uint32
	window        time.Duration
	buckets       int
	exclude       func(error) bool
	isFailure     func(error) bool
	onStateChange func(StateChange)
	slowCall      time.Duration
	tripMax       time.Duration
	maxKeys       int
	idleTTL       time.Duration
	err           error
}

func newConfig(opts []Option) config {
	c := config{
		openTimeout: DefaultOpenTimeout,
		halfOpen:    DefaultHalfOpenRequests,
		window:      DefaultWindow,
		buckets:     DefaultWindowBuckets,
		maxKeys:     DefaultMaxKeys,
		idleTTL:     DefaultIdleTTL,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.consecutive == 0 && !c.rateSet {
		c.consecutive = DefaultConsecutiveFailures
	}
	return c
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// WithConsecutiveFailures opens the breaker on the n-th failure in a row
// (a success resets the run). n must be at least 1. Default
// [DefaultConsecutiveFailures] when no failure-rate rule is set; with both
// options, either rule opens the breaker.
func WithConsecutiveFailures(n uint32) Option {
	return func(c *config) {
		if n == 0 {
			c.invalid("consecutive failures 0")
			return
		}
		c.consecutive = n
	}
}

// WithFailureRate opens the breaker once at least minRequests calls have
// completed in the sliding window (see [WithWindow]) and the share of them
// that failed is at least rate. rate must be in (0, 1] and minRequests at
// least 1. Excluded calls count for neither.
func WithFailureRate(rate float64, minRequests uint32) Option {
	return func(c *config) {
		if !(rate > 0 && rate <= 1) || math.IsNaN(rate) {
			c.invalid("failure rate %v outside (0, 1]", rate)
			return
		}
		if minRequests == 0 {
			c.invalid("failure rate minimum requests 0")
			return
		}
		c.rate, c.minRequests, c.rateSet = rate, minRequests, true
	}
}

// WithWindow sets the sliding window over which the breaker counts calls
// while closed: d long, sliding in d/buckets steps. d must be positive and
// buckets between 1 and 1000. Default [DefaultWindow] in
// [DefaultWindowBuckets] buckets. Consecutive failures are counted across the
// window; the failure rate within it.
func WithWindow(d time.Duration, buckets int) Option {
	return func(c *config) {
		if d <= 0 || buckets < 1 || buckets > 1000 || d/time.Duration(buckets) <= 0 {
			c.invalid("window %v in %d buckets", d, buckets)
			return
		}
		c.window, c.buckets = d, buckets
	}
}

// WithOpenTimeout sets how long the breaker stays open before it lets trial
// calls through (half-open). d must be positive. Default
// [DefaultOpenTimeout].
func WithOpenTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("open timeout %v", d)
			return
		}
		c.openTimeout = d
	}
}

// WithHalfOpenRequests sets how many trial calls may run while half-open;
// that many successes in a row close the breaker, and any failure opens it
// again. Further calls while the trials run get [ErrTooManyRequests]. n must
// be at least 1. Default [DefaultHalfOpenRequests].
func WithHalfOpenRequests(n uint32) Option {
	return func(c *config) {
		if n == 0 {
			c.invalid("half-open requests 0")
			return
		}
		c.halfOpen = n
	}
}

// WithExclude marks errors that are not the dependency's fault (a caller's
// bad input, a not-found): when f returns true the call counts as neither
// success nor failure. Calls that end after the caller's own context is done
// are always excluded.
func WithExclude(f func(error) bool) Option {
	return func(c *config) { c.exclude = f }
}

// WithIsFailure decides which (non-excluded) errors count as failures; an
// error for which f returns false counts as a success. By default every
// non-nil error is a failure.
func WithIsFailure(f func(error) bool) Option {
	return func(c *config) { c.isFailure = f }
}

// WithSlowCall counts a call that succeeds but takes longer than d as a
// failure for the breaker's rules; the caller still gets the value and a nil
// error. It catches a dependency that answers, but too slowly to be useful.
// d must be positive; by default the duration of a call does not matter.
func WithSlowCall(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("slow call threshold %v", d)
			return
		}
		c.slowCall = d
	}
}

// WithRetryAfterTrip makes a [Transport] honour a server's request to back
// off: a 429 or 503 response with a Retry-After header (seconds or
// HTTP-date) trips the host's breaker ([Breaker.Trip]) for that long,
// capped at limit, so every caller of the host waits, not only the one that
// got the response. limit must be positive. By default Retry-After is left
// to the caller (the retry package's transport honours it per request).
// Ignored by [New] and [NewGroup].
func WithRetryAfterTrip(limit time.Duration) Option {
	return func(c *config) {
		if limit <= 0 {
			c.invalid("retry-after trip cap %v", limit)
			return
		}
		c.tripMax = limit
	}
}

// WithOnStateChange sets a hook called after every state change, in the
// order of the changes, one call at a time per breaker, and never while a
// lock is held: the hook may call the breaker (State, Stats, even Execute).
// It runs on the goroutine whose call observed the change. A change from
// open to half-open is observed lazily, by the first call (Execute, State or
// Stats) after the open timeout.
func WithOnStateChange(f func(StateChange)) Option {
	return func(c *config) { c.onStateChange = f }
}

// WithMaxKeys bounds the number of breakers a [Group] (or [Transport])
// keeps; when full, the least recently used breaker that is not open is
// evicted (an approximate LRU over a sample of 16). n must be at least 1. Default [DefaultMaxKeys]. Ignored by [New].
func WithMaxKeys(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid("max keys %d", n)
			return
		}
		c.maxKeys = n
	}
}

// WithIdleTTL sets how long a [Group]'s breaker may go unused before it is
// evicted; a breaker whose open period is still running is kept. d must be positive. Default
// [DefaultIdleTTL]. Ignored by [New].
func WithIdleTTL(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("idle TTL %v", d)
			return
		}
		c.idleTTL = d
	}
}
