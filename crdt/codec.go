package crdt

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
)

// Errors returned by this package. Test for them with [errors.Is].
var (
	// ErrMalformed is wrapped by every error that rejects an encoding.
	ErrMalformed = errors.New("crdt: malformed encoding")
	// ErrNoCodec is returned when a value must be encoded or decoded but its
	// element type is neither a basic kind nor a binary marshaler and no
	// [Codec] was set.
	ErrNoCodec = errors.New("crdt: no codec for element type")
)

// Codec encodes the elements (or values, or keys) of a CRDT whose type the
// package cannot encode by itself. Append must be deterministic: equal
// elements must encode to equal bytes, and Decode must accept what Append
// produced and return an error for anything it cannot decode. The bytes
// Decode receives are exactly those one Append call wrote; framing is done
// by the container.
//
// Types of basic kinds (strings, booleans, integers, floats, byte slices,
// and named types with those underlying kinds) and types E for which E
// implements [encoding.BinaryMarshaler] and *E implements
// [encoding.BinaryUnmarshaler] need no Codec.
type Codec[E any] interface {
	Append(b []byte, e E) ([]byte, error)
	Decode(data []byte) (E, error)
}

// funcCodec adapts two functions to Codec.
type funcCodec[E any] struct {
	app func([]byte, E) ([]byte, error)
	dec func([]byte) (E, error)
}

func (c funcCodec[E]) Append(b []byte, e E) ([]byte, error) { return c.app(b, e) }
func (c funcCodec[E]) Decode(data []byte) (E, error)        { return c.dec(data) }

func errBadLen(what string, n, want int) error {
	return fmt.Errorf("%w: %s: %d bytes, want %d", ErrMalformed, what, n, want)
}

// builtinCodec returns the codec this package provides for E, or nil.
func builtinCodec[E any]() Codec[E] {
	var zero E
	switch any(zero).(type) {
	case string:
		return any(funcCodec[string]{
			app: func(b []byte, s string) ([]byte, error) { return append(b, s...), nil },
			dec: func(d []byte) (string, error) { return string(d), nil },
		}).(Codec[E])
	case []byte:
		return any(funcCodec[[]byte]{
			app: func(b []byte, s []byte) ([]byte, error) { return append(b, s...), nil },
			dec: func(d []byte) ([]byte, error) { return bytes.Clone(d), nil },
		}).(Codec[E])
	case int64:
		return any(funcCodec[int64]{app: appendInt64, dec: decodeInt64}).(Codec[E])
	case uint64:
		return any(funcCodec[uint64]{app: appendUint64, dec: decodeUint64}).(Codec[E])
	case int:
		return any(funcCodec[int]{
			app: func(b []byte, v int) ([]byte, error) { return appendInt64(b, int64(v)) },
			dec: func(d []byte) (int, error) {
				v, err := decodeInt64(d)
				if err == nil && int64(int(v)) != v {
					return 0, fmt.Errorf("%w: int %d out of range", ErrMalformed, v)
				}
				return int(v), err
			},
		}).(Codec[E])
	}
	if _, ok := any(zero).(encoding.BinaryMarshaler); ok {
		if _, ok := any(&zero).(encoding.BinaryUnmarshaler); ok {
			return funcCodec[E]{
				app: func(b []byte, e E) ([]byte, error) {
					d, err := any(e).(encoding.BinaryMarshaler).MarshalBinary()
					return append(b, d...), err
				},
				dec: func(d []byte) (E, error) {
					var e E
					err := any(&e).(encoding.BinaryUnmarshaler).UnmarshalBinary(d)
					return e, err
				},
			}
		}
	}
	return reflectCodec[E]()
}

// reflectCodec covers every basic kind, including named types.
func reflectCodec[E any]() Codec[E] {
	t := reflect.TypeFor[E]()
	k := t.Kind()
	switch {
	case k == reflect.String:
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) { return append(b, reflect.ValueOf(e).String()...), nil },
			dec: func(d []byte) (E, error) {
				var e E
				reflect.ValueOf(&e).Elem().SetString(string(d))
				return e, nil
			},
		}
	case k == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) { return append(b, reflect.ValueOf(e).Bytes()...), nil },
			dec: func(d []byte) (E, error) {
				var e E
				reflect.ValueOf(&e).Elem().SetBytes(bytes.Clone(d))
				return e, nil
			},
		}
	case k == reflect.Bool:
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) {
				if reflect.ValueOf(e).Bool() {
					return append(b, 1), nil
				}
				return append(b, 0), nil
			},
			dec: func(d []byte) (E, error) {
				var e E
				if len(d) != 1 || d[0] > 1 {
					return e, fmt.Errorf("%w: bool: bad encoding %x", ErrMalformed, d)
				}
				reflect.ValueOf(&e).Elem().SetBool(d[0] == 1)
				return e, nil
			},
		}
	case k >= reflect.Int && k <= reflect.Int64:
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) { return appendInt64(b, reflect.ValueOf(e).Int()) },
			dec: func(d []byte) (E, error) {
				var e E
				v, err := decodeInt64(d)
				if err != nil {
					return e, err
				}
				rv := reflect.ValueOf(&e).Elem()
				if rv.OverflowInt(v) {
					return e, fmt.Errorf("%w: %v: %d out of range", ErrMalformed, t, v)
				}
				rv.SetInt(v)
				return e, nil
			},
		}
	case k >= reflect.Uint && k <= reflect.Uintptr:
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) { return appendUint64(b, reflect.ValueOf(e).Uint()) },
			dec: func(d []byte) (E, error) {
				var e E
				v, err := decodeUint64(d)
				if err != nil {
					return e, err
				}
				rv := reflect.ValueOf(&e).Elem()
				if rv.OverflowUint(v) {
					return e, fmt.Errorf("%w: %v: %d out of range", ErrMalformed, t, v)
				}
				rv.SetUint(v)
				return e, nil
			},
		}
	case k == reflect.Float32 || k == reflect.Float64:
		size := int(t.Size())
		return funcCodec[E]{
			app: func(b []byte, e E) ([]byte, error) {
				f := reflect.ValueOf(e).Float()
				if size == 4 {
					return binary.BigEndian.AppendUint32(b, math.Float32bits(float32(f))), nil
				}
				return binary.BigEndian.AppendUint64(b, math.Float64bits(f)), nil
			},
			dec: func(d []byte) (E, error) {
				var e E
				if len(d) != size {
					return e, errBadLen("float", len(d), size)
				}
				f := math.Float64frombits(binary.BigEndian.Uint64(append(make([]byte, 8-size, 8), d...)))
				if size == 4 {
					f = float64(math.Float32frombits(binary.BigEndian.Uint32(d)))
				}
				reflect.ValueOf(&e).Elem().SetFloat(f)
				return e, nil
			},
		}
	}
	return nil
}

func appendUint64(b []byte, v uint64) ([]byte, error) { return binary.AppendUvarint(b, v), nil }

func appendInt64(b []byte, v int64) ([]byte, error) {
	return binary.AppendUvarint(b, uint64(v<<1)^uint64(v>>63)), nil
}

func decodeUint64(d []byte) (uint64, error) {
	v, n := binary.Uvarint(d)
	if n <= 0 || n != len(d) || (n > 1 && d[n-1] == 0) {
		return 0, fmt.Errorf("%w: integer: bad varint %x", ErrMalformed, d)
	}
	return v, nil
}

func decodeInt64(d []byte) (int64, error) {
	u, err := decodeUint64(d)
	return int64(u>>1) ^ -int64(u&1), err
}

// elemCodec resolves the codec of E: the user's, else the built-in one.
type elemCodec[E any] struct{ user Codec[E] }

func (c elemCodec[E]) get() (Codec[E], error) {
	if c.user != nil {
		return c.user, nil
	}
	if b := builtinCodec[E](); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("%w %v", ErrNoCodec, reflect.TypeFor[E]())
}

// sortElems sorts es in natural order when E is a predeclared ordered type,
// and otherwise by encoded bytes when a codec is known. With neither, the
// order is left as is.
func sortElems[E any](es []E, c elemCodec[E]) {
	switch s := any(es).(type) {
	case []string:
		slices.Sort(s)
	case []int:
		slices.Sort(s)
	case []int64:
		slices.Sort(s)
	case []int32:
		slices.Sort(s)
	case []uint64:
		slices.Sort(s)
	case []uint32:
		slices.Sort(s)
	case []uint:
		slices.Sort(s)
	case []float64:
		slices.Sort(s)
	case []bool:
		slices.SortFunc(s, func(a, b bool) int {
			if a == b {
				return 0
			} else if a {
				return 1
			}
			return -1
		})
	default:
		codec, err := c.get()
		if err != nil {
			return
		}
		type kv struct {
			k []byte
			e E
		}
		tmp := make([]kv, len(es))
		for i, e := range es {
			k, err := codec.Append(nil, e)
			if err != nil {
				return
			}
			tmp[i] = kv{k, e}
		}
		slices.SortFunc(tmp, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
		for i := range tmp {
			es[i] = tmp[i].e
		}
	}
}
