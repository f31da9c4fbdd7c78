// Package clock orders events in a distributed system: Lamport clocks,
// version vectors, causal contexts of dots, and hybrid logical clocks (HLC),
// plus an injectable physical [Clock] so that code which waits can be tested
// without sleeping.
//
// # Which clock
//
//   - [Lamport]: one counter. If a happened before b then a's value is less
//     than b's; the converse does not hold, so it cannot tell concurrent
//     events apart. Use it for cheap total orders (with a replica id as the
//     tie-break).
//   - [Vector]: one counter per replica. [Vector.Compare] tells whether two
//     histories are Equal, one is Before or After the other, or they are
//     Concurrent: the basis for detecting conflicting writes.
//   - [CausalContext]: the set of [Dot]s (replica, counter) a replica has seen,
//     kept as a vector plus the dots that arrived out of order. Delta-state
//     CRDTs use it to merge deltas in any order without tombstones.
//   - [HLC]: timestamps close to physical time that still respect causality
//     and never go backwards. Use it for last-writer-wins registers,
//     snapshot reads at a time, and time-ordered keys ([Timestamp]'s binary
//     encoding sorts in time order).
//
// # Example
//
//	hlc := clock.NewHLC(clock.WithMaxOffset(500 * time.Millisecond))
//	ts := hlc.Now()                  // stamp an outgoing message
//	recv, err := hlc.Update(remote)  // on receipt: recv > remote and > ts
//	if errors.Is(err, clock.ErrClockOffset) {
//		// the sender's clock is too far ahead: reject its message
//	}
//
// # Guarantees
//
// [Lamport] and [HLC] are safe for concurrent use; [Vector] and
// [CausalContext] are values that are not safe for concurrent mutation.
// HLC.Now returns strictly increasing timestamps even when the physical clock
// steps backwards, and HLC.Update returns a timestamp greater than both the
// remote one and every earlier local one, or fails with [ErrClockOffset]
// and leaves the clock unchanged. A logical counter at its maximum carries
// into the wall time rather than wrapping.
//
// Every binary encoding is deterministic (equal values, equal bytes) and
// versioned, and every decoder accepts only the canonical encoding: any other
// input is an error wrapping [ErrMalformed], never a panic.
//
// # What it does not do
//
// The HLC does not synchronise physical clocks; it bounds the damage a bad
// one can do (WithMaxOffset) and survives restarts only if the caller
// persists a bound and passes it to [WithFloor]. Version vectors grow with
// the number of replicas that ever wrote; retiring replica ids is up to the
// caller.
package clock
