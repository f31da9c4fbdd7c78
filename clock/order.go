package clock

import "strconv"

// Order is the causal relation between two clocks.
type Order int8

// The four possible relations between version vectors a and b, as returned by
// a.Compare(b).
const (
	// Equal: a and b record the same events.
	Equal Order = iota
	// Before: a happened before b (b has seen everything a has, and more).
	Before
	// After: a happened after b (a has seen everything b has, and more).
	After
	// Concurrent: each has seen events the other has not.
	Concurrent
)

// String returns the name of the relation: "Equal", "Before", "After" or
// "Concurrent".
func (o Order) String() string {
	switch o {
	case Equal:
		return "Equal"
	case Before:
		return "Before"
	case After:
		return "After"
	case Concurrent:
		return "Concurrent"
	}
	return "Order(" + strconv.Itoa(int(o)) + ")"
}
