package retry

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The jitter policies below are backoff/v4 policies (they implement
// backoff.BackOff), usable with [WithBackOff] and equally with backoff.Retry
// or backoff.Ticker. Their zero value uses [DefaultBaseDelay] and
// [DefaultMaxDelay]. Used through [WithBackOff], one value may be shared by
// any number of concurrent calls: each call works on its own copy. Used
// directly through NextBackOff, a value is not safe for concurrent use.
//
// With cap(n) = min(Max, Base·2ⁿ) for the n-th retry (n from 0):
//
//   - FullJitter waits a uniform random time in [0, cap(n)];
//   - EqualJitter waits cap(n)/2 plus a uniform random time in [0, cap(n)/2];
//   - DecorrelatedJitter waits min(Max, uniform in [Base, 3·previous]),
//     starting from previous = Base.
//
// Full jitter spreads a crowd of clients best and is the default.
// Decorrelated jitter finishes slightly sooner for long retry sequences;
// equal jitter guarantees a minimum wait. None of them ever returns
// backoff.Stop: the number of attempts and the elapsed time are bounded by
// [Do]'s options.

// FullJitter is exponential backoff with full jitter.
type FullJitter struct {
	// Base is the first step's cap. Zero means DefaultBaseDelay.
	Base time.Duration
	// Max caps every step. Zero means DefaultMaxDelay.
	Max time.Duration

	n uint
}

// EqualJitter is exponential backoff with equal jitter.
type EqualJitter struct {
	// Base is the first step's cap. Zero means DefaultBaseDelay.
	Base time.Duration
	// Max caps every step. Zero means DefaultMaxDelay.
	Max time.Duration

	n uint
}

// DecorrelatedJitter is backoff with decorrelated jitter.
type DecorrelatedJitter struct {
	// Base is the smallest wait. Zero means DefaultBaseDelay.
	Base time.Duration
	// Max caps every wait. Zero means DefaultMaxDelay.
	Max time.Duration

	prev time.Duration
}

// cloner is implemented by the policies Do copies per call.
type cloner interface{ clone() backoff.BackOff }

func bounds(base, maxd time.Duration) (time.Duration, time.Duration) {
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if maxd <= 0 {
		maxd = DefaultMaxDelay
	}
	return base, max(base, maxd)
}

// expCap returns min(maxd, base·2ⁿ) without overflowing.
func expCap(base, maxd time.Duration, n uint) time.Duration {
	if n >= 62 || base > maxd>>n {
		return maxd
	}
	return base << n
}

// uniform returns a uniform random duration in [lo, hi].
func uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	span := uint64(hi - lo)
	if span == 1<<64-1 {
		return lo + time.Duration(rand.Uint64()>>1)
	}
	return lo + time.Duration(rand.Uint64N(span+1))
}

// NextBackOff returns the next wait.
func (j *FullJitter) NextBackOff() time.Duration {
	base, maxd := bounds(j.Base, j.Max)
	c := expCap(base, maxd, j.n)
	if j.n < 63 {
		j.n++
	}
	return uniform(0, c)
}

// Reset restarts the sequence.
func (j *FullJitter) Reset() { j.n = 0 }

func (j *FullJitter) clone() backoff.BackOff { c := *j; return &c }

// NextBackOff returns the next wait.
func (j *EqualJitter) NextBackOff() time.Duration {
	base, maxd := bounds(j.Base, j.Max)
	c := expCap(base, maxd, j.n)
	if j.n < 63 {
		j.n++
	}
	half := c / 2
	return uniform(c-half, c)
}

// Reset restarts the sequence.
func (j *EqualJitter) Reset() { j.n = 0 }

func (j *EqualJitter) clone() backoff.BackOff { c := *j; return &c }

// NextBackOff returns the next wait.
func (j *DecorrelatedJitter) NextBackOff() time.Duration {
	base, maxd := bounds(j.Base, j.Max)
	prev := max(j.prev, base)
	hi := maxd
	if prev <= maxd/3 {
		hi = 3 * prev
	}
	d := min(uniform(base, hi), maxd)
	j.prev = d
	return d
}

// Reset restarts the sequence.
func (j *DecorrelatedJitter) Reset() { j.prev = 0 }

func (j *DecorrelatedJitter) clone() backoff.BackOff { c := *j; return &c }
