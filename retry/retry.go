package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/clock"
)

// Errors returned by this package. The error returned by a failed [Do] is an
// [*Error] whose Cause is one of these (or the context's error) and whose
// Last is the operation's last error; errors.Is matches both.
var (
	// ErrExhausted: every allowed attempt failed, or the BackOff returned
	// backoff.Stop.
	ErrExhausted = errors.New("retry: attempts exhausted")
	// ErrMaxElapsed: the next wait would end past the elapsed-time bound or
	// the context's deadline, so it was not started.
	ErrMaxElapsed = errors.New("retry: max elapsed time exceeded")
	// ErrBudgetExhausted: the shared [Budget] refused the retry.
	ErrBudgetExhausted = errors.New("retry: retry budget exhausted")
	// ErrPermanent: the operation's error was marked with [Permanent] or the
	// [WithRetryIf] classifier rejected it.
	ErrPermanent = errors.New("retry: permanent error")
	// ErrInvalidOption: an option was given an invalid value. The operation
	// is not called.
	ErrInvalidOption = errors.New("retry: invalid option")
)

// Error is the error returned when a call ends without success. It keeps
// both why retrying stopped (Cause) and what the operation last returned
// (Last), and matches both with errors.Is and errors.As.
type Error struct {
	// Attempts is the number of times the operation was called.
	Attempts int
	// Last is the operation's last error, nil if it was never called.
	Last error
	// Cause says why retrying stopped: ErrExhausted, ErrMaxElapsed,
	// ErrBudgetExhausted, ErrPermanent, or the caller's context error.
	Cause error
}

// Error describes the cause, the number of attempts and the last error.
func (e *Error) Error() string {
	cause := "retry: failed"
	if e.Cause != nil {
		cause = e.Cause.Error()
	}
	if e.Last == nil {
		return cause
	}
	s := "s"
	if e.Attempts == 1 {
		s = ""
	}
	return fmt.Sprintf("%s after %d attempt%s: %v", cause, e.Attempts, s, e.Last)
}

// Unwrap returns Cause and Last (those that are set).
func (e *Error) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Cause, e.Last} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Attempt describes a failed attempt that is about to be retried; see
// [WithOnRetry].
type Attempt struct {
	// N is the number of the attempt that failed, starting at 1.
	N int
	// Err is the error it returned.
	Err error
	// Delay is the wait before attempt N+1.
	Delay time.Duration
}

// Permanent marks err so that [Do] stops after the attempt that returned it.
// The mark survives wrapping with %w, and errors.Is(result, err) holds. The
// mark is consumed by the Do that sees it: an outer Do around an inner one
// that stopped on a Permanent error keeps retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// RetryAfter returns err annotated with a server-requested delay: [Do]
// waits d (capped by [WithMaxRetryAfter] and never past the elapsed-time
// bound or deadline) before the next attempt instead of the backoff step,
// and restarts the backoff sequence after it. errors.Is(result, err) holds.
// Any error in the chain with a method RetryAfter() time.Duration is honoured
// the same way, which is how an open circuit breaker's error makes Do wait
// out the open period. RetryAfter(d, nil) is nil.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{d: d, err: err}
}

type retryAfterError struct {
	d   time.Duration
	err error
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.d }

// Do calls op until it succeeds, returns a [Permanent] error, the options'
// bounds are reached, or ctx is done. The first attempt runs at once; op
// receives ctx (or a per-attempt child of it, see [WithAttemptTimeout]).
//
// On success Do returns nil. Otherwise it returns an [*Error] for which
// errors.Is matches the last error op returned and the reason retrying
// stopped: [ErrExhausted], [ErrMaxElapsed], [ErrBudgetExhausted],
// [ErrPermanent], or ctx's error (context.Canceled, context.DeadlineExceeded
// and any cancellation cause). If ctx is done before the first attempt, op
// is not called. A panic in op propagates unchanged.
func Do(ctx context.Context, op func(context.Context) error, opts ...Option) error {
	s := acquire(opts)
	_, err := run(ctx, s, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, op(ctx)
	}, nil)
	release(s)
	return err
}

// DoValue is [Do] for an operation that returns a value. On success it
// returns op's value; otherwise the zero T (never a failed attempt's value)
// and the error Do would return.
func DoValue[T any](ctx context.Context, op func(context.Context) (T, error), opts ...Option) (T, error) {
	s := acquire(opts)
	v, err := run(ctx, s, op, nil)
	release(s)
	return v, err
}

// run is the retry loop. beforeWait, if not nil, is called (after the
// user's OnRetry hook) once a retry has been decided, before waiting.
func run[T any](ctx context.Context, s *settings, op func(context.Context) (T, error), beforeWait func()) (T, error) {
	var zero T
	if s.err != nil {
		return zero, s.err
	}
	if ctx.Err() != nil {
		return zero, &Error{Cause: ctxError(ctx)}
	}
	if s.budget != nil {
		s.budget.Deposit()
	}
	v, err := attempt(ctx, s, op)
	if err == nil {
		return v, nil
	}
	return retryLoop(ctx, s, op, beforeWait, err)
}

// retryLoop takes over after the first attempt failed with err. The
// elapsed-time bound is measured from here, which keeps reading the clock off
// the success path; the first attempt is bounded by ctx and the attempt
// timeout.
func retryLoop[T any](ctx context.Context, s *settings, op func(context.Context) (T, error),
	beforeWait func(), err error) (T, error) {
	var zero T
	start := now(s.clock)
	var bo backoff.BackOff
	for n := 1; ; n++ {
		if ctx.Err() != nil {
			return zero, &Error{Attempts: n, Last: err, Cause: ctxError(ctx)}
		}
		if isPermanent(err) || (s.retryIf != nil && !s.retryIf(err)) {
			return zero, &Error{Attempts: n, Last: err, Cause: ErrPermanent}
		}
		if n >= s.maxAttempts {
			return zero, &Error{Attempts: n, Last: err, Cause: ErrExhausted}
		}
		if bo == nil {
			bo = perCall(s.backOff)
		}
		var delay time.Duration
		if d, ok := retryAfterOf(err); ok {
			delay = min(max(d, 0), s.maxRetryAfter)
			bo.Reset()
		} else {
			delay = bo.NextBackOff()
			if delay == backoff.Stop {
				return zero, &Error{Attempts: n, Last: err, Cause: ErrExhausted}
			}
			delay = max(delay, 0)
		}
		if s.maxElapsed > 0 && since(s.clock, start)+delay > s.maxElapsed {
			return zero, &Error{Attempts: n, Last: err, Cause: ErrMaxElapsed}
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= delay {
			return zero, &Error{Attempts: n, Last: err, Cause: fmt.Errorf("%w: %w", ErrMaxElapsed, context.DeadlineExceeded)}
		}
		if s.budget != nil && !s.budget.Withdraw() {
			return zero, &Error{Attempts: n, Last: err, Cause: ErrBudgetExhausted}
		}
		if s.onRetry != nil {
			s.onRetry(ctx, Attempt{N: n, Err: err, Delay: delay})
		}
		if beforeWait != nil {
			beforeWait()
		}
		if clock.Sleep(ctx, s.clock, delay) != nil || ctx.Err() != nil {
			return zero, &Error{Attempts: n, Last: err, Cause: ctxError(ctx)}
		}
		var v T
		v, err = attempt(ctx, s, op)
		if err == nil {
			return v, nil
		}
	}
}

// attempt runs op once, with a per-attempt deadline if one is configured.
func attempt[T any](ctx context.Context, s *settings, op func(context.Context) (T, error)) (T, error) {
	if s.attemptTimeout <= 0 {
		return op(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, s.attemptTimeout)
	defer cancel()
	return op(actx)
}

// ctxError returns ctx's error, joined with its cancellation cause when the
// cause differs, so errors.Is finds both.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// isPermanent reports whether err carries a Permanent mark that no nested
// Do has consumed: the search does not descend into an *Error.
func isPermanent(err error) bool {
	for err != nil {
		switch e := err.(type) {
		case *permanentError:
			return true
		case *Error:
			return false
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if isPermanent(inner) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return false
		}
	}
	return false
}

// retryAfterOf finds the first server-requested delay in err's chain.
func retryAfterOf(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}

// perCall returns the BackOff state for one call, reset.
func perCall(b backoff.BackOff) backoff.BackOff {
	switch v := b.(type) {
	case nil:
		return &FullJitter{Base: DefaultBaseDelay, Max: DefaultMaxDelay}
	case *backoff.ExponentialBackOff:
		c := *v
		if c.Clock == nil {
			c.Clock = backoff.SystemClock
		}
		c.Reset()
		return &c
	case cloner:
		c := v.clone()
		c.Reset()
		return c
	default:
		b.Reset()
		return b
	}
}

func now(c clock.Clock) time.Time {
	if c == nil {
		return time.Now()
	}
	return c.Now()
}

func since(c clock.Clock, t time.Time) time.Duration {
	if c == nil {
		return time.Since(t)
	}
	return c.Since(t)
}
