// Package crdt provides conflict-free replicated data types (CRDTs) in
// delta-state form: values that every replica may update without
// coordination and that converge to the same state once replicas have
// exchanged their updates, whatever the order, duplication or delay of that
// exchange.
//
// # Usage
//
// Each replica creates its value with its own replica id. Every mutator
// applies the change locally and returns a delta: a value of the same type
// holding only the change. Ship deltas (or, now and then, the full state) to
// the other replicas and Merge them there:
//
//	a := crdt.NewORSet[string]("node-a")
//	b := crdt.NewORSet[string]("node-b")
//	d := a.Add("x") // applied to a; d carries just the add
//	wire, _ := d.MarshalBinary()
//
//	var in crdt.ORSet[string]
//	_ = in.UnmarshalBinary(wire)
//	b.Merge(&in) // b now contains "x"
//
// Merge accepts a delta or a full state alike. Merging is commutative,
// associative and idempotent, so a delta may be delivered twice, late, or
// before an earlier one. Deltas can be joined with Merge before sending
// (batching), and a replica that missed deltas catches up by merging a full
// state.
//
// # Types
//
//	Type         For                                    Merge rule                                    Cost (state)
//	GCounter     counting up (views, events)            per-replica max                               O(replicas)
//	PNCounter    counting up and down                   GCounter pair: increments, decrements         O(replicas)
//	CCounter     counter that can be reset in ORMap     per-replica total under a dot; dots join      O(replicas)
//	GSet         grow-only set (seen ids)               union                                         O(elements)
//	ORSet        add/remove set, add wins               dots kept unless the other side removed them  O(live elements + context)
//	LWWRegister  single value, last write wins          higher (HLC timestamp, replica id)            O(1)
//	MVRegister   single value, keeps concurrent writes  writes kept unless superseded (siblings)      O(concurrent writes + context)
//	EWFlag       on/off switch, enable wins             dot set join                                  O(concurrent enables + context)
//	ORMap        map of nested CRDTs                    per-key nested join, one shared context       O(live keys + nested dots + context)
//
// Operation costs: counters and registers are O(replicas) or O(1) per
// operation. ORSet Add, Remove and Contains are O(1) expected. For ORSet and
// ORMap, merging a delta costs O(size of the delta), not of the receiving
// state (an index from dot to element or key, built on first use, finds what
// a delta removes); merging a full state costs O(size of both). Encoded
// deltas are tens of bytes: an ORSet Add of a small element is about 26
// bytes, a Remove about 18.
//
// # Causal types, dots and deltas
//
// ORSet, MVRegister, CCounter, EWFlag and ORMap are causal CRDTs: every write
// is tagged with a [clock.Dot] (replica id, counter), the state keeps the
// dots of live data only, and one [clock.CausalContext] records every dot
// the replica has seen. A remove simply forgets dots; the context remembers
// that they existed, so a late copy of removed data is recognised and
// dropped. Removed data therefore leaves no tombstone: after replicas have
// exchanged everything, the context is a version vector with one entry per
// replica that ever wrote. The context's dot cloud records dots that arrive
// out of order, so deltas need no causal delivery.
//
// # Replica ids
//
// Every writing replica needs its own id, and an id must never write again
// after its state was lost: restarting from an older state with the same id
// would reissue dots. Restore a replica only from its latest state, or give
// it a new id. Zero values, deltas and decoded values have replica id "" and
// are meant for merging and reading.
//
// # Encoding
//
// Every type implements [encoding.BinaryMarshaler] and
// [encoding.BinaryUnmarshaler]. Encodings are deterministic (equal states
// encode to equal bytes, replica ids are not encoded), start with a format
// version and a type tag, and decoders accept only canonical encodings of
// valid states, returning an error wrapping [ErrMalformed] otherwise.
// Elements, values and keys of basic kinds (strings, integers, floats,
// booleans, byte slices and named types of those kinds) and types that
// implement encoding.BinaryMarshaler need no setup; other types need a
// [Codec] set with SetCodec.
//
// # Shipping deltas
//
// A [DeltaLog] remembers a replica's deltas and, per peer, hands out the
// join of those the peer has not acknowledged (a delta interval), or tells
// the caller to send the full state when the peer is new or has fallen
// behind what the log keeps. Acknowledged deltas are dropped.
//
// # What it does not do
//
// The package holds values and deltas; it does not send them: transport,
// retries and membership are the caller's.
// Values are not safe for concurrent use: guard each with a mutex. Pruning
// of retired replica ids and sequence (text) CRDTs are not provided.
package crdt
