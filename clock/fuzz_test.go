package clock_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/distkit/distkit/clock"
)

// Every decoder accepts only canonical input: whatever it accepts must
// re-encode to the same bytes, and whatever it rejects is ErrMalformed.

func FuzzVectorUnmarshalBinary(f *testing.F) {
	for _, v := range []clock.Vector{vec(), vec("a", 1), vec("a", 1, "b", 300, "ccc", 1<<40)} {
		b, _ := v.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 2, 1, 'b', 1, 1, 'a', 1})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v clock.Vector
		if err := v.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, clock.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, _ := v.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input %x (re-encodes as %x)", data, again)
		}
	})
}

func FuzzVectorUnmarshalJSON(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":2}`))
	f.Add([]byte(`{"a":0}`))
	f.Add([]byte(`{"a":1,"a":1}`))
	f.Add([]byte(`{"\u00e9":18446744073709551615}`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v clock.Vector
		if err := v.UnmarshalJSON(data); err != nil {
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("MarshalJSON of decoded %v: %v", v, err)
		}
		var w clock.Vector
		if err := json.Unmarshal(out, &w); err != nil || w.Compare(v) != clock.Equal {
			t.Fatalf("JSON round trip of %v via %s: %v, %v", v, out, w, err)
		}
	})
}

func FuzzTimestampUnmarshalBinary(f *testing.F) {
	b, _ := ts(1700000000000000000, 42).MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var x clock.Timestamp
		if err := x.UnmarshalBinary(data); err != nil {
			if len(data) == clock.TimestampSize || !errors.Is(err, clock.ErrMalformed) {
				t.Fatalf("UnmarshalBinary(%x): %v", data, err)
			}
			return
		}
		again, _ := x.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("round trip %x -> %x", data, again)
		}
	})
}

func FuzzCausalContextUnmarshalBinary(f *testing.F) {
	var c clock.CausalContext
	c.Add(clock.Dot{Replica: "a", Counter: 1})
	c.Add(clock.Dot{Replica: "a", Counter: 3})
	c.Add(clock.Dot{Replica: "b", Counter: 7})
	for _, x := range []clock.CausalContext{{}, c} {
		b, _ := x.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 1, 1, 'a', 3, 1, 1, 'a', 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		var c clock.CausalContext
		if err := c.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, clock.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, _ := c.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input %x (re-encodes as %x)", data, again)
		}
	})
}
