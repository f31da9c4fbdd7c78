package clock

import (
	"context"
	"time"
)

// Clock is a source of physical time and timers. Code that waits or expires
// things takes a Clock so tests can drive time by hand (see
// [github.com/distkit/distkit/clock/clocktest]) instead of sleeping.
//
// Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Since returns the time elapsed since t.
	Since(t time.Time) time.Duration
	// NewTimer returns a timer that sends the current time on its channel
	// after at least d.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine after at least d. The returned
	// Timer's C method returns nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is the subset of [time.Timer] that a [Clock] provides.
type Timer interface {
	// C returns the channel on which the time is delivered, or nil for a
	// timer made by AfterFunc.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped the timer, false if it had already fired or been stopped.
	Stop() bool
	// Reset changes the timer to expire after d. It reports whether the
	// timer had been active.
	Reset(d time.Duration) bool
}

// Real is the [Clock] of the running system, backed by package time.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) Since(t time.Time) time.Duration { return time.Since(t) }
func (realClock) NewTimer(d time.Duration) Timer  { return realTimer{time.NewTimer(d)} }
func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// Sleep waits for d on c, or until ctx is done, whichever comes first. It
// returns ctx.Err() if the context ended first and nil otherwise. A
// non-positive d returns at once (with ctx.Err() if ctx is already done).
// A nil c means [Real].
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	if c == nil {
		c = Real
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
