package clock

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: a wall time in Unix
// nanoseconds and a logical counter that orders events within one wall
// time. Timestamps compare by Wall, then Logical.
type Timestamp struct {
	Wall    int64  // Unix nanoseconds
	Logical uint32 // orders events that share a Wall value
}

// TimestampSize is the length of a Timestamp's binary encoding.
const TimestampSize = 12

// Compare returns -1 if t is before u, +1 if after, 0 if equal.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is before u.
func (t Timestamp) Less(u Timestamp) bool { return t.Compare(u) < 0 }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Next returns the smallest Timestamp after t. A Logical counter at its
// maximum carries into Wall.
func (t Timestamp) Next() Timestamp {
	if t.Logical == math.MaxUint32 {
		return Timestamp{Wall: t.Wall + 1}
	}
	return Timestamp{Wall: t.Wall, Logical: t.Logical + 1}
}

// Time returns the wall part of t as a time.Time.
func (t Timestamp) Time() time.Time { return time.Unix(0, t.Wall) }

// String formats t as the wall time in RFC 3339 with nanoseconds, a comma,
// and the logical counter.
func (t Timestamp) String() string {
	return t.Time().UTC().Format(time.RFC3339Nano) + "," + fmt.Sprint(t.Logical)
}

// AppendBinary appends the 12-byte encoding of t: Wall as a big-endian
// 64-bit integer with its sign bit flipped, then Logical big-endian. Byte-wise
// order of encodings equals time order, so encoded timestamps sort correctly
// as keys. It never returns an error.
func (t Timestamp) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Wall)^(1<<63))
	return binary.BigEndian.AppendUint32(b, t.Logical), nil
}

// MarshalBinary returns the 12-byte encoding described at AppendBinary.
func (t Timestamp) MarshalBinary() ([]byte, error) {
	return t.AppendBinary(make([]byte, 0, TimestampSize))
}

// UnmarshalBinary sets t from exactly 12 bytes produced by MarshalBinary.
func (t *Timestamp) UnmarshalBinary(data []byte) error {
	if len(data) != TimestampSize {
		return fmt.Errorf("%w: timestamp: %d bytes, want %d", ErrMalformed, len(data), TimestampSize)
	}
	t.Wall = int64(binary.BigEndian.Uint64(data) ^ (1 << 63))
	t.Logical = binary.BigEndian.Uint32(data[8:])
	return nil
}

// HLC is a hybrid logical clock (Kulkarni et al., 2014). Its timestamps stay
// close to physical time yet respect causality: a timestamp taken after
// receiving a message is greater than the message's timestamp, even when the
// sender's physical clock runs ahead. It never goes backwards, even when the
// physical clock does.
//
// HLC is safe for concurrent use. Make one with [NewHLC].
type HLC struct {
	phys      func() int64
	maxOffset int64 // nanoseconds; 0 = unchecked

	mu   sync.Mutex
	last Timestamp
}

// HLCOption configures an [HLC].
type HLCOption func(*HLC)

// WithPhysicalClock sets the physical time source, in Unix nanoseconds. The
// default is time.Now().UnixNano. [MonotonicWallClock] is a cheaper source.
func WithPhysicalClock(now func() int64) HLCOption {
	return func(c *HLC) {
		if now != nil {
			c.phys = now
		}
	}
}

// WithMaxOffset makes Update reject remote timestamps more than d ahead of
// the local physical clock with [ErrClockOffset]. Zero, the default, accepts
// any remote timestamp.
func WithMaxOffset(d time.Duration) HLCOption {
	return func(c *HLC) { c.maxOffset = max(int64(d), 0) }
}

// WithFloor makes every timestamp the clock returns greater than ts. A
// process that persists an upper bound of the timestamps it issued passes it
// here on restart, so its clock stays monotonic across restarts even if the
// physical clock went back while it was down.
func WithFloor(ts Timestamp) HLCOption {
	return func(c *HLC) { c.last = ts }
}

// NewHLC returns a hybrid logical clock.
func NewHLC(opts ...HLCOption) *HLC {
	c := &HLC{phys: wallNow}
	for _, o := range opts {
		o(c)
	}
	return c
}

func wallNow() int64 { return time.Now().UnixNano() }

// MonotonicWallClock returns a physical time source for [WithPhysicalClock]
// that reads the wall clock once and then advances it by the monotonic
// clock. It costs about half as much as time.Now and ignores steps of the
// system's wall clock made after it was created (it still follows the slow
// rate corrections NTP applies), so over a long run it may drift from clocks
// that were stepped.
func MonotonicWallClock() func() int64 {
	start := time.Now()
	wall0 := start.UnixNano()
	return func() int64 { return wall0 + int64(time.Since(start)) }
}

// Now returns a timestamp for a local or send event: strictly greater than
// every timestamp this clock returned or saw before, and at least the current
// physical time.
func (c *HLC) Now() Timestamp {
	pt := c.phys()
	c.mu.Lock()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else {
		c.last = c.last.Next()
	}
	ts := c.last
	c.mu.Unlock()
	return ts
}

// Update records the receipt of a message stamped remote and returns a
// timestamp for the receive event: strictly greater than remote and than
// every timestamp this clock returned or saw before.
//
// If a maximum offset is set and remote.Wall is more than that ahead of the
// physical clock, Update returns an error wrapping [ErrClockOffset] and leaves
// the clock unchanged.
func (c *HLC) Update(remote Timestamp) (Timestamp, error) {
	pt := c.phys()
	if c.maxOffset > 0 && remote.Wall > pt && remote.Wall-pt > c.maxOffset {
		return Timestamp{}, fmt.Errorf("%w: remote wall %d is %v ahead of local physical time (max %v)",
			ErrClockOffset, remote.Wall, time.Duration(remote.Wall-pt), time.Duration(c.maxOffset))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	local := c.last
	switch wall := max(local.Wall, remote.Wall, pt); {
	case wall == local.Wall && wall == remote.Wall:
		c.last = Timestamp{Wall: wall, Logical: max(local.Logical, remote.Logical)}.Next()
	case wall == local.Wall:
		c.last = local.Next()
	case wall == remote.Wall:
		c.last = remote.Next()
	default:
		c.last = Timestamp{Wall: wall}
	}
	return c.last, nil
}

// Last returns the latest timestamp the clock returned or saw, without
// advancing it.
func (c *HLC) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
