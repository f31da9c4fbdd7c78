package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// State is the state of a [Breaker].
type State int8

// The states of a breaker. Closed lets calls through and counts their
// outcomes; open rejects calls without running them; half-open lets a few
// trial calls through to decide between the two.
const (
	StateClosed State = iota
	StateHalfOpen
	StateOpen
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	}
	return StateClosed
}

// Errors returned by this package. ErrOpen and ErrTooManyRequests, and so
// every rejected call's error, also match gobreaker's own errors
// (gobreaker.ErrOpenState, gobreaker.ErrTooManyRequests) with errors.Is, so
// code written against gobreaker keeps working.
var (
	// ErrOpen: the breaker is open and the call was not made. The error is
	// an [*OpenError], which says when a trial call will be allowed.
	ErrOpen error = &sentinel{"breaker: open", gobreaker.ErrOpenState}
	// ErrTooManyRequests: the breaker is half-open and its trial calls are
	// all in flight, so the call was not made.
	ErrTooManyRequests error = &sentinel{"breaker: too many requests", gobreaker.ErrTooManyRequests}
	// ErrInvalidOption: an option was given an invalid value. A breaker made
	// with one returns it (wrapped, with details) from every Execute and
	// never calls fn.
	ErrInvalidOption = errors.New("breaker: invalid option")
)

// sentinel is an error that also matches the gobreaker error it stands for.
type sentinel struct {
	msg  string
	also error
}

func (e *sentinel) Error() string        { return e.msg }
func (e *sentinel) Is(target error) bool { return target == e.also }

// OpenError is the error of a call rejected because the breaker is open.
// errors.Is matches [ErrOpen] and gobreaker.ErrOpenState.
type OpenError struct {
	// Name is the breaker's name.
	Name string
	// Remaining is the time left until the breaker lets a trial call
	// through: a caller that waits this long finds the breaker half-open.
	// It is rounded up to the millisecond, so it is never early.
	Remaining time.Duration
}

// Error names the breaker and the time left until a trial call.
func (e *OpenError) Error() string {
	return fmt.Sprintf("breaker: %q open, trial call in %v", e.Name, e.Remaining)
}

// Unwrap returns [ErrOpen] (which matches gobreaker.ErrOpenState).
func (e *OpenError) Unwrap() error { return ErrOpen }

// RetryAfter returns Remaining. A retry loop that honours a RetryAfter()
// method, such as the retry package's, therefore waits out the open period
// instead of calling again at once.
func (e *OpenError) RetryAfter() time.Duration { return e.Remaining }

// StateChange describes a transition, passed to the [WithOnStateChange] hook.
type StateChange struct {
	Name     string
	From, To State
	// At is when the transition was made.
	At time.Time
}

// Stats is a snapshot of a breaker.
type Stats struct {
	Name  string
	State State
	// Since is when the breaker entered State.
	Since time.Time
	// Counts of the current state: for a closed breaker, within the sliding
	// window; for a half-open one, since it became half-open. Requests
	// includes calls still in flight.
	Requests, Successes, Failures, Exclusions uint32
	ConsecutiveSuccesses, ConsecutiveFailures uint32
	// Rejected is the number of calls rejected (open or too many requests)
	// and Opened the number of times the breaker opened, since it was made.
	Rejected, Opened uint64
}

// Breaker is a circuit breaker guarding calls that return a T. It is safe
// for concurrent use and starts no goroutines. The zero value is a breaker
// with an empty name and the default options; [New] names and configures
// one.
type Breaker[T any] struct {
	name  string
	setup sync.Once // sets cfg, st and cb (for a zero value, on first use)
	cfg   config
	st    gobreaker.Settings
	cb    atomic.Pointer[gobreaker.CircuitBreaker[T]] // replaced by Reset

	rejected atomic.Uint64
	opened   atomic.Uint64
	npending atomic.Int32
	forced   atomic.Int64 // Unix nanoseconds until which Trip holds it open; 0 if not

	// mu guards the fields below. It is taken inside gobreaker's lock (from
	// the transition callback) and never held while calling gobreaker or
	// user code.
	mu          sync.Mutex
	state       State // as last reported by the current gobreaker instance
	since       time.Time
	openedAt    time.Time
	pending     []StateChange
	dispatching bool
}

// Sentinels returned to gobreaker by the function it runs, so that its
// classifiers (which see only the error) get the outcome this package
// decided outside gobreaker's lock. Execute hands the real error back.
var (
	errMarkExcluded = errors.New("breaker: excluded")
	errMarkSuccess  = errors.New("breaker: success")
	errMarkFailure  = errors.New("breaker: failure")
)

// New returns a closed breaker. With no options it opens after
// [DefaultConsecutiveFailures] failures in a row, stays open for
// [DefaultOpenTimeout], then lets [DefaultHalfOpenRequests] trial call
// through. New never fails: an invalid option makes every Execute return an
// error wrapping [ErrInvalidOption].
func New[T any](name string, opts ...Option) *Breaker[T] {
	return newBreaker[T](name, newConfig(opts))
}

func newBreaker[T any](name string, cfg config) *Breaker[T] {
	b := &Breaker[T]{name: name}
	b.setup.Do(func() { b.configure(cfg) })
	return b
}

// ready returns the current gobreaker instance, configuring a zero-value
// Breaker with the defaults on first use. Fields set by configure may be read
// once ready has returned.
func (b *Breaker[T]) ready() *gobreaker.CircuitBreaker[T] {
	if cb := b.cb.Load(); cb != nil {
		return cb
	}
	b.setup.Do(func() { b.configure(newConfig(nil)) })
	return b.cb.Load()
}

func (b *Breaker[T]) configure(cfg config) {
	b.cfg = cfg
	b.since = time.Now()
	b.st = gobreaker.Settings{
		Name:         b.name,
		MaxRequests:  cfg.halfOpen,
		Interval:     cfg.window,
		Timeout:      cfg.openTimeout,
		ReadyToTrip:  b.cfg.readyToTrip,
		IsSuccessful: func(err error) bool { return err == nil || err == errMarkSuccess },
		IsExcluded:   func(err error) bool { return err == errMarkExcluded },
	}
	if cfg.buckets > 1 {
		b.st.BucketPeriod = cfg.window / time.Duration(cfg.buckets)
	}
	b.cb.Store(b.newInstance())
}

// newInstance returns a fresh gobreaker whose transitions are reported only
// while it is the breaker's current instance.
func (b *Breaker[T]) newInstance() *gobreaker.CircuitBreaker[T] {
	st := b.st
	var inst *gobreaker.CircuitBreaker[T]
	st.OnStateChange = func(_ string, from, to gobreaker.State) {
		b.transition(inst, fromGobreaker(from), fromGobreaker(to))
	}
	inst = gobreaker.NewCircuitBreaker[T](st)
	return inst
}

func (c *config) readyToTrip(n gobreaker.Counts) bool {
	if c.consecutive > 0 && n.ConsecutiveFailures >= c.consecutive {
		return true
	}
	if c.rateSet {
		done := n.TotalSuccesses + n.TotalFailures
		return done >= c.minRequests && float64(n.TotalFailures) >= c.rate*float64(done)
	}
	return false
}

// transition is gobreaker's OnStateChange. It runs under gobreaker's lock,
// so it only records the change; dispatch calls the user's hook later.
// Changes of an instance that Reset replaced are dropped, and so are those
// made by calls that finish during a Trip (the instance is replaced when the
// Trip ends); the checks are made under b.mu, which Reset, Trip and the end
// of a Trip hold while they change things.
func (b *Breaker[T]) transition(inst *gobreaker.CircuitBreaker[T], from, to State) {
	now := time.Now()
	b.mu.Lock()
	if b.cb.Load() == inst && b.forced.Load() == 0 {
		if to == StateOpen {
			b.opened.Add(1)
		}
		b.record(from, to, now)
	}
	b.mu.Unlock()
}

// record notes a transition. b.mu must be held.
func (b *Breaker[T]) record(from, to State, now time.Time) {
	b.state = to
	b.since = now
	if to == StateOpen {
		b.openedAt = now
	}
	if b.cfg.onStateChange != nil {
		b.pending = append(b.pending, StateChange{Name: b.name, From: from, To: to, At: now})
		b.npending.Add(1)
	}
}

// Trip opens the breaker for d whatever its counts, for example when the
// dependency asks for a pause (an HTTP 429 or 503 with Retry-After) or for
// maintenance. Calls are rejected with an [*OpenError] until d has passed;
// then the breaker closes with fresh counts, as after [Breaker.Reset]. A
// later Trip replaces the period; Reset ends it. A non-positive d does
// nothing.
func (b *Breaker[T]) Trip(d time.Duration) {
	if d <= 0 {
		return
	}
	b.ready()
	now := time.Now()
	b.mu.Lock()
	b.forced.Store(now.Add(d).UnixNano())
	if b.state != StateOpen {
		b.opened.Add(1)
		b.record(b.state, StateOpen, now)
	}
	b.mu.Unlock()
	if b.npending.Load() != 0 {
		b.dispatch()
	}
}

// tripped reports whether a Trip holds the breaker open, and for how much
// longer. The first call to see a Trip expire closes the breaker.
func (b *Breaker[T]) tripped() (time.Duration, bool) {
	until := b.forced.Load()
	if until == 0 {
		return 0, false
	}
	now := time.Now()
	if left := time.Duration(until - now.UnixNano()); left > 0 {
		return left, true
	}
	inst := b.newInstance()
	b.mu.Lock()
	if b.forced.Load() == until { // not re-tripped or reset meanwhile
		b.forced.Store(0)
		b.cb.Store(inst)
		b.record(b.state, StateClosed, now)
	}
	b.mu.Unlock()
	return 0, false
}

// Reset closes the breaker and clears its counts, whatever its state. The
// outcomes of calls in flight when it is reset are not counted. If the
// breaker was not closed, the state hook sees a change to closed.
func (b *Breaker[T]) Reset() {
	b.ready()
	inst := b.newInstance()
	now := time.Now()
	b.mu.Lock()
	b.cb.Store(inst)
	b.forced.Store(0)
	if b.state != StateClosed {
		b.record(b.state, StateClosed, now)
	} else {
		b.since = now
	}
	b.mu.Unlock()
	if b.npending.Load() != 0 {
		b.dispatch()
	}
}

// dispatch delivers pending state changes to the hook, in order and one at
// a time per breaker, with no lock held. A call made from inside the hook
// that causes another change leaves it to the dispatch already running.
func (b *Breaker[T]) dispatch() {
	for {
		b.mu.Lock()
		if b.dispatching || len(b.pending) == 0 {
			b.mu.Unlock()
			return
		}
		evs := b.pending
		b.pending = nil
		b.npending.Store(0)
		b.dispatching = true
		b.mu.Unlock()
		b.deliver(evs)
	}
}

func (b *Breaker[T]) deliver(evs []StateChange) {
	defer func() {
		b.mu.Lock()
		b.dispatching = false
		b.mu.Unlock()
	}()
	for _, e := range evs {
		b.cfg.onStateChange(e)
	}
}

// Name returns the breaker's name.
func (b *Breaker[T]) Name() string { return b.name }

// Execute calls fn(ctx) if the breaker allows it and records the outcome.
//
// An open breaker returns an [*OpenError] (errors.Is [ErrOpen]) without
// calling fn; a half-open one whose trial calls are all in flight returns an
// error matching [ErrTooManyRequests]. Otherwise Execute returns what fn
// returned. A call whose ctx is already done is not made and returns
// ctx.Err(). An error counts as a failure unless the caller's ctx was done
// when fn returned (the caller gave up: not the dependency's fault), or
// [WithExclude] excludes it, or [WithIsFailure] says it is not a failure. A
// success slower than [WithSlowCall] counts as a failure (and is still
// returned as a success). A panic in fn counts as a failure and is
// re-raised.
func (b *Breaker[T]) Execute(ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	b.ready()
	if b.cfg.err != nil {
		var zero T
		return zero, b.cfg.err
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	if left, ok := b.tripped(); ok {
		b.rejected.Add(1)
		var zero T
		err := &OpenError{Name: b.name, Remaining: ceilMillis(left)}
		if b.npending.Load() != 0 {
			b.dispatch()
		}
		return zero, err
	}
	var real error
	v, err := b.cb.Load().Execute(func() (T, error) {
		var start time.Time
		if b.cfg.slowCall > 0 {
			start = time.Now()
		}
		v, err := fn(ctx)
		if err == nil {
			if b.cfg.slowCall > 0 && time.Since(start) > b.cfg.slowCall {
				return v, errMarkFailure // reported to the caller as the success it was
			}
			return v, nil
		}
		real = err
		return v, b.classify(ctx, err)
	})
	if err != nil {
		switch err {
		case errMarkExcluded, errMarkSuccess, errMarkFailure:
			err = real
		case gobreaker.ErrOpenState:
			b.rejected.Add(1)
			err = b.openError()
		case gobreaker.ErrTooManyRequests:
			b.rejected.Add(1)
			err = ErrTooManyRequests
		}
	}
	if b.npending.Load() != 0 {
		b.dispatch()
	}
	return v, err
}

func (b *Breaker[T]) classify(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return errMarkExcluded
	case b.cfg.exclude != nil && b.cfg.exclude(err):
		return errMarkExcluded
	case b.cfg.isFailure != nil && !b.cfg.isFailure(err):
		return errMarkSuccess
	}
	return errMarkFailure
}

func (b *Breaker[T]) openError() error {
	b.mu.Lock()
	openedAt := b.openedAt
	b.mu.Unlock()
	// gobreaker turns half-open strictly after openedAt+timeout (its own
	// opening time is no later than ours), so a caller that waits this long
	// finds it half-open. Rounded up to the millisecond: readable, and never
	// early.
	left := max(b.cfg.openTimeout-time.Since(openedAt), 0) + 1
	return &OpenError{Name: b.name, Remaining: ceilMillis(left)}
}

func ceilMillis(d time.Duration) time.Duration {
	if r := d % time.Millisecond; r != 0 {
		d += time.Millisecond - r
	}
	return d
}

// State returns the breaker's state. An open breaker whose timeout has
// passed becomes half-open here.
func (b *Breaker[T]) State() State {
	b.ready()
	s := StateOpen
	if _, ok := b.tripped(); !ok {
		s = fromGobreaker(b.cb.Load().State())
	}
	if b.npending.Load() != 0 {
		b.dispatch()
	}
	return s
}

// Stats returns a snapshot of the breaker.
func (b *Breaker[T]) Stats() Stats {
	state := b.State()
	c := b.cb.Load().Counts()
	b.mu.Lock()
	since := b.since
	b.mu.Unlock()
	return Stats{
		Name:                 b.name,
		State:                state,
		Since:                since,
		Requests:             c.Requests,
		Successes:            c.TotalSuccesses,
		Failures:             c.TotalFailures,
		Exclusions:           c.TotalExclusions,
		ConsecutiveSuccesses: c.ConsecutiveSuccesses,
		ConsecutiveFailures:  c.ConsecutiveFailures,
		Rejected:             b.rejected.Load(),
		Opened:               b.opened.Load(),
	}
}
