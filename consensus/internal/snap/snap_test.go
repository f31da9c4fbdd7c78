package snap

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func meta(index, term uint64, voters ...uint64) *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(term), ConfState: &raftpb.ConfState{Voters: voters}}
}

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// write stores data as snapshot m, streaming it in chunks.
func write(t *testing.T, s *Store, m *raftpb.SnapshotMetadata, data []byte) {
	t.Helper()
	w, err := s.Create(m)
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(len(data), 1000+len(data)%777)
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readAll(s *Store, index uint64) (*raftpb.SnapshotMetadata, []byte, error) {
	m, rc, err := s.Open(index)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return m, b, err
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 300 << 10} {
		s, err := Open(t.TempDir(), Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		data := randomData(uint64(size), size)
		m := meta(uint64(size)+5, 3, 1, 2, 3)
		write(t, s, m, data)
		latest, ok, err := s.Latest()
		if err != nil || !ok || !proto.Equal(latest, m) {
			t.Fatalf("size %d: Latest() = %v, %v, %v; want %v", size, latest, ok, err, m)
		}
		got, b, err := readAll(s, m.GetIndex())
		if err != nil || !proto.Equal(got, m) || !bytes.Equal(b, data) {
			t.Fatalf("size %d: Open/read = %v, %d bytes, %v", size, got, len(b), err)
		}
		if err := s.Verify(m.GetIndex()); err != nil {
			t.Fatalf("size %d: Verify: %v", size, err)
		}
	}
}

func TestEmptyAndNotFound(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "a", "b"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok, err := s.Latest(); m != nil || ok || err != nil {
		t.Fatalf("Latest() on empty store = %v, %v, %v", m, ok, err)
	}
	write(t, s, meta(5, 1), []byte("x"))
	if _, _, err := s.Open(6); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(6) err = %v, want ErrNotFound", err)
	}
	if _, err := s.Create(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Create(nil) err = %v, want ErrInvalid", err)
	}
	if _, err := Open(t.TempDir(), Options{Retain: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open with Retain -1 err = %v, want ErrInvalid", err)
	}
}

func TestRetain(t *testing.T) {
	for _, retain := range []int{0, 1, 3} {
		dir := t.TempDir()
		s, err := Open(dir, Options{NoSync: true, Retain: retain})
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= 5; i++ {
			write(t, s, meta(i*10, i), []byte{byte(i)})
		}
		want := retain
		if want == 0 {
			want = DefaultRetain
		}
		got := files(t, dir)
		if len(got) != want {
			t.Fatalf("Retain %d: files %v, want %d", retain, got, want)
		}
		for i := 5; i > 5-want; i-- {
			if _, b, err := readAll(s, uint64(i*10)); err != nil || !bytes.Equal(b, []byte{byte(i)}) {
				t.Fatalf("Retain %d: snapshot %d: %v %v", retain, i*10, b, err)
			}
		}
	}
}

func TestWriterLifecycle(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(meta(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Latest(); ok {
		t.Fatal("uncommitted snapshot visible")
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files after Abort: %v", got)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrFinished) {
		t.Fatalf("Write after Abort err = %v, want ErrFinished", err)
	}
	if err := w.Commit(); !errors.Is(err, ErrFinished) {
		t.Fatalf("Commit after Abort err = %v, want ErrFinished", err)
	}

	w, _ = s.Create(meta(4, 1))
	w.Write([]byte("done"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v, want nil (no-op)", err)
	}
	if err := w.Commit(); !errors.Is(err, ErrFinished) {
		t.Fatalf("second Commit err = %v, want ErrFinished", err)
	}
	if _, b, err := readAll(s, 4); err != nil || string(b) != "done" {
		t.Fatalf("read = %q, %v", b, err)
	}

	// A writer left behind by a crash is removed by the next Open.
	w, _ = s.Create(meta(9, 2))
	w.Write([]byte("never committed"))
	w.f.Close()
	if _, err := Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if got := files(t, dir); !slices.Equal(got, []string{fileName(4, 1)}) {
		t.Fatalf("files after reopen: %v", got)
	}
}

// TestCorruption damages a committed file in every region and checks that
// the damage is reported, never read as valid data.
func TestCorruption(t *testing.T) {
	data := randomData(1, 10000)
	m := meta(42, 7, 1, 2)
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		atOpen bool // reported by Open/Latest rather than at the end of the data
	}{
		{"flip in header magic", func(b []byte) []byte { b[1] ^= 1; return b }, true},
		{"flip in metadata", func(b []byte) []byte { b[headFixed+2] ^= 0x10; return b }, true},
		{"flip in data", func(b []byte) []byte { b[len(b)/2] ^= 0x80; return b }, false},
		{"flip in last data byte", func(b []byte) []byte { b[len(b)-trailerSize-1] ^= 1; return b }, false},
		{"flip in trailer length", func(b []byte) []byte { b[len(b)-trailerSize] ^= 1; return b }, true},
		{"flip in data checksum", func(b []byte) []byte { b[len(b)-trailerSize+9] ^= 1; return b }, true},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }, true},
		{"truncated to header", func(b []byte) []byte { return b[:headFixed] }, true},
		{"empty", func(b []byte) []byte { return nil }, true},
		{"garbage appended", func(b []byte) []byte { return append(b, 1, 2, 3) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			write(t, s, m, data)
			path := filepath.Join(dir, fileName(42, 7))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.mutate(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, lerr := s.Latest()
			_, got, err := readAll(s, 42)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read err = %v (%d bytes), want ErrCorrupt", err, len(got))
			}
			if tc.atOpen != errors.Is(lerr, ErrCorrupt) {
				t.Fatalf("Latest err = %v, want corrupt reported at open: %v", lerr, tc.atOpen)
			}
			if err := s.Verify(42); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Verify err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestRenamedFileIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, Options{NoSync: true})
	write(t, s, meta(5, 1), []byte("data"))
	if err := os.Rename(filepath.Join(dir, fileName(5, 1)), filepath.Join(dir, fileName(6, 1))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Latest(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Latest err = %v, want ErrCorrupt (name and header disagree)", err)
	}
}

func readRaw(dir string, index, term uint64) ([]byte, error) {
	return os.ReadFile(filepath.Join(dir, fileName(index, term)))
}

func TestKeepProtectsFromPruning(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, Retain: 1})
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, meta(10, 1), []byte("a"))
	s.Keep(10) // the WAL points at 10; later commits are not yet recorded there
	write(t, s, meta(20, 1), []byte("b"))
	write(t, s, meta(30, 1), []byte("c"))
	if got, want := files(t, dir), []string{fileName(10, 1), fileName(30, 1)}; !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	s.Keep(30)
	write(t, s, meta(40, 2), []byte("d"))
	if got, want := files(t, dir), []string{fileName(30, 1), fileName(40, 2)}; !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{NoSync: true, Retain: 3})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			w, err := s.Create(meta(uint64(i+1), 1))
			if err != nil {
				t.Error(err)
				return
			}
			w.Write(randomData(uint64(i), 5000))
			if err := w.Commit(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := files(t, dir); len(got) != 3 {
		t.Fatalf("files %v, want the 3 newest", got)
	}
	for i := 6; i <= 8; i++ {
		if _, b, err := readAll(s, uint64(i)); err != nil || !bytes.Equal(b, randomData(uint64(i-1), 5000)) {
			t.Fatalf("snapshot %d: %d bytes, %v", i, len(b), err)
		}
	}
}
