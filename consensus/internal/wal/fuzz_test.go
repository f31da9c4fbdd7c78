package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoders. They must
// return errors, never panic, and whatever decodes must re-encode to the
// same bytes.
func FuzzDecodeRecord(f *testing.F) {
	const salt = 0x1234abcd
	var seeds [][]byte
	seeds = append(seeds, appendEntryRecord(nil, salt, ent(7, 3)))
	seeds = append(seeds, appendEntryRecord(nil, salt, &raftpb.Entry{}))
	seeds = append(seeds, appendStateRecord(nil, salt, hardState(4, 2, 9)))
	snap, _ := appendSnapshotRecord(nil, salt, meta(10, 2, 1, 2, 3), snapDiscard)
	seeds = append(seeds, snap)
	seeds = append(seeds, appendCommitRecord(nil, salt, 5, 2, 0xfeedf00d))
	seeds = append(seeds, make([]byte, 16), []byte{1, 2, 3}, nil)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, n, err := decodeRecord(b, salt, 1<<16)
		if err != nil {
			if !errors.Is(err, errRecord) {
				t.Fatalf("error %v does not wrap errRecord", err)
			}
			return
		}
		if typ == recInvalid {
			return
		}
		if n > len(b) || n%recAlign != 0 {
			t.Fatalf("record size %d of %d bytes", n, len(b))
		}
		var again []byte
		switch typ {
		case recEntry:
			e, err := decodeEntry(payload, true)
			if err != nil {
				return
			}
			if got, want := entrySize(e), proto.Size(e); got != want {
				t.Fatalf("entrySize(%v) = %d, proto.Size = %d", e, got, want)
			}
			again = appendEntryRecord(nil, salt, e)
		case recState:
			hs, err := decodeState(payload)
			if err != nil {
				return
			}
			again = appendStateRecord(nil, salt, hs)
		case recSnapshot:
			m, flags, err := decodeSnapshot(payload)
			if err != nil {
				return
			}
			// Protobuf encoding is not canonical (field order, varint
			// padding); only check that the result decodes the same.
			if again, err = appendSnapshotRecord(nil, salt, m, flags); err != nil {
				t.Fatal(err)
			}
			_, p2, _, err := decodeRecord(again, salt, 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			if m2, f2, err := decodeSnapshot(p2); err != nil || f2 != flags || m2.GetIndex() != m.GetIndex() || m2.GetTerm() != m.GetTerm() {
				t.Fatalf("snapshot record does not round-trip: %v %v", m2, err)
			}
			return
		case recCommit:
			seq, count, chain, err := decodeCommit(payload)
			if err != nil {
				return
			}
			again = appendCommitRecord(nil, salt, seq, count, chain)
		}
		if string(again) != string(b[:n]) {
			t.Fatalf("re-encoded %x, decoded from %x", again, b[:n])
		}
	})
}

// FuzzOpenSegment opens a directory whose only segment holds arbitrary
// bytes after a valid header. Open must fail with an error or produce a log
// whose entries can all be read; it must never panic.
func FuzzOpenSegment(f *testing.F) {
	dir := f.TempDir()
	l, err := Open(dir, Options{NoSync: true, SegmentBytes: MinSegmentBytes})
	if err != nil {
		f.Fatal(err)
	}
	if err := l.Append(ents(1, 3, 1), hardState(1, 1, 2)); err != nil {
		f.Fatal(err)
	}
	if err := l.SetSnapshot(meta(2, 1, 1)); err != nil {
		f.Fatal(err)
	}
	if err := l.Append(ents(3, 4, 2), hardState(2, 0, 3)); err != nil {
		f.Fatal(err)
	}
	l.Close()
	valid, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	mark, err := os.ReadFile(filepath.Join(dir, "HWM"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:segHeaderSize])
	f.Add([]byte{})
	flipped := append([]byte(nil), valid...)
	flipped[segHeaderSize+20] ^= 4
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, b []byte) {
		d := t.TempDir()
		// Arbitrary bytes after a version 1 header (a log without a
		// high-water mark), or a whole segment with the mark of the
		// valid log.
		seg := append(segHeader{version: 1, salt: 7, seq: 1, firstBatch: 1}.encode(), b...)
		if len(b) >= segHeaderSizeV1 && string(b[:8]) == segMagic {
			seg = b
			if err := os.WriteFile(filepath.Join(d, "HWM"), mark, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, segmentName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(d, Options{NoSync: true, SegmentBytes: MinSegmentBytes, MaxEntryBytes: 1 << 16})
		if err != nil {
			return
		}
		defer l.Close()
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		if first > last+1 {
			t.Fatalf("first index %d > last index %d + 1", first, last)
		}
		if _, err := l.Entries(first, last+1, ^uint64(0)); err != nil {
			t.Fatalf("Entries(%d, %d) after a successful Open: %v", first, last+1, err)
		}
		if hs, _, _ := l.InitialState(); hs.GetCommit() > last {
			t.Fatalf("commit %d beyond last index %d", hs.GetCommit(), last)
		}
	})
}

// FuzzDecodeMark feeds arbitrary bytes to the high-water mark decoder: it
// must return an error or a mark, never panic, and a decoded slot must
// re-encode to the same bytes.
func FuzzDecodeMark(f *testing.F) {
	m := markState{seg: 3, batch: 40, end: 4096, index: 120, chain: 0xdeadbeef}
	two := append(encodeMarkSlot(m, 6), encodeMarkSlot(markState{seg: 3, batch: 41, end: 4200}, 7)...)
	f.Add(two)
	f.Add(append(encodeMarkSlot(m, 0), make([]byte, markSlotSize)...))
	f.Add(two[:markSlotSize])
	f.Add([]byte{})
	torn := append([]byte(nil), two...)
	torn[markSlotSize+33] ^= 8
	f.Add(torn)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gen, present, err := decodeMarkFile(b)
		if err != nil || !present {
			return
		}
		b = append(b[:len(b):len(b)], make([]byte, markFileSize-len(b))...)
		slot := b[int(gen%2)*markSlotSize:][:markSlotSize]
		if again := encodeMarkSlot(got, gen); string(again) != string(slot) {
			t.Fatalf("slot re-encoded as %x, decoded from %x", again, slot)
		}
	})
}

// FuzzDecodeSegHeader feeds arbitrary bytes to the segment header decoder:
// whatever decodes must re-encode to the same bytes.
func FuzzDecodeSegHeader(f *testing.F) {
	f.Add(segHeader{salt: 9, seq: 2, firstBatch: 7, baseIndex: 30, prealloc: 1 << 20, prevChain: 5}.encode())
	f.Add(segHeader{version: 1, salt: 9, seq: 2, firstBatch: 7, baseIndex: 30}.encode())
	f.Add(make([]byte, segHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeSegHeader(b)
		if err != nil {
			return
		}
		if again := h.encode(); string(again) != string(b[:h.size()]) {
			t.Fatalf("header re-encoded as %x, decoded from %x", again, b[:h.size()])
		}
	})
}
