package retry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/clock"
)

// Defaults used when the corresponding option is not given. They are
// deliberately conservative: every call is bounded both in attempts and in
// elapsed time, and waits are jittered so that many clients failing together
// do not retry in lockstep.
const (
	// DefaultMaxAttempts is the total number of attempts, the first one
	// included (so at most three retries).
	DefaultMaxAttempts = 4
	// DefaultMaxElapsed bounds the time spent retrying, from the first
	// failure until the last retry begins. No wait is started that would end
	// past it.
	DefaultMaxElapsed = time.Minute
	// DefaultBaseDelay caps the first wait of the default policy (full
	// jitter: the wait before retry n is uniform in [0, min(max, base·2ⁿ)]),
	// and is the Base of the jitter policies whose Base is zero.
	DefaultBaseDelay = 100 * time.Millisecond
	// DefaultMaxDelay caps every backoff step of the default policy and of
	// the jitter policies whose Max is zero.
	DefaultMaxDelay = 10 * time.Second
	// DefaultMaxRetryAfter caps a server-requested delay (see [RetryAfter]).
	// A longer request is shortened to this value. It exceeds the breaker
	// package's default open period, so a retry around a default breaker
	// waits out the whole period in one step.
	DefaultMaxRetryAfter = time.Minute
)

// Option configures a call to [Do] or [DoValue], a [Transport] or a
// [Budget]. Options are applied in order; a later option overrides an
// earlier one for the same knob.
type Option func(*settings)

// settings is the resolved configuration of one call. It is never mutated
// once resolved, so a *settings may be shared between goroutines.
type settings struct {
	maxAttempts    int
	maxElapsed     time.Duration
	maxRetryAfter  time.Duration
	attemptTimeout time.Duration
	backOff        backoff.BackOff // nil: FullJitter with the defaults
	retryIf        func(error) bool
	onRetry        func(context.Context, Attempt)
	budget         *Budget
	clock          clock.Clock // nil: clock.Real
	err            error       // first invalid option
}

// defaults is read-only: it is copied, never written.
var defaults = settings{
	maxAttempts:   DefaultMaxAttempts,
	maxElapsed:    DefaultMaxElapsed,
	maxRetryAfter: DefaultMaxRetryAfter,
}

// resolve applies opts to a copy of the defaults. With no options it
// returns the shared defaults without allocating. The result may be kept.
func resolve(opts []Option) *settings {
	if len(opts) == 0 {
		return &defaults
	}
	s := new(settings)
	s.apply(opts)
	return s
}

func (s *settings) apply(opts []Option) {
	*s = defaults
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
}

// pool recycles the settings of calls to Do and DoValue, which never keep
// them past the call, so that options cost no allocation.
var pool = sync.Pool{New: func() any { return new(settings) }}

// acquire resolves opts for the duration of one call; release gives the
// settings back.
func acquire(opts []Option) *settings {
	if len(opts) == 0 {
		return &defaults
	}
	s := pool.Get().(*settings)
	s.apply(opts)
	return s
}

func release(s *settings) {
	if s != &defaults {
		*s = settings{}
		pool.Put(s)
	}
}

func (s *settings) invalid(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// WithMaxAttempts sets the total number of attempts, the first one
// included: WithMaxAttempts(1) never retries. n must be at least 1.
// Default [DefaultMaxAttempts].
func WithMaxAttempts(n int) Option {
	return func(s *settings) {
		if n < 1 {
			s.invalid("max attempts %d < 1", n)
			return
		}
		s.maxAttempts = n
	}
}

// WithMaxElapsed bounds the time spent retrying, measured from the moment
// the first attempt failed: a wait that would end more than d after it is
// not started and the call fails with [ErrMaxElapsed]. (The first attempt
// itself is bounded by the context and [WithAttemptTimeout]; measuring from
// its failure keeps the success path free of clock reads.) Zero removes the
// bound (attempts stay bounded by [WithMaxAttempts]); d must not be
// negative. Default [DefaultMaxElapsed]. A context deadline is honoured the
// same way: a wait that would end past it is not started.
func WithMaxElapsed(d time.Duration) Option {
	return func(s *settings) {
		if d < 0 {
			s.invalid("max elapsed %v < 0", d)
			return
		}
		s.maxElapsed = d
	}
}

// WithBackOff sets the policy that spaces retries: any backoff/v4 policy,
// for example &backoff.ZeroBackOff{}, a [*FullJitter] or a
// *backoff.ExponentialBackOff. A NextBackOff of backoff.Stop ends the
// retries with [ErrExhausted]. Default: a [FullJitter] with
// [DefaultBaseDelay] and [DefaultMaxDelay].
//
// The jitter policies of this package and *backoff.ExponentialBackOff are
// copied at the start of every call, so one value may be shared by any
// number of concurrent calls. Any other stateful BackOff is Reset and used in
// place, so it must not be shared between concurrent calls.
func WithBackOff(b backoff.BackOff) Option {
	return func(s *settings) {
		if b == nil {
			s.invalid("nil BackOff")
			return
		}
		s.backOff = b
	}
}

// WithRetryIf sets the classifier: an error for which f returns false ends
// the call at once with [ErrPermanent] as the cause. By default every error
// is retryable except one marked with [Permanent]. f is not consulted for
// errors marked Permanent, nor once the caller's context is done.
func WithRetryIf(f func(error) bool) Option {
	return func(s *settings) { s.retryIf = f }
}

// WithAttemptTimeout gives each attempt its own deadline, d after the
// attempt starts (and never later than the caller's). An attempt that runs
// out of time is retryable while the caller's context is alive. d must not
// be negative; zero (the default) means attempts are bounded only by the
// caller's context. The attempt's context is cancelled as soon as the
// attempt returns, so nothing the operation returns may depend on it (a
// response body still to be read, say); the [Transport] handles that case
// itself by keeping the deadline until the body is closed.
func WithAttemptTimeout(d time.Duration) Option {
	return func(s *settings) {
		if d < 0 {
			s.invalid("attempt timeout %v < 0", d)
			return
		}
		s.attemptTimeout = d
	}
}

// WithOnRetry sets a hook called once before each wait for a retry, in
// attempt order, on the calling goroutine, never after the final attempt.
// It receives the caller's context.
func WithOnRetry(f func(ctx context.Context, a Attempt)) Option {
	return func(s *settings) { s.onRetry = f }
}

// WithBudget makes the call draw its retries from b, a [Budget] usually
// shared by every caller of one dependency. When b refuses a retry the call
// ends with [ErrBudgetExhausted]. The first attempt is never refused.
func WithBudget(b *Budget) Option {
	return func(s *settings) { s.budget = b }
}

// WithMaxRetryAfter caps a delay requested through [RetryAfter] (or any
// error with a RetryAfter() time.Duration method): a longer one is
// shortened to d. d must not be negative. Default [DefaultMaxRetryAfter].
func WithMaxRetryAfter(d time.Duration) Option {
	return func(s *settings) {
		if d < 0 {
			s.invalid("max retry-after %v < 0", d)
			return
		}
		s.maxRetryAfter = d
	}
}

// WithClock sets the time source for waits and the elapsed-time bound, for
// tests (see clocktest.Fake). Default [clock.Real]. Context deadlines,
// including per-attempt timeouts, stay in real time (or a testing/synctest
// bubble's time), so a test with a fake clock should not rely on them.
func WithClock(c clock.Clock) Option {
	return func(s *settings) { s.clock = c }
}
