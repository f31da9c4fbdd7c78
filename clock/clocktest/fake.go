// Package clocktest provides a manual [clock.Clock] for tests: time stands
// still until the test advances it, so code that waits, retries or expires
// entries can be tested without sleeping.
package clocktest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Fake is a [clock.Clock] whose time moves only when Advance or Set is
// called. Timers fire, in deadline order, during the call that moves time
// past their deadline. The zero value is not usable; call [NewFake].
//
// Fake is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer  // pending, unordered
	changed chan struct{} // closed and replaced whenever timers change
}

var _ clock.Clock = (*Fake)(nil)

// Epoch is the time a Fake made by NewFake with a zero time starts at.
var Epoch = time.Date(2020, time.January, 1, 0, 0, 0, 0, time.UTC)

// NewFake returns a Fake set to start, or to [Epoch] if start is zero.
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = Epoch
	}
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since returns f.Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// NewTimer returns a timer that fires once the fake's time reaches now+d.
// A timer with d <= 0 fires at once.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// AfterFunc returns a timer that calls fn in its own goroutine once the
// fake's time reaches now+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) clock.Timer {
	t := &fakeTimer{f: f, fn: fn}
	t.Reset(d)
	return t
}

// Advance moves time forward by d, firing every timer whose deadline is
// reached, in deadline order. A negative d panics: time never goes back on a
// Fake (use Set to model a wall-clock step).
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clocktest: Advance with negative duration")
	}
	f.mu.Lock()
	f.setLocked(f.now.Add(d))
}

// Set moves the fake's time to t, which may be earlier than the current
// time, and fires every timer whose deadline is reached.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.setLocked(t)
}

// setLocked is called with f.mu held and releases it.
func (f *Fake) setLocked(t time.Time) {
	f.now = t
	var due []*fakeTimer
	kept := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.when.After(t) {
			due = append(due, tm)
		} else {
			kept = append(kept, tm)
		}
	}
	clear(f.timers[len(kept):])
	f.timers = kept
	if len(due) > 0 {
		f.notifyLocked()
	}
	f.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].when.Before(due[j].when) })
	for _, tm := range due {
		tm.fire(t)
	}
}

// Waiters reports how many timers are pending.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// BlockUntil waits until at least n timers are pending, or ctx ends. Tests
// call it before Advance to be sure the code under test has started waiting.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		pending, changed := len(f.timers), f.changed
		f.mu.Unlock()
		if pending >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// removeLocked drops t from the pending list and reports whether it was there.
func (f *Fake) removeLocked(t *fakeTimer) bool {
	for i, tm := range f.timers {
		if tm == t {
			last := len(f.timers) - 1
			f.timers[i] = f.timers[last]
			f.timers[last] = nil
			f.timers = f.timers[:last]
			f.notifyLocked()
			return true
		}
	}
	return false
}

type fakeTimer struct {
	f    *Fake
	ch   chan time.Time // nil for AfterFunc timers
	fn   func()
	when time.Time // guarded by f.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.removeLocked(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	f := t.f
	f.mu.Lock()
	active := f.removeLocked(t)
	t.when = f.now.Add(d)
	if d <= 0 {
		now := f.now
		f.mu.Unlock()
		t.fire(now)
		return active
	}
	f.timers = append(f.timers, t)
	f.notifyLocked()
	f.mu.Unlock()
	return active
}

func (t *fakeTimer) fire(now time.Time) {
	if t.fn != nil {
		go t.fn()
		return
	}
	select {
	case t.ch <- now:
	default: // like time.Timer: an undrained value is not duplicated
	}
}
