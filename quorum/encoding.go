package quorum

import (
	"encoding/binary"
	"fmt"

	"github.com/distkit/distkit/internal/wire"
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
	d := wire.NewDecoder(b, ErrMalformed, "object")
	d.Version(objectVersion)
	if err := d.Err(); err != nil {
		return Object[V]{}, err
	}
	var o Object[V]
	if ctx := d.Bytes(); d.Err() == nil {
		if err := o.Context.UnmarshalBinary(ctx); err != nil {
			return Object[V]{}, fmt.Errorf("%w: object context: %w", ErrMalformed, err)
		}
	}
	// Every sibling takes at least 3 bytes, which bounds the count.
	n := d.Count(3)
	if d.Err() == nil && n > 0 {
		o.Siblings = make([]Sibling[V], 0, n)
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		var s Sibling[V]
		s.Dot.Replica = string(d.Bytes())
		s.Dot.Counter = d.Uvarint()
		switch f := d.Byte(); {
		case d.Err() != nil:
		case f == 1:
			s.Deleted = true
		case f == 0:
			raw := d.Bytes()
			if d.Err() == nil {
				v, err := decodeValue(raw)
				if err != nil {
					d.Wrap(fmt.Errorf("sibling %d value: %w", i, err))
				}
				s.Value = v
			}
		default:
			d.Fail("sibling %d: unknown flag %d", i, f)
		}
		o.Siblings = append(o.Siblings, s)
	}
	if err := d.Finish(); err != nil {
		return Object[V]{}, err
	}
	if err := o.Validate(); err != nil {
		return Object[V]{}, err
	}
	return o, nil
}
