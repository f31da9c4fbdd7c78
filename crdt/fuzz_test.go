package crdt

import (
	"bytes"
	"errors"
	"testing"

	"pgregory.net/rapid"
)

// seeds returns encodings of states and deltas from random histories of s,
// plus a few hand-made malformed inputs.
func seeds[T crdtLike[T]](f *testing.F, s subject[T]) {
	gen := rapid.Custom(func(t *rapid.T) [][]byte {
		reps, deltas := history(t, s)
		var out [][]byte
		for _, x := range append(reps, deltas...) {
			b, _ := x.MarshalBinary()
			out = append(out, b)
		}
		return out
	})
	for i := range 4 {
		for _, b := range gen.Example(i) {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{formatVersion})
	f.Add([]byte{formatVersion, 0xff})
	f.Add([]byte{formatVersion, tagORSet, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
}

// fuzzDecode checks that decoding arbitrary bytes never panics, fails only
// with ErrMalformed, accepts only canonical encodings, and that accepted
// states behave as states: merge is idempotent and encodes deterministically.
func fuzzDecode[T crdtLike[T]](f *testing.F, s subject[T]) {
	seeds(f, s)
	f.Fuzz(func(t *testing.T, data []byte) {
		x := s.empty()
		if err := x.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again := mustEncode(t, x)
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input %x (re-encodes as %x)", data, again)
		}
		sameState(t, "self merge", merged(x, x.Clone()), x)
		sameState(t, "merge into empty", merged(s.empty(), x), x)
		// A replica that merged decoded state can still write, and the
		// result is still a valid state.
		w := rapid.Custom(func(t *rapid.T) T {
			w := s.new("w")
			w.Merge(x)
			s.op(t, w)
			return w
		}).Example(0)
		back := s.empty()
		if err := back.UnmarshalBinary(mustEncode(t, w)); err != nil {
			t.Fatalf("state after a write on decoded input does not decode: %v", err)
		}
	})
}

func FuzzGCounterUnmarshalBinary(f *testing.F)    { fuzzDecode(f, gcounterSubject) }
func FuzzPNCounterUnmarshalBinary(f *testing.F)   { fuzzDecode(f, pncounterSubject) }
func FuzzGSetUnmarshalBinary(f *testing.F)        { fuzzDecode(f, gsetSubject) }
func FuzzORSetUnmarshalBinary(f *testing.F)       { fuzzDecode(f, orsetSubject) }
func FuzzLWWRegisterUnmarshalBinary(f *testing.F) { fuzzDecode(f, lwwSubject) }
func FuzzMVRegisterUnmarshalBinary(f *testing.F)  { fuzzDecode(f, mvSubject) }
func FuzzCCounterUnmarshalBinary(f *testing.F)    { fuzzDecode(f, ccounterSubject) }
func FuzzEWFlagUnmarshalBinary(f *testing.F)      { fuzzDecode(f, ewflagSubject) }
func FuzzORMapUnmarshalBinary(f *testing.F)       { fuzzDecode(f, ormapSetSubject) }
func FuzzORMapNestedUnmarshalBinary(f *testing.F) { fuzzDecode(f, ormapNestedSubject) }
