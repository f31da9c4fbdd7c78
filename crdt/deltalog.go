package crdt

// Delta is the method set a [DeltaLog] needs from the values it stores:
// every type of this package satisfies it (with T its pointer type).
type Delta[T any] interface {
	Merge(T)
	Clone() T
}

// DeltaLog keeps the deltas a replica produced so it can send each peer
// the join of the deltas that peer has not acknowledged yet (a
// delta-interval), instead of its full state. Deltas every known peer has
// acknowledged are dropped; when the log exceeds its limit the oldest
// deltas are dropped too, and a peer that still needed them is told to
// fetch full state instead.
//
// Sequence numbers start at 1 and are local to the log. A DeltaLog is not
// safe for concurrent use. The zero value is not usable; make one with
// [NewDeltaLog].
type DeltaLog[T Delta[T]] struct {
	first   uint64 // sequence number of entries[0]
	entries []T
	acked   map[string]uint64
	max     int
}

// DefaultDeltaLogSize is the number of deltas a [DeltaLog] keeps when
// NewDeltaLog is given a non-positive limit.
const DefaultDeltaLogSize = 1024

// NewDeltaLog returns an empty log that keeps at most maxEntries deltas
// (DefaultDeltaLogSize if maxEntries <= 0).
func NewDeltaLog[T Delta[T]](maxEntries int) *DeltaLog[T] {
	if maxEntries <= 0 {
		maxEntries = DefaultDeltaLogSize
	}
	return &DeltaLog[T]{first: 1, acked: map[string]uint64{}, max: maxEntries}
}

// Append records d, which the log owns from now on, and returns its
// sequence number.
func (l *DeltaLog[T]) Append(d T) uint64 {
	l.entries = append(l.entries, d)
	if len(l.entries) > l.max {
		n := len(l.entries) - l.max
		clear(l.entries[:n])
		l.entries = l.entries[n:]
		l.first += uint64(n)
	}
	return l.last()
}

// last returns the sequence number of the newest delta (first-1 if none).
func (l *DeltaLog[T]) last() uint64 { return l.first + uint64(len(l.entries)) - 1 }

// AddPeer starts tracking peer, which holds every delta up to and including
// sequence number upTo (0: none). Deltas are kept only while a known peer
// may still need them.
func (l *DeltaLog[T]) AddPeer(peer string, upTo uint64) {
	l.acked[peer] = min(upTo, l.last())
	l.truncate()
}

// RemovePeer stops tracking peer, so deltas are no longer kept for it. An
// acknowledgement from it that arrives later makes it known again.
func (l *DeltaLog[T]) RemovePeer(peer string) {
	delete(l.acked, peer)
	l.truncate()
}

// Last returns the sequence number of the newest delta appended (0 if
// none).
func (l *DeltaLog[T]) Last() uint64 { return l.last() }

// Len returns the number of deltas held.
func (l *DeltaLog[T]) Len() int { return len(l.entries) }

// Since returns the join of the deltas peer has not acknowledged and the
// sequence number of the newest one, to pass to [DeltaLog.Ack] once the peer
// confirms receipt. pending is false when there is nothing to send. full is
// true when the peer is unknown or needs deltas the log no longer holds:
// send it the full state instead, and Ack upTo when it confirms.
func (l *DeltaLog[T]) Since(peer string) (d T, upTo uint64, pending, full bool) {
	acked, ok := l.acked[peer]
	if !ok || acked+1 < l.first {
		return d, l.last(), false, true
	}
	if acked >= l.last() {
		return d, acked, false, false
	}
	rest := l.entries[acked+1-l.first:]
	d = rest[0].Clone()
	for _, e := range rest[1:] {
		d.Merge(e)
	}
	return d, l.last(), true, false
}

// Ack records that peer holds every delta up to and including upTo (an
// unknown peer becomes known), and drops the deltas every known peer now
// holds. Acknowledgements that arrive late, twice or out of order are
// harmless.
func (l *DeltaLog[T]) Ack(peer string, upTo uint64) {
	if cur, ok := l.acked[peer]; !ok || upTo > cur {
		l.acked[peer] = min(upTo, l.last())
		l.truncate()
	}
}

// truncate drops the deltas every known peer has acknowledged.
func (l *DeltaLog[T]) truncate() {
	if len(l.acked) == 0 {
		return
	}
	low := l.last()
	for _, a := range l.acked {
		low = min(low, a)
	}
	if low >= l.first {
		n := int(low - l.first + 1)
		clear(l.entries[:n])
		l.entries = l.entries[n:]
		l.first = low + 1
	}
}
