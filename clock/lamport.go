package clock

import "sync/atomic"

// Lamport is a Lamport logical clock: a counter that every local event
// advances and every received message pushes past the sender's value, so that
// if event a happened before event b, a's value is less than b's.
//
// The zero value is a clock at 0, ready to use. Lamport is safe for
// concurrent use; it must not be copied after first use.
type Lamport struct {
	n atomic.Uint64
}

// Now returns the clock's current value without advancing it.
func (l *Lamport) Now() uint64 { return l.n.Load() }

// Tick records a local event: it adds one to the clock and returns the new
// value. Concurrent calls return distinct values.
func (l *Lamport) Tick() uint64 { return l.n.Add(1) }

// Witness records the receipt of a message stamped remote: it sets the clock
// to max(current, remote)+1 and returns the new value, which is greater than
// both remote and every value the clock returned before.
func (l *Lamport) Witness(remote uint64) uint64 {
	for {
		cur := l.n.Load()
		next := max(cur, remote) + 1
		if l.n.CompareAndSwap(cur, next) {
			return next
		}
	}
}
