package snap

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader parses arbitrary bytes as a snapshot file. It must return
// errors, never panic, and whatever reads without error must carry a
// matching checksum.
func FuzzReader(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	for i, data := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{7}, 5000)} {
		w, err := s.Create(meta(uint64(i+1), 1, 1, 2, 3))
		if err != nil {
			f.Fatal(err)
		}
		w.Write(data)
		if err := w.Commit(); err != nil {
			f.Fatal(err)
		}
		raw, err := readRaw(dir, uint64(i+1), 1)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		flipped := bytes.Clone(raw)
		flipped[len(flipped)/2] ^= 1
		f.Add(flipped)
	}
	f.Add([]byte(headMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		m, sec, err := parseFile(r, int64(len(b)))
		if err != nil {
			return
		}
		if m == nil {
			t.Fatal("nil metadata without error")
		}
		rd := &reader{r: sec, want: sec.wantCRC, name: "fuzz"}
		data, err := io.ReadAll(rd)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if int64(len(data)) != sec.Size() {
			t.Fatalf("read %d bytes of %d", len(data), sec.Size())
		}
	})
}
