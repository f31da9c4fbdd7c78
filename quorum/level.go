package quorum

import (
	"fmt"
	"strconv"
)

// Level is a consistency level: how many of a key's replicas must answer a
// read, or acknowledge a write, for the request to succeed. The named levels
// are relative to the replication factor; any positive Level(k) asks for
// exactly k replicas (explicit R or W).
type Level int

// Consistency levels.
const (
	// All needs every replica of the key.
	All Level = -2
	// Quorum needs a majority: n/2+1 of n replicas.
	Quorum Level = -1
	// Default means the level configured on the Coordinator.
	Default Level = 0
	// One needs a single replica.
	One Level = 1
	// Two needs two replicas.
	Two Level = 2
	// Three needs three replicas.
	Three Level = 3
)

// Need returns how many of n replicas the level requires. It returns an
// error wrapping [ErrNeed] when the level cannot be met with n replicas
// (Level(k) with k > n, or n < 1) or is not a level at all.
func (l Level) Need(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("%w: no replicas", ErrNeed)
	}
	switch {
	case l == All:
		return n, nil
	case l == Quorum:
		return n/2 + 1, nil
	case l >= 1 && int(l) <= n:
		return int(l), nil
	}
	return 0, fmt.Errorf("%w: level %v with %d replicas", ErrNeed, l, n)
}

// String returns "ALL", "QUORUM", "DEFAULT", "ONE", "TWO", "THREE" or the
// number of replicas.
func (l Level) String() string {
	switch l {
	case All:
		return "ALL"
	case Quorum:
		return "QUORUM"
	case Default:
		return "DEFAULT"
	case One:
		return "ONE"
	case Two:
		return "TWO"
	case Three:
		return "THREE"
	}
	if l > 0 {
		return strconv.Itoa(int(l))
	}
	return "Level(" + strconv.Itoa(int(l)) + ")"
}

// ParseLevel parses a level as String prints it (case-insensitive) or as a
// positive number of replicas.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "all", "ALL", "All":
		return All, nil
	case "quorum", "QUORUM", "Quorum":
		return Quorum, nil
	case "", "default", "DEFAULT", "Default":
		return Default, nil
	case "one", "ONE", "One":
		return One, nil
	case "two", "TWO", "Two":
		return Two, nil
	case "three", "THREE", "Three":
		return Three, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: level %q", ErrNeed, s)
	}
	return Level(n), nil
}
