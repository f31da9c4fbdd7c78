package retry

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Suggested budget parameters, those of Finagle's retry budget: retries may
// add 20% to the requests of the last 10 seconds, plus 10 retries a second so
// that a quiet client can still retry.
const (
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 10
	DefaultBudgetWindow       = 10 * time.Second
)

// budgetSlots is the number of slots the window is divided into: requests
// and retries expire one slot (window/10) at a time.
const budgetSlots = 10

// Budget caps retries across many calls to a ratio of recent requests plus
// a floor, so that a dependency in trouble sees at most a bounded amount of
// extra load from retries instead of a multiple of its normal traffic.
//
// A retry is granted only if, counting it, the retries of the last window
// stay within ratio × requests of the last window + minPerSecond × window.
// The window slides in steps of a tenth of its length. Requests are counted
// when a call starts (its first attempt, which is never refused); each retry
// withdraws one token. A refused retry ends the call with
// [ErrBudgetExhausted]. Under steady traffic retries stay near ratio ×
// requests. As in Finagle, a request keeps backing retries for one window
// after it, so in the worst case, over a long run, retries stay within 2 ×
// ratio × requests plus the floor's share.
//
// Share one Budget per dependency (per upstream service, or per host) across
// all callers with [WithBudget]. A Budget is safe for concurrent use. The
// zero Budget allows no retries at all; make budgets with [NewBudget].
type Budget struct {
	ratio  float64
	floor  float64
	slot   time.Duration
	clock  clock.Clock
	origin time.Time

	mu      sync.Mutex
	epoch   int64 // slot number of slots[epoch%budgetSlots]
	slots   [budgetSlots]budgetSlot
	reqs    int64 // sum of slots[i].reqs
	retries int64 // sum of slots[i].retries
	denied  uint64
}

type budgetSlot struct{ reqs, retries int64 }

// BudgetStats is a snapshot of a [Budget].
type BudgetStats struct {
	// Requests and Retries are the counts within the current window.
	Requests, Retries int64
	// Available is how many more retries the window allows now.
	Available int64
	// Denied is the number of retries refused since the Budget was made.
	Denied uint64
}

// NewBudget returns a Budget allowing, over any window of the given length,
// ratio retries per request plus minPerSecond retries per second. ratio and
// minPerSecond must be finite and not negative, and window at least 10 ns.
// Of opts only [WithClock] applies. See the Default* constants for a common
// choice.
func NewBudget(ratio, minPerSecond float64, window time.Duration, opts ...Option) (*Budget, error) {
	switch {
	case !(ratio >= 0) || math.IsInf(ratio, 0):
		return nil, fmt.Errorf("%w: budget ratio %v", ErrInvalidOption, ratio)
	case !(minPerSecond >= 0) || math.IsInf(minPerSecond, 0):
		return nil, fmt.Errorf("%w: budget minimum %v per second", ErrInvalidOption, minPerSecond)
	case window < budgetSlots:
		return nil, fmt.Errorf("%w: budget window %v", ErrInvalidOption, window)
	}
	s := resolve(opts)
	b := &Budget{
		ratio: ratio,
		floor: minPerSecond * window.Seconds(),
		slot:  window / budgetSlots,
		clock: s.clock,
	}
	b.origin = now(b.clock)
	return b, nil
}

// advance expires slots that left the window. b.mu must be held.
func (b *Budget) advance() {
	if b.slot <= 0 {
		return // the zero Budget: nothing to expire
	}
	e := int64(since(b.clock, b.origin) / b.slot)
	if e <= b.epoch {
		return
	}
	if e-b.epoch >= budgetSlots {
		b.slots = [budgetSlots]budgetSlot{}
		b.reqs, b.retries = 0, 0
	} else {
		for i := b.epoch + 1; i <= e; i++ {
			s := &b.slots[i%budgetSlots]
			b.reqs -= s.reqs
			b.retries -= s.retries
			*s = budgetSlot{}
		}
	}
	b.epoch = e
}

// Deposit records a request. [Do] calls it once per call with this budget;
// call it yourself only when you drive retries by hand with [Budget.Withdraw].
func (b *Budget) Deposit() {
	b.mu.Lock()
	b.advance()
	b.slots[b.epoch%budgetSlots].reqs++
	b.reqs++
	b.mu.Unlock()
}

// Withdraw takes one retry from the budget and reports whether it was
// allowed.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	if float64(b.retries+1) > b.ratio*float64(b.reqs)+b.floor {
		b.denied++
		return false
	}
	b.slots[b.epoch%budgetSlots].retries++
	b.retries++
	return true
}

// Stats returns a snapshot of the budget.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	avail := int64(math.Floor(b.ratio*float64(b.reqs)+b.floor)) - b.retries
	return BudgetStats{Requests: b.reqs, Retries: b.retries, Available: max(avail, 0), Denied: b.denied}
}
