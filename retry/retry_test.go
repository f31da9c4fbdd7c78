package retry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/retry"
)

var errBoom = errors.New("boom")

// zero makes retries wait for nothing.
func zero() retry.Option { return retry.WithBackOff(&backoff.ZeroBackOff{}) }

// failing returns an op that fails k times, then succeeds, counting calls.
func failing(k int, calls *int) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= k {
			return fmt.Errorf("attempt %d: %w", *calls, errBoom)
		}
		return nil
	}
}

// steps is a BackOff returning the given delays in order, then Stop, and
// counting Reset calls.
type steps struct {
	d      []time.Duration
	i      int
	resets int
}

func (s *steps) NextBackOff() time.Duration {
	if s.i >= len(s.d) {
		return backoff.Stop
	}
	s.i++
	return s.d[s.i-1]
}
func (s *steps) Reset() { s.i = 0; s.resets++ }

// drive advances fc by step every time something waits on it, until stop
// is closed.
func drive(fc *clocktest.Fake, step time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for fc.BlockUntil(ctx, 1) == nil {
			fc.Advance(step)
		}
	}()
	return func() { cancel(); <-done }
}

func TestDoSucceedsFirstTry(t *testing.T) {
	calls := 0
	if err := retry.Do(context.Background(), failing(0, &calls)); err != nil {
		t.Fatalf("Do = %v, want nil", err)
	}
	if calls != 1 {
		t.Fatalf("calls = %d, want 1", calls)
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	for _, k := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("failures=%d", k), func(t *testing.T) {
			calls := 0
			v, err := retry.DoValue(context.Background(), func(ctx context.Context) (int, error) {
				if err := failing(k, &calls)(ctx); err != nil {
					return -1, err
				}
				return 42, nil
			}, zero(), retry.WithMaxAttempts(k+1))
			if err != nil || v != 42 {
				t.Fatalf("DoValue = %d, %v; want 42, nil", v, err)
			}
			if calls != k+1 {
				t.Fatalf("calls = %d, want %d", calls, k+1)
			}
		})
	}
}

func TestMaxAttemptsExhausted(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("max=%d", n), func(t *testing.T) {
			calls := 0
			var last error
			v, err := retry.DoValue(context.Background(), func(context.Context) (string, error) {
				calls++
				last = fmt.Errorf("attempt %d: %w", calls, errBoom)
				return "partial", last
			}, zero(), retry.WithMaxAttempts(n))
			if calls != n {
				t.Fatalf("calls = %d, want %d", calls, n)
			}
			if v != "" {
				t.Fatalf("value = %q, want zero value", v)
			}
			if !errors.Is(err, last) || !errors.Is(err, retry.ErrExhausted) {
				t.Fatalf("err = %v; want Is(last) and Is(ErrExhausted)", err)
			}
			var re *retry.Error
			if !errors.As(err, &re) || re.Attempts != n || re.Last != last {
				t.Fatalf("As(*Error) = %+v, want Attempts %d and Last %v", re, n, last)
			}
			if !strings.Contains(err.Error(), last.Error()) {
				t.Fatalf("message %q lacks last error %q", err, last)
			}
		})
	}
}

func TestDefaultMaxAttempts(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), failing(100, &calls), zero())
	if calls != retry.DefaultMaxAttempts || !errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("calls = %d, err = %v; want %d and ErrExhausted", calls, err, retry.DefaultMaxAttempts)
	}
}

func TestBackOffStopEndsRetries(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), failing(100, &calls), retry.WithBackOff(&backoff.StopBackOff{}))
	if calls != 1 || !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, errBoom) {
		t.Fatalf("calls = %d, err = %v; want 1 call, ErrExhausted and errBoom", calls, err)
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]retry.Option{
		"attempts=0":       retry.WithMaxAttempts(0),
		"attempts=-1":      retry.WithMaxAttempts(-1),
		"elapsed<0":        retry.WithMaxElapsed(-time.Second),
		"attemptTimeout<0": retry.WithAttemptTimeout(-1),
		"retryAfter<0":     retry.WithMaxRetryAfter(-1),
		"nil backoff":      retry.WithBackOff(nil),
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			err := retry.Do(context.Background(), failing(0, &calls), opt)
			if !errors.Is(err, retry.ErrInvalidOption) || calls != 0 {
				t.Fatalf("err = %v, calls = %d; want ErrInvalidOption and no call", err, calls)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	if retry.Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
	calls := 0
	err := retry.Do(context.Background(), func(context.Context) error {
		calls++
		return fmt.Errorf("op x: %w", retry.Permanent(errBoom))
	}, zero())
	if calls != 1 {
		t.Fatalf("calls = %d, want 1", calls)
	}
	if !errors.Is(err, errBoom) || !errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("err = %v; want Is(errBoom) and Is(ErrPermanent)", err)
	}
	if !strings.Contains(err.Error(), "op x: boom") {
		t.Fatalf("message %q lost the outer wrapping", err)
	}
}

func TestPermanentConsumedByInnerDo(t *testing.T) {
	outer, inner := 0, 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		outer++
		return retry.Do(ctx, func(context.Context) error {
			inner++
			return retry.Permanent(errBoom)
		})
	}, zero(), retry.WithMaxAttempts(3))
	if outer != 3 || inner != 3 {
		t.Fatalf("outer = %d, inner = %d; want 3 and 3", outer, inner)
	}
	if !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, errBoom) {
		t.Fatalf("err = %v", err)
	}
}

func TestRetryIf(t *testing.T) {
	errFatal := errors.New("fatal")
	calls := 0
	err := retry.Do(context.Background(), func(context.Context) error {
		calls++
		if calls == 2 {
			return errFatal
		}
		return errBoom
	}, zero(), retry.WithMaxAttempts(10), retry.WithRetryIf(func(err error) bool {
		return !errors.Is(err, errFatal)
	}))
	if calls != 2 || !errors.Is(err, errFatal) || !errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("calls = %d, err = %v; want 2 calls and ErrPermanent wrapping fatal", calls, err)
	}
}

func TestCanceledBeforeFirstAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retry.Do(ctx, failing(0, &calls))
	if calls != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("calls = %d, err = %v; want no call and context.Canceled", calls, err)
	}
}

func TestCancelDuringWait(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	ctx, cancel := context.WithCancelCause(context.Background())
	errShutdown := errors.New("shutting down")
	done := make(chan error, 1)
	calls := 0
	go func() {
		done <- retry.Do(ctx, failing(100, &calls), retry.WithClock(fc),
			retry.WithBackOff(backoff.NewConstantBackOff(time.Hour)), retry.WithMaxElapsed(0))
	}()
	if err := fc.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel(errShutdown)
	err := <-done
	if calls != 1 {
		t.Fatalf("calls = %d, want 1", calls)
	}
	for _, want := range []error{context.Canceled, errShutdown, errBoom} {
		if !errors.Is(err, want) {
			t.Errorf("err = %v; want Is(%v)", err, want)
		}
	}
}

func TestParentCanceledDuringAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := retry.Do(ctx, func(ctx context.Context) error {
		calls++
		cancel()
		return ctx.Err()
	}, zero())
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("calls = %d, err = %v; want 1 call and Canceled", calls, err)
	}
}

func TestMaxElapsed(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	stop := drive(fc, 10*time.Second)
	defer stop()
	calls := 0
	err := retry.Do(context.Background(), failing(100, &calls), retry.WithClock(fc),
		retry.WithBackOff(backoff.NewConstantBackOff(10*time.Second)),
		retry.WithMaxAttempts(100), retry.WithMaxElapsed(25*time.Second))
	// Attempts at 0s, 10s, 20s; a wait to 30s would pass 25s.
	if calls != 3 || !errors.Is(err, retry.ErrMaxElapsed) || !errors.Is(err, errBoom) {
		t.Fatalf("calls = %d, err = %v; want 3 calls and ErrMaxElapsed", calls, err)
	}
}

func TestContextDeadlineNotOverrun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	calls := 0
	start := time.Now()
	err := retry.Do(ctx, failing(100, &calls), retry.WithBackOff(backoff.NewConstantBackOff(2*time.Hour)),
		retry.WithMaxElapsed(0))
	if calls != 1 || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, retry.ErrMaxElapsed) {
		t.Fatalf("calls = %d, err = %v; want 1 call, DeadlineExceeded and ErrMaxElapsed", calls, err)
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Do waited although the wait could not finish before the deadline")
	}
}

func TestRetryAfterAndOnRetry(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	stop := drive(fc, time.Second)
	defer stop()
	bo := &steps{d: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}}
	errs := []error{
		errBoom,                                  // backoff: 1s
		retry.RetryAfter(7*time.Second, errBoom), // server asks 7s, capped to 5s; backoff restarts
		errBoom,                                  // backoff again from the start: 1s
		errBoom,                                  // 2s
		nil,
	}
	var got []retry.Attempt
	calls := 0
	err := retry.Do(context.Background(), func(context.Context) error {
		calls++
		return errs[calls-1]
	}, retry.WithClock(fc), retry.WithBackOff(bo), retry.WithMaxAttempts(10),
		retry.WithMaxRetryAfter(5*time.Second),
		retry.WithOnRetry(func(_ context.Context, a retry.Attempt) { got = append(got, a) }))
	if err != nil {
		t.Fatalf("Do = %v", err)
	}
	want := []time.Duration{time.Second, 5 * time.Second, time.Second, 2 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("OnRetry called %d times, want %d", len(got), len(want))
	}
	for i, a := range got {
		if a.N != i+1 || a.Delay != want[i] || !errors.Is(a.Err, errBoom) {
			t.Errorf("OnRetry[%d] = %+v; want N %d, Delay %v", i, a, i+1, want[i])
		}
	}
	if elapsed := fc.Since(clocktest.Epoch); elapsed < 9*time.Second {
		t.Errorf("fake time advanced %v, want at least 9s of waits", elapsed)
	}
}

func TestOnRetryNotCalledAfterLastAttempt(t *testing.T) {
	hooks := 0
	calls := 0
	_ = retry.Do(context.Background(), failing(100, &calls), zero(), retry.WithMaxAttempts(3),
		retry.WithOnRetry(func(context.Context, retry.Attempt) { hooks++ }))
	if calls != 3 || hooks != 2 {
		t.Fatalf("calls = %d, hooks = %d; want 3 and 2", calls, hooks)
	}
}

func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		calls := 0
		var deadlines []time.Time
		start := time.Now()
		err := retry.Do(parent, func(ctx context.Context) error {
			calls++
			dl, _ := ctx.Deadline()
			deadlines = append(deadlines, dl)
			if calls == 1 {
				<-ctx.Done() // hangs until the attempt's own deadline
				return ctx.Err()
			}
			return nil
		}, zero(), retry.WithAttemptTimeout(time.Second))
		if err != nil || calls != 2 {
			t.Fatalf("Do = %v after %d calls; want nil after 2", err, calls)
		}
		if !deadlines[0].Equal(start.Add(time.Second)) {
			t.Errorf("first attempt deadline = %v, want %v", deadlines[0], start.Add(time.Second))
		}
	})
}

func TestPanicPropagates(t *testing.T) {
	defer func() {
		if r := recover(); r != "kaboom" {
			t.Fatalf("recovered %v, want kaboom", r)
		}
	}()
	_ = retry.Do(context.Background(), func(context.Context) error { panic("kaboom") })
	t.Fatal("Do returned")
}

func TestSharedBackOffConcurrent(t *testing.T) {
	shared := []backoff.BackOff{
		backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Nanosecond),
			backoff.WithMaxInterval(time.Microsecond)),
		&retry.FullJitter{Base: time.Nanosecond, Max: time.Microsecond},
		&retry.EqualJitter{Base: time.Nanosecond, Max: time.Microsecond},
		&retry.DecorrelatedJitter{Base: time.Nanosecond, Max: time.Microsecond},
	}
	for _, bo := range shared {
		t.Run(fmt.Sprintf("%T", bo), func(t *testing.T) {
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					calls := 0
					err := retry.Do(context.Background(), failing(100, &calls),
						retry.WithBackOff(bo), retry.WithMaxAttempts(5))
					if calls != 5 || !errors.Is(err, retry.ErrExhausted) {
						t.Errorf("calls = %d, err = %v", calls, err)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestErrorZeroValue(t *testing.T) {
	var e retry.Error
	if e.Error() != "retry: failed" || len(e.Unwrap()) != 0 {
		t.Fatalf("zero Error: %q, %v", e.Error(), e.Unwrap())
	}
	e = retry.Error{Attempts: 2, Last: errBoom, Cause: retry.ErrExhausted}
	if got := e.Error(); got != "retry: attempts exhausted after 2 attempts: boom" {
		t.Fatalf("Error() = %q", got)
	}
}
