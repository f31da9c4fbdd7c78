package clock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Errors returned by this package. Test for them with [errors.Is].
var (
	// ErrMalformed is wrapped by every decoding error.
	ErrMalformed = errors.New("clock: malformed encoding")
	// ErrClockOffset is returned by [HLC.Update] when a remote timestamp is
	// further ahead of the local physical clock than the configured maximum
	// offset.
	ErrClockOffset = errors.New("clock: remote clock offset exceeds maximum")
)

func appendUvarint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the canonical encodings of this package. The first error
// sticks; later reads return zero values.
type decoder struct {
	what string // the type being decoded, for messages
	b    []byte
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: "+format, append([]any{ErrMalformed, d.what}, args...)...)
	}
}

// version reads the leading version byte and fails unless it is want.
func (d *decoder) version(want byte) {
	if v := d.byte(); d.err == nil && v != want {
		d.fail("unknown version %d", v)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("truncated")
		return 0
	case n < 0:
		d.fail("varint overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// count reads a length or element count, rejecting values that cannot fit in
// the remaining input at minSize bytes each, so a hostile count cannot force a
// large allocation.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count %d exceeds remaining input", n)
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// entries reads a sorted list of (id, counter) pairs with non-zero counters.
func (d *decoder) entries() []entry {
	n := d.count(2)
	if d.err != nil || n == 0 {
		return nil
	}
	e := make([]entry, 0, n)
	for k := 0; k < n && d.err == nil; k++ {
		id, c := d.string(), d.uvarint()
		switch {
		case d.err != nil:
		case c == 0:
			d.fail("zero counter for %q", id)
		case k > 0 && strings.Compare(e[k-1].id, id) >= 0:
			d.fail("replica ids out of order or repeated at %q", id)
		default:
			e = append(e, entry{id, c})
		}
	}
	return e
}

// finish returns the first error, or an error if input remains.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
