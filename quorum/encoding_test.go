package quorum_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distkit/distkit/quorum"
	"pgregory.net/rapid"
)

func appendString(b []byte, s string) []byte { return append(b, s...) }
func decodeString(b []byte) (string, error)  { return string(b), nil }

func TestObjectBinaryRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		for _, o := range genObjects(t) {
			b, err := o.Encode(nil, appendString)
			if err != nil {
				t.Fatal(err)
			}
			back, err := quorum.DecodeObject(b, decodeString)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if back.Digest() != o.Digest() || !equalStrings(back.Values(), o.Values()) {
				t.Fatalf("round trip: %+v != %+v", back, o)
			}
			b2, _ := back.Encode(nil, appendString)
			if !bytes.Equal(b, b2) {
				t.Fatal("re-encoding differs")
			}
			// Every strict prefix is rejected.
			for i := range b {
				if _, err := quorum.DecodeObject(b[:i], decodeString); !errors.Is(err, quorum.ErrMalformed) {
					t.Fatalf("prefix of %d bytes: %v", i, err)
				}
			}
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeObjectRejects(t *testing.T) {
	var o quorum.Object[string]
	o = o.Update("r", quorum.Write[string]{Value: "v"})
	good, _ := o.Encode(nil, appendString)
	for name, b := range map[string][]byte{
		"empty":           {},
		"version":         append([]byte{2}, good[1:]...),
		"trailing":        append(append([]byte{}, good...), 0),
		"huge count":      {1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"overlong varint": {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := quorum.DecodeObject(b, decodeString); !errors.Is(err, quorum.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	valueErr := errors.New("bad value")
	if _, err := quorum.DecodeObject(good, func([]byte) (string, error) { return "", valueErr }); !errors.Is(err, quorum.ErrMalformed) {
		t.Errorf("value decoder error: %v", err)
	}
}

func FuzzDecodeObject(f *testing.F) {
	var o quorum.Object[string]
	o = o.Update("r1", quorum.Write[string]{Value: "a"}).Merge(o.Update("r2", quorum.Write[string]{Value: "b"}))
	d := o.Update("r1", quorum.Write[string]{Context: o.Context, Delete: true})
	for _, x := range []quorum.Object[string]{{}, o, d} {
		b, _ := x.Encode(nil, appendString)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := quorum.DecodeObject(b, decodeString)
		if err != nil {
			if !errors.Is(err, quorum.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("accepted invalid object: %v", err)
		}
		again, err := o.Encode(nil, appendString)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding %x (canonical %x)", b, again)
		}
	})
}
