// Package wire reads and writes the canonical binary encodings shared by
// distkit's packages: minimal unsigned varints, length-prefixed byte strings,
// and element counts checked against the remaining input, so that a hostile
// count can never force a large allocation.
package wire

import (
	"encoding/binary"
	"fmt"
)

// AppendUvarint appends x as an unsigned varint.
func AppendUvarint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }

// AppendBytes appends p prefixed by its length.
func AppendBytes(b, p []byte) []byte {
	b = AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendString appends s prefixed by its length.
func AppendString(b []byte, s string) []byte {
	b = AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decoder reads a canonical encoding. The first error sticks: later reads
// return zero values, so a decoding function can read a whole structure and
// check Err once. Every error wraps the sentinel given to NewDecoder.
type Decoder struct {
	sentinel error
	what     string
	b        []byte
	err      error
}

// NewDecoder returns a Decoder over b whose errors wrap sentinel and name
// what is being decoded.
func NewDecoder(b []byte, sentinel error, what string) Decoder {
	return Decoder{sentinel: sentinel, what: what, b: b}
}

// Fail records a decoding error unless one is already recorded.
func (d *Decoder) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", d.sentinel, d.what, fmt.Sprintf(format, args...))
	}
}

// Wrap records err, wrapped, unless an error is already recorded.
func (d *Decoder) Wrap(err error) {
	if d.err == nil && err != nil {
		d.err = fmt.Errorf("%w: %s: %w", d.sentinel, d.what, err)
	}
}

// SetErr records err as it is, unless an error is already recorded: for
// failures that are not about the input (a missing codec, say).
func (d *Decoder) SetErr(err error) {
	if d.err == nil {
		d.err = err
	}
}

// What returns the name of what is being decoded.
func (d *Decoder) What() string { return d.what }

// Err returns the first error.
func (d *Decoder) Err() error { return d.err }

// Len returns the number of unread bytes.
func (d *Decoder) Len() int { return len(d.b) }

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.Fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// Version reads a leading version byte and fails unless it is want.
func (d *Decoder) Version(want byte) {
	if v := d.Byte(); d.err == nil && v != want {
		d.Fail("unknown version %d", v)
	}
}

// Uvarint reads a minimally encoded unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.Fail("truncated")
		return 0
	case n < 0:
		d.Fail("varint overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.Fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// Count reads a length or element count and rejects one that cannot fit in
// the remaining input at minSize bytes per element.
func (d *Decoder) Count(minSize int) int {
	n := d.Uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.Fail("count %d exceeds remaining input", n)
		return 0
	}
	return int(n)
}

// Next reads n raw bytes. The result aliases the input and has no spare
// capacity.
func (d *Decoder) Next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.Fail("truncated")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// Bytes reads a length-prefixed byte string. The result aliases the input
// and has no spare capacity.
func (d *Decoder) Bytes() []byte {
	n := d.Count(1)
	if d.err != nil {
		return nil
	}
	return d.Next(n)
}

// String reads a length-prefixed string.
func (d *Decoder) String() string { return string(d.Bytes()) }

// Finish returns the first error, or an error if input remains.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.Fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
