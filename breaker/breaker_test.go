package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/distkit/distkit/breaker"
)

var errDown = errors.New("dependency down")

func fail(context.Context) (int, error) { return 0, errDown }
func ok(context.Context) (int, error)   { return 1, nil }

// run calls Execute and reports whether fn was called.
func run(t *testing.T, b *breaker.Breaker[int], fn func(context.Context) (int, error)) (called bool, err error) {
	t.Helper()
	_, err = b.Execute(context.Background(), func(ctx context.Context) (int, error) {
		called = true
		return fn(ctx)
	})
	return called, err
}

func TestClosedReturnsResult(t *testing.T) {
	b := breaker.New[string]("svc")
	v, err := b.Execute(context.Background(), func(context.Context) (string, error) { return "hello", nil })
	if v != "hello" || err != nil {
		t.Fatalf("Execute = %q, %v", v, err)
	}
	v, err = b.Execute(context.Background(), func(context.Context) (string, error) { return "partial", errDown })
	if v != "partial" || err != errDown {
		t.Fatalf("Execute = %q, %v; want fn's own value and error", v, err)
	}
	if b.State() != breaker.StateClosed || b.Name() != "svc" {
		t.Fatalf("state %v name %q", b.State(), b.Name())
	}
}

func TestConsecutiveFailures(t *testing.T) {
	for _, n := range []uint32{1, 3, 5} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(n), breaker.WithOpenTimeout(time.Minute))
				// n-1 failures, a success, n-1 failures: the run was reset.
				for range 2 {
					for range n - 1 {
						run(t, b, fail)
					}
					if b.State() != breaker.StateClosed {
						t.Fatalf("open after %d failures in a row", n-1)
					}
					run(t, b, ok)
				}
				for range n {
					run(t, b, fail)
				}
				if b.State() != breaker.StateOpen {
					t.Fatalf("closed after %d failures in a row", n)
				}
				called, err := run(t, b, ok)
				if called {
					t.Fatal("fn called while open")
				}
				if !errors.Is(err, breaker.ErrOpen) || !errors.Is(err, gobreaker.ErrOpenState) {
					t.Fatalf("err = %v; want ErrOpen and gobreaker.ErrOpenState", err)
				}
				var oe *breaker.OpenError
				if !errors.As(err, &oe) || oe.Remaining != time.Minute+time.Millisecond || oe.RetryAfter() != oe.Remaining || oe.Name != "svc" {
					t.Fatalf("OpenError = %+v; want 1m0.001s remaining (just past the timeout)", oe)
				}
				time.Sleep(20 * time.Second)
				_, err = run(t, b, ok)
				if !errors.As(err, &oe) || oe.Remaining != 40*time.Second+time.Millisecond {
					t.Fatalf("OpenError = %+v after 20s; want 40.001s remaining", oe)
				}
			})
		})
	}
}

func TestDefaultTripsOnFifthFailure(t *testing.T) {
	b := breaker.New[int]("svc")
	for range breaker.DefaultConsecutiveFailures - 1 {
		run(t, b, fail)
	}
	if b.State() != breaker.StateClosed {
		t.Fatal("open too early")
	}
	run(t, b, fail)
	if b.State() != breaker.StateOpen {
		t.Fatalf("closed after %d failures", breaker.DefaultConsecutiveFailures)
	}
}

func TestFailureRate(t *testing.T) {
	t.Run("below minimum requests", func(t *testing.T) {
		b := breaker.New[int]("svc", breaker.WithFailureRate(0.5, 10))
		for range 9 {
			run(t, b, fail)
		}
		if b.State() != breaker.StateClosed {
			t.Fatal("open below the minimum number of requests")
		}
		run(t, b, fail)
		if b.State() != breaker.StateOpen {
			t.Fatal("closed at 10 of 10 failures")
		}
	})
	t.Run("rate", func(t *testing.T) {
		b := breaker.New[int]("svc", breaker.WithFailureRate(0.5, 10))
		for range 6 {
			run(t, b, ok)
		}
		for range 4 {
			run(t, b, fail)
		}
		if b.State() != breaker.StateClosed {
			t.Fatal("open at 40% failures")
		}
		run(t, b, fail) // 5/11
		if b.State() != breaker.StateClosed {
			t.Fatal("open at 5/11 failures")
		}
		run(t, b, fail) // 6/12
		if b.State() != breaker.StateOpen {
			t.Fatal("closed at 50% failures")
		}
	})
	t.Run("window slides", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := breaker.New[int]("svc", breaker.WithFailureRate(0.5, 10), breaker.WithWindow(10*time.Second, 10))
			for range 9 {
				run(t, b, fail)
			}
			time.Sleep(11 * time.Second)
			run(t, b, fail)
			if b.State() != breaker.StateClosed {
				t.Fatal("failures older than the window still counted")
			}
			if st := b.Stats(); st.Failures != 1 {
				t.Fatalf("Stats.Failures = %d, want 1", st.Failures)
			}
		})
	})
}

func TestHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1),
			breaker.WithOpenTimeout(10*time.Second), breaker.WithHalfOpenRequests(2))
		run(t, b, fail)
		time.Sleep(10*time.Second + 1)
		if s := b.State(); s != breaker.StateHalfOpen {
			t.Fatalf("state %v after the open timeout, want half-open", s)
		}
		// Two trial calls are admitted; a third is rejected while they run.
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				_, err := b.Execute(context.Background(), func(context.Context) (int, error) {
					<-release
					return 1, nil
				})
				if err != nil {
					t.Errorf("trial call: %v", err)
				}
			})
		}
		synctest.Wait()
		called, err := run(t, b, ok)
		if called || !errors.Is(err, breaker.ErrTooManyRequests) || !errors.Is(err, gobreaker.ErrTooManyRequests) {
			t.Fatalf("third call: called %v, err %v; want rejected with ErrTooManyRequests", called, err)
		}
		close(release)
		wg.Wait()
		if s := b.State(); s != breaker.StateClosed {
			t.Fatalf("state %v after 2 successful trials, want closed", s)
		}
		if st := b.Stats(); st.Requests != 0 || st.Rejected != 1 || st.Opened != 1 {
			t.Fatalf("Stats = %+v; want fresh counts, 1 rejection, 1 opening", st)
		}

		// A failed trial opens it again with a fresh timeout.
		run(t, b, fail)
		time.Sleep(10*time.Second + 1)
		run(t, b, fail)
		if s := b.State(); s != breaker.StateOpen {
			t.Fatalf("state %v after a failed trial, want open", s)
		}
		_, err = run(t, b, ok)
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.Remaining != 10*time.Second+time.Millisecond {
			t.Fatalf("err = %v; want a fresh 10s open period", err)
		}
	})
}

func TestContextCancellationNotCounted(t *testing.T) {
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1))
	ctx, cancel := context.WithCancel(context.Background())
	_, err := b.Execute(ctx, func(ctx context.Context) (int, error) {
		cancel()
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) || b.State() != breaker.StateClosed {
		t.Fatalf("err %v, state %v; want Canceled and still closed", err, b.State())
	}
	if st := b.Stats(); st.Exclusions != 1 || st.Failures != 0 {
		t.Fatalf("Stats = %+v; want 1 exclusion", st)
	}
	// Already done: fn not called, nothing counted.
	called := false
	_, err = b.Execute(ctx, func(context.Context) (int, error) { called = true; return 0, nil })
	if called || !errors.Is(err, context.Canceled) {
		t.Fatalf("called %v, err %v", called, err)
	}
	if st := b.Stats(); st.Requests != 1 {
		t.Fatalf("Stats.Requests = %d, want 1", st.Requests)
	}
	// The dependency's own timeout, with the caller still waiting, counts.
	_, err = b.Execute(context.Background(), func(context.Context) (int, error) {
		return 0, fmt.Errorf("upstream: %w", context.DeadlineExceeded)
	})
	if !errors.Is(err, context.DeadlineExceeded) || b.State() != breaker.StateOpen {
		t.Fatalf("err %v, state %v; want the upstream timeout to open the breaker", err, b.State())
	}
}

func TestCanceledCallerDoesNotUseHalfOpenSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1), breaker.WithOpenTimeout(time.Second))
		run(t, b, fail)
		time.Sleep(time.Second + 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := b.Execute(ctx, ok); !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		if called, err := run(t, b, ok); !called || err != nil {
			t.Fatalf("trial call: called %v, err %v", called, err)
		}
		if b.State() != breaker.StateClosed {
			t.Fatal("not closed after the trial")
		}
	})
}

func TestClassification(t *testing.T) {
	errNotFound := errors.New("not found")
	errBadInput := errors.New("bad input")
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(2),
		breaker.WithExclude(func(err error) bool { return errors.Is(err, errNotFound) }),
		breaker.WithIsFailure(func(err error) bool { return !errors.Is(err, errBadInput) }))
	for range 5 {
		if _, err := run(t, b, func(context.Context) (int, error) { return 0, errNotFound }); err != errNotFound {
			t.Fatalf("err = %v, want the caller's error unchanged", err)
		}
		run(t, b, func(context.Context) (int, error) { return 0, errBadInput })
	}
	st := b.Stats()
	if st.State != breaker.StateClosed || st.Exclusions != 5 || st.Successes != 5 || st.Failures != 0 {
		t.Fatalf("Stats = %+v; want 5 exclusions, 5 successes, closed", st)
	}
}

func TestPanicCountsAsFailure(t *testing.T) {
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1))
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		b.Execute(context.Background(), func(context.Context) (int, error) { panic("kaboom") })
	}()
	if b.State() != breaker.StateOpen {
		t.Fatal("panic not counted as a failure")
	}
}

func TestSlowSuccessFromEarlierGenerationIgnored(t *testing.T) {
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1))
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Execute(context.Background(), func(context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
	}()
	<-started
	run(t, b, fail) // opens
	close(release)
	<-done
	if b.State() != breaker.StateOpen {
		t.Fatal("a success begun before the breaker opened closed it")
	}
}

func TestStateChangeHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *breaker.Breaker[int]
		var got []string
		b = breaker.New[int]("svc", breaker.WithConsecutiveFailures(1), breaker.WithOpenTimeout(time.Second),
			breaker.WithOnStateChange(func(c breaker.StateChange) {
				// Re-entering the breaker from the hook must not deadlock.
				st := b.Stats()
				got = append(got, fmt.Sprintf("%s %v->%v (now %v)", c.Name, c.From, c.To, st.State))
				if c.To == breaker.StateHalfOpen {
					b.Execute(context.Background(), ok) // closes it from inside the hook
				}
			}))
		run(t, b, fail)
		time.Sleep(time.Second + 1)
		b.State()
		want := []string{
			"svc closed->open (now open)",
			"svc open->half-open (now half-open)",
			"svc half-open->closed (now closed)",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("hook saw\n%v\nwant\n%v", got, want)
		}
	})
}

func TestStateChangeHookSerialized(t *testing.T) {
	var inHook, maxInHook, calls atomic.Int32
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1), breaker.WithOpenTimeout(time.Nanosecond),
		breaker.WithOnStateChange(func(breaker.StateChange) {
			n := inHook.Add(1)
			if n > maxInHook.Load() {
				maxInHook.Store(n)
			}
			calls.Add(1)
			inHook.Add(-1)
		}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				if (i+j)%2 == 0 {
					b.Execute(context.Background(), fail)
				} else {
					b.Execute(context.Background(), ok)
				}
			}
		})
	}
	wg.Wait()
	b.State()
	if maxInHook.Load() != 1 || calls.Load() == 0 {
		t.Fatalf("hook ran %d times with up to %d at once; want serialized calls", calls.Load(), maxInHook.Load())
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]breaker.Option{
		"consecutive 0":  breaker.WithConsecutiveFailures(0),
		"rate 0":         breaker.WithFailureRate(0, 10),
		"rate > 1":       breaker.WithFailureRate(1.5, 10),
		"rate min 0":     breaker.WithFailureRate(0.5, 0),
		"window 0":       breaker.WithWindow(0, 10),
		"buckets 0":      breaker.WithWindow(time.Second, 0),
		"open timeout 0": breaker.WithOpenTimeout(0),
		"half-open 0":    breaker.WithHalfOpenRequests(0),
		"max keys 0":     breaker.WithMaxKeys(0),
		"idle TTL 0":     breaker.WithIdleTTL(0),
		"slow call 0":    breaker.WithSlowCall(0),
		"trip cap 0":     breaker.WithRetryAfterTrip(0),
	} {
		t.Run(name, func(t *testing.T) {
			called, err := run(t, breaker.New[int]("svc", opt), ok)
			if called || !errors.Is(err, breaker.ErrInvalidOption) {
				t.Fatalf("called %v, err %v; want ErrInvalidOption and no call", called, err)
			}
			_, err = breaker.NewGroup[int](opt).Execute(context.Background(), "k", ok)
			if !errors.Is(err, breaker.ErrInvalidOption) {
				t.Fatalf("group err %v; want ErrInvalidOption", err)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[breaker.State]string{
		breaker.StateClosed: "closed", breaker.StateHalfOpen: "half-open", breaker.StateOpen: "open", 7: "State(7)",
	} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestReset(t *testing.T) {
	var changes []string
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(2),
		breaker.WithOnStateChange(func(c breaker.StateChange) { changes = append(changes, fmt.Sprint(c.From, "->", c.To)) }))
	run(t, b, fail)
	b.Reset() // closed: no change to report, but the failure is forgotten
	run(t, b, fail)
	if b.State() != breaker.StateClosed {
		t.Fatal("Reset did not clear the count of failures")
	}
	run(t, b, fail)
	if b.State() != breaker.StateOpen {
		t.Fatal("not open")
	}
	b.Reset()
	if called, err := run(t, b, ok); !called || err != nil {
		t.Fatalf("after Reset: called %v, err %v", called, err)
	}
	st := b.Stats()
	if st.State != breaker.StateClosed || st.Requests != 1 || st.Opened != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if fmt.Sprint(changes) != "[closed->open open->closed]" {
		t.Fatalf("hook saw %v", changes)
	}
}

func TestResetAndTripDuringCalls(t *testing.T) {
	b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(1), breaker.WithOpenTimeout(time.Nanosecond),
		breaker.WithOnStateChange(func(breaker.StateChange) {}))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 300 {
				if (i+j)%3 == 0 {
					b.Execute(context.Background(), fail)
				} else {
					b.Execute(context.Background(), ok)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			if i%2 == 0 {
				b.Trip(time.Microsecond)
			}
			b.Reset()
		}
	})
	wg.Wait()
	b.Reset()
	if st := b.Stats(); st.State != breaker.StateClosed || st.Requests != 0 {
		t.Fatalf("Stats after Reset = %+v", st)
	}
}

func TestSlowCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(2), breaker.WithSlowCall(time.Second))
		slow := func(context.Context) (int, error) { time.Sleep(2 * time.Second); return 7, nil }
		fast := func(context.Context) (int, error) { time.Sleep(time.Second); return 8, nil }
		if v, err := b.Execute(context.Background(), fast); v != 8 || err != nil {
			t.Fatalf("fast call = %d, %v", v, err)
		}
		for range 2 {
			if v, err := b.Execute(context.Background(), slow); v != 7 || err != nil {
				t.Fatalf("slow call = %d, %v; want its value and no error", v, err)
			}
		}
		// The fast call reset nothing; the two slow ones in a row opened it.
		if st := b.Stats(); st.State != breaker.StateOpen || st.Opened != 1 {
			t.Fatalf("Stats = %+v; want open after 2 slow calls", st)
		}
	})
}

func TestTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []string
		b := breaker.New[int]("svc", breaker.WithConsecutiveFailures(3),
			breaker.WithOnStateChange(func(c breaker.StateChange) { changes = append(changes, fmt.Sprint(c.From, "->", c.To)) }))
		run(t, b, fail)
		b.Trip(0) // does nothing
		if b.State() != breaker.StateClosed {
			t.Fatal("Trip(0) opened the breaker")
		}
		b.Trip(5 * time.Second)
		called, err := run(t, b, ok)
		var oe *breaker.OpenError
		if called || !errors.As(err, &oe) || oe.Remaining != 5*time.Second {
			t.Fatalf("tripped: called %v, err %v; want rejected with 5s remaining", called, err)
		}
		if b.State() != breaker.StateOpen {
			t.Fatal("tripped breaker not open")
		}
		time.Sleep(3 * time.Second)
		if _, err := run(t, b, ok); !errors.As(err, &oe) || oe.Remaining != 2*time.Second {
			t.Fatalf("err %v; want 2s remaining", err)
		}
		time.Sleep(2 * time.Second)
		if called, err := run(t, b, ok); !called || err != nil {
			t.Fatalf("after the trip: called %v, err %v", called, err)
		}
		st := b.Stats()
		if st.State != breaker.StateClosed || st.Failures != 0 || st.Opened != 1 || st.Rejected != 2 {
			t.Fatalf("Stats = %+v; want closed with fresh counts, 1 opening, 2 rejections", st)
		}
		// Reset ends a trip early.
		b.Trip(time.Hour)
		b.Reset()
		if called, _ := run(t, b, ok); !called {
			t.Fatal("Reset did not end the trip")
		}
		want := "[closed->open open->closed closed->open open->closed]"
		if fmt.Sprint(changes) != want {
			t.Fatalf("hook saw %v, want %v", changes, want)
		}
	})
}

func TestTripRetryAfterWaitsTheWholePeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := breaker.New[int]("svc")
		b.Trip(1500 * time.Microsecond)
		_, err := run(t, b, ok)
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.RetryAfter() != 2*time.Millisecond {
			t.Fatalf("err %v; want RetryAfter rounded up to 2ms", err)
		}
		time.Sleep(oe.RetryAfter())
		if called, err := run(t, b, ok); !called || err != nil {
			t.Fatalf("after waiting RetryAfter: called %v, err %v", called, err)
		}
	})
}

func TestZeroValues(t *testing.T) {
	var b breaker.Breaker[int]
	for range breaker.DefaultConsecutiveFailures {
		if called, _ := run(t, &b, fail); !called {
			t.Fatal("zero Breaker rejected a call while closed")
		}
	}
	if b.State() != breaker.StateOpen {
		t.Fatal("zero Breaker does not use the default rule")
	}
	var g breaker.Group[int]
	if v, err := g.Execute(context.Background(), "k", ok); v != 1 || err != nil || g.Len() != 1 {
		t.Fatalf("zero Group: %d, %v, Len %d", v, err, g.Len())
	}
	var tr breaker.Transport
	if tr.Group().Len() != 0 {
		t.Fatal("zero Transport has breakers")
	}
}

func TestSentinelsMatchGobreaker(t *testing.T) {
	if !errors.Is(breaker.ErrOpen, gobreaker.ErrOpenState) || !errors.Is(breaker.ErrTooManyRequests, gobreaker.ErrTooManyRequests) {
		t.Fatal("sentinels do not match gobreaker's errors")
	}
	if errors.Is(breaker.ErrOpen, gobreaker.ErrTooManyRequests) || errors.Is(breaker.ErrOpen, breaker.ErrTooManyRequests) {
		t.Fatal("ErrOpen matches the wrong error")
	}
	if breaker.ErrOpen.Error() != "breaker: open" || breaker.ErrTooManyRequests.Error() != "breaker: too many requests" {
		t.Fatal("wrong messages")
	}
}
