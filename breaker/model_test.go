package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/distkit/distkit/breaker"
)

var errExcluded = errors.New("excluded")

// model is a naive reference of a consecutive-failure breaker with one
// half-open trial, driven by sequential calls.
type model struct {
	n        int
	timeout  time.Duration
	state    breaker.State
	consec   int
	openedAt time.Time
}

func (m *model) observe(now time.Time) {
	if m.state == breaker.StateOpen && now.Sub(m.openedAt) > m.timeout {
		m.state = breaker.StateHalfOpen
	}
}

// call returns whether fn runs, and applies the outcome.
func (m *model) call(now time.Time, outcome int) bool {
	m.observe(now)
	if m.state == breaker.StateOpen {
		return false
	}
	switch outcome {
	case 0: // success
		m.consec = 0
		m.state = breaker.StateClosed
	case 1: // failure
		m.consec++
		if m.state == breaker.StateHalfOpen || m.consec >= m.n {
			m.state, m.openedAt, m.consec = breaker.StateOpen, now, 0
		}
	}
	return true
}

// TestBreakerMatchesModel checks, for random sequences of successes,
// failures, excluded errors and pauses, that the breaker admits exactly the
// calls the reference admits and is always in the reference's state; in
// particular fn never runs while open.
func TestBreakerMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 6).Draw(rt, "n")
		timeout := time.Duration(rapid.IntRange(1, 10).Draw(rt, "timeoutSeconds")) * time.Second
		ops := rapid.SliceOfN(rapid.IntRange(0, 3), 1, 100).Draw(rt, "ops")
		pauses := rapid.SliceOfN(rapid.IntRange(0, 12), len(ops), len(ops)).Draw(rt, "pauses")
		// Failures are reported after the bubble ends, so that rapid can
		// shrink them.
		var failure string
		synctest.Test(t, func(t *testing.T) {
			b := breaker.New[int]("m", breaker.WithConsecutiveFailures(uint32(n)), breaker.WithOpenTimeout(timeout),
				breaker.WithExclude(func(err error) bool { return err == errExcluded }))
			m := &model{n: n, timeout: timeout}
			for i, op := range ops {
				if op == 3 {
					time.Sleep(time.Duration(pauses[i]) * time.Second)
					continue
				}
				want := m.call(time.Now(), op)
				called := false
				b.Execute(context.Background(), func(context.Context) (int, error) {
					called = true
					switch op {
					case 1:
						return 0, errDown
					case 2:
						return 0, errExcluded
					}
					return 1, nil
				})
				if called != want {
					failure = fmt.Sprintf("step %d (op %d): fn called = %v, model says %v", i, op, called, want)
					return
				}
				m.observe(time.Now())
				if got := b.State(); got != m.state {
					failure = fmt.Sprintf("step %d (op %d): state %v, model %v", i, op, got, m.state)
					return
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

// TestFailureRateMatchesModel checks, for random sequences of outcomes
// within one window, that the breaker opens exactly on the first failure
// after which at least min calls have completed and the failure share is at
// least rate, and never below min calls.
func TestFailureRateMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		rate := rapid.Float64Range(0.05, 1).Draw(rt, "rate")
		minReq := rapid.IntRange(1, 20).Draw(rt, "min")
		outcomes := rapid.SliceOfN(rapid.IntRange(0, 2), 1, 80).Draw(rt, "outcomes")
		b := breaker.New[int]("m", breaker.WithFailureRate(rate, uint32(minReq)), breaker.WithWindow(time.Hour, 1),
			breaker.WithExclude(func(err error) bool { return err == errExcluded }))
		var succ, fails int
		for i, o := range outcomes {
			_, err := b.Execute(context.Background(), func(context.Context) (int, error) {
				switch o {
				case 1:
					return 0, errDown
				case 2:
					return 0, errExcluded
				}
				return 1, nil
			})
			if errors.Is(err, breaker.ErrOpen) {
				rt.Fatalf("call %d rejected although the model never opened", i)
			}
			switch o {
			case 0:
				succ++
			case 1:
				fails++
			}
			done := succ + fails
			wantOpen := o == 1 && done >= minReq && float64(fails) >= rate*float64(done)
			if got := b.State() == breaker.StateOpen; got != wantOpen {
				rt.Fatalf("call %d: open = %v, want %v (%d failures of %d, rate %v, min %d)",
					i, got, wantOpen, fails, done, rate, minReq)
			}
			if wantOpen {
				return
			}
		}
	})
}
