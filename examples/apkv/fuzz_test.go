package main

import (
	"testing"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

func FuzzDecodeContext(f *testing.F) {
	var v clock.Vector
	v.Set("n1", 3)
	v.Set("n2", 1)
	s, _ := encodeContext(v)
	f.Add(s)
	f.Add("")
	f.Add("AQ")
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := decodeContext(s)
		if err != nil {
			return
		}
		back, err := encodeContext(v)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := decodeContext(back)
		if err != nil || v2.Compare(v) != clock.Equal {
			t.Fatalf("re-decoding %q: %v", back, err)
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	o := quorum.Object[string]{}.Update("n1", quorum.Write[string]{Value: "a"})
	o = o.Merge(quorum.Object[string]{}.Update("n2", quorum.Write[string]{Value: "b"}))
	b, _ := jsonMarshal(o)
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Context":{"n1":1},"Siblings":[{"Dot":{"Replica":"n1","Counter":2},"Value":"x"}]}`))
	f.Add([]byte(`{"Siblings":[{"Dot":{"Replica":"","Counter":0}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeObject(b)
		if err != nil {
			return
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("accepted an invalid object: %v", err)
		}
		// Accepted objects behave: merging is idempotent.
		if o.Merge(o).Digest() != o.Digest() {
			t.Fatal("merge of a decoded object with itself changed it")
		}
	})
}

func FuzzDecodeWrite(f *testing.F) {
	var v clock.Vector
	v.Set("n1", 2)
	b, _ := jsonMarshal(quorum.Write[string]{Context: v, Value: "x"})
	f.Add(b)
	f.Add([]byte(`{"Delete":true}`))
	f.Add([]byte(`{"Context":{"n1":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeWrite(b)
		if err != nil {
			return
		}
		// An accepted write applies cleanly to any object.
		o := quorum.Object[string]{}.Update("n9", w)
		if err := o.Validate(); err != nil {
			t.Fatalf("update with decoded write gave an invalid object: %v", err)
		}
	})
}
