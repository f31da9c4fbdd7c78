package retry_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/retry"
)

func TestNewBudgetValidates(t *testing.T) {
	for name, c := range map[string]struct {
		ratio, min float64
		window     time.Duration
	}{
		"negative ratio":  {-0.1, 1, time.Second},
		"NaN ratio":       {math.NaN(), 1, time.Second},
		"infinite ratio":  {math.Inf(1), 1, time.Second},
		"negative floor":  {0.1, -1, time.Second},
		"NaN floor":       {0.1, math.NaN(), time.Second},
		"zero window":     {0.1, 1, 0},
		"negative window": {0.1, 1, -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if b, err := retry.NewBudget(c.ratio, c.min, c.window); !errors.Is(err, retry.ErrInvalidOption) || b != nil {
				t.Fatalf("NewBudget = %v, %v; want nil, ErrInvalidOption", b, err)
			}
		})
	}
}

func TestBudgetCapsRetries(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	b, err := retry.NewBudget(0.5, 0, 10*time.Second, retry.WithClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	calls, denied := 0, 0
	for range 10 {
		err := retry.Do(context.Background(), failing(1000, &calls), zero(), retry.WithBudget(b),
			retry.WithMaxAttempts(3), retry.WithClock(fc))
		if errors.Is(err, retry.ErrBudgetExhausted) {
			denied++
			if !errors.Is(err, errBoom) {
				t.Fatalf("denied error %v does not wrap the last error", err)
			}
		}
	}
	st := b.Stats()
	if st.Requests != 10 || st.Retries != 5 {
		t.Fatalf("Stats = %+v; want 10 requests and 5 retries (ratio 0.5)", st)
	}
	// Every call made its first attempt; only 5 retries in total.
	if calls != 15 || denied == 0 || st.Denied == 0 {
		t.Fatalf("calls = %d, denied = %d, Stats.Denied = %d; want 15 calls and denials", calls, denied, st.Denied)
	}
}

func TestBudgetFloorAndExpiry(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	b, err := retry.NewBudget(0, 1, 10*time.Second, retry.WithClock(fc))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if !b.Withdraw() {
			t.Fatalf("withdraw %d refused; the floor allows 10 per 10s", i)
		}
	}
	if b.Withdraw() {
		t.Fatal("11th withdraw allowed")
	}
	fc.Advance(5 * time.Second)
	if b.Withdraw() {
		t.Fatal("withdraw allowed while the spent retries are still in the window")
	}
	fc.Advance(5 * time.Second)
	if !b.Withdraw() {
		t.Fatal("withdraw refused after the window passed")
	}
	if st := b.Stats(); st.Retries != 1 || st.Available != 9 || st.Denied != 2 {
		t.Fatalf("Stats = %+v; want 1 retry, 9 available, 2 denied", st)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b, err := retry.NewBudget(0.1, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			calls := 0
			_ = retry.Do(context.Background(), failing(1, &calls), zero(), retry.WithBudget(b))
		})
	}
	wg.Wait()
	if st := b.Stats(); st.Requests != 100 || st.Retries != 10 || st.Denied != 90 {
		t.Fatalf("Stats = %+v; want 100 requests, 10 retries, 90 denied", st)
	}
}

// TestBudgetProperty checks, for random traffic on a fake clock, that a
// retry is granted only while the retries of the window, counting it, stay
// within ratio·requests + floor, and that over the whole run retries stay
// within 2·ratio·requests + floor·(windows spanned + 2): a request backs
// retries for one window length after it, so in the worst case twice.
func TestBudgetProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ratio := rapid.Float64Range(0, 2).Draw(t, "ratio")
		perSec := float64(rapid.IntRange(0, 5).Draw(t, "perSecond"))
		window := time.Duration(rapid.IntRange(1, 20).Draw(t, "windowSeconds")) * time.Second
		fc := clocktest.NewFake(time.Time{})
		b, err := retry.NewBudget(ratio, perSec, window, retry.WithClock(fc))
		if err != nil {
			t.Fatal(err)
		}
		floor := perSec * window.Seconds()
		var reqs, retries int
		steps := rapid.IntRange(1, 300).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 2).Draw(t, "action") {
			case 0:
				b.Deposit()
				reqs++
			case 1:
				if b.Withdraw() {
					retries++
					st := b.Stats()
					if float64(st.Retries) > ratio*float64(st.Requests)+floor+1e-9 {
						t.Fatalf("granted: window has %d retries for %d requests (ratio %v, floor %v)", st.Retries, st.Requests, ratio, floor)
					}
				}
			case 2:
				fc.Advance(time.Duration(rapid.Int64Range(0, int64(window)).Draw(t, "advance")))
			}
		}
		windows := float64(fc.Since(clocktest.Epoch)/window) + 2
		if float64(retries) > 2*ratio*float64(reqs)+floor*windows+1e-9 {
			t.Fatalf("%d retries for %d requests over %v windows (ratio %v, floor %v)", retries, reqs, windows, ratio, floor)
		}
	})
}

func TestZeroBudgetAllowsNoRetries(t *testing.T) {
	var b retry.Budget
	calls := 0
	err := retry.Do(context.Background(), failing(5, &calls), zero(), retry.WithBudget(&b))
	if calls != 1 || !errors.Is(err, retry.ErrBudgetExhausted) {
		t.Fatalf("calls = %d, err = %v; want 1 call and ErrBudgetExhausted", calls, err)
	}
	if st := b.Stats(); st.Requests != 1 || st.Denied != 1 || st.Available != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}
