package clock

import (
	"errors"
	"strings"

	"github.com/distkit/distkit/internal/wire"
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

// MaxCounter is the largest counter a decoder accepts in a [Vector] or
// [CausalContext]. No honest replica issues 2^63 events; the bound keeps a
// hostile encoding from pushing a counter to where Tick or Next would wrap.
const MaxCounter = 1<<63 - 1

// entries reads a sorted list of (id, counter) pairs with non-zero counters.
func entries(d *wire.Decoder) []entry {
	n := d.Count(2)
	if d.Err() != nil || n == 0 {
		return nil
	}
	e := make([]entry, 0, n)
	for k := 0; k < n && d.Err() == nil; k++ {
		id, c := d.String(), d.Uvarint()
		switch {
		case d.Err() != nil:
		case c == 0:
			d.Fail("zero counter for %q", id)
		case c > MaxCounter:
			d.Fail("counter of %q above MaxCounter", id)
		case k > 0 && strings.Compare(e[k-1].id, id) >= 0:
			d.Fail("replica ids out of order or repeated at %q", id)
		default:
			e = append(e, entry{id, c})
		}
	}
	return e
}
