package quorum

import (
	"encoding/binary"
	"fmt"
)

// objectVersion is the first byte of an Object's binary encoding.
const objectVersion = 1

// Encode appends the binary encoding of o to b, using appendValue to
// encode each live sibling's value. The encoding is deterministic (equal
// objects give equal bytes) and versioned:
//
//	version byte (1)
//	uvarint length, clock.Vector binary encoding    the context
//	uvarint sibling count, then per sibling:
//	  uvarint length, replica bytes; uvarint counter
//	  flag byte: 0 live, 1 deleted
//	  live only: uvarint length, value bytes
func (o Object[V]) Encode(b []byte, appendValue func([]byte, V) []byte) ([]byte, error) {
	ctx, err := o.Context.MarshalBinary()
	if err != nil {
		return b, err
	}
	b = append(b, objectVersion)
	b = binary.AppendUvarint(b, uint64(len(ctx)))
	b = append(b, ctx...)
	b = binary.AppendUvarint(b, uint64(len(o.Siblings)))
	var scratch []byte
	for _, s := range o.Siblings {
		b = binary.AppendUvarint(b, uint64(len(s.Dot.Replica)))
		b = append(b, s.Dot.Replica...)
		b = binary.AppendUvarint(b, s.Dot.Counter)
		if s.Deleted {
			b = append(b, 1)
			continue
		}
		b = append(b, 0)
		scratch = appendValue(scratch[:0], s.Value)
		b = binary.AppendUvarint(b, uint64(len(scratch)))
		b = append(b, scratch...)
	}
	return b, nil
}

// DecodeObject decodes an encoding made by [Object.Encode], using
// decodeValue to decode each value from exactly its bytes. It rejects
// truncated or trailing bytes, unknown versions, non-minimal varints,
// lengths beyond the input and objects that fail [Object.Validate], with errors wrapping
// [ErrMalformed]; it never allocates more than the input's size implies.
func DecodeObject[V any](b []byte, decodeValue func([]byte) (V, error)) (Object[V], error) {
	d := objDecoder{b: b}
	if v := d.byte(); d.err == nil && v != objectVersion {
		return Object[V]{}, fmt.Errorf("%w: object: unknown version %d", ErrMalformed, v)
	}
	var o Object[V]
	if ctx := d.bytes(); d.err == nil {
		if err := o.Context.UnmarshalBinary(ctx); err != nil {
			return Object[V]{}, fmt.Errorf("%w: object context: %w", ErrMalformed, err)
		}
	}
	// Every sibling takes at least 3 bytes, which bounds the count.
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b))/3 {
		d.fail("sibling count %d exceeds input", n)
	}
	if d.err == nil && n > 0 {
		o.Siblings = make([]Sibling[V], 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var s Sibling[V]
		s.Dot.Replica = string(d.bytes())
		s.Dot.Counter = d.uvarint()
		switch f := d.byte(); {
		case d.err != nil:
		case f == 1:
			s.Deleted = true
		case f == 0:
			raw := d.bytes()
			if d.err == nil {
				v, err := decodeValue(raw)
				if err != nil {
					d.fail("sibling %d value: %v", i, err)
				}
				s.Value = v
			}
		default:
			d.fail("sibling %d: unknown flag %d", i, f)
		}
		o.Siblings = append(o.Siblings, s)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Object[V]{}, d.err
	}
	if err := o.Validate(); err != nil {
		return Object[V]{}, err
	}
	return o, nil
}

type objDecoder struct {
	b   []byte
	err error
}

func (d *objDecoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: object: "+format, append([]any{ErrMalformed}, a...)...)
	}
}

func (d *objDecoder) byte() byte {
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

func (d *objDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *objDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds input", n)
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}
