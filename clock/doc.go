// Package clock provides logical and physical time for distributed systems:
// Lamport clocks, version vectors and hybrid logical clocks (HLC), plus an
// injectable physical [Clock] so that code which waits can be tested without
// sleeping.
package clock
