package consensus

import (
	"bytes"
	"testing"

	"github.com/distkit/distkit/clock"
)

func TestStampedEntryRoundTrip(t *testing.T) {
	ts := clock.Timestamp{Wall: 1_700_000_000_000_000_000, Logical: 7}
	for _, h := range []entryHeader{
		{kind: entryCommand, epoch: 1, seq: 2, ts: ts},
		{kind: entryCommand, epoch: 1, seq: 2, reqID: "id", ts: ts},
		{kind: entryCommand, epoch: 1, seq: 2, ts: clock.Timestamp{Wall: -5}},
	} {
		b := encodeEntry(h, []byte("body"))
		got, body, err := decodeEntry(b)
		if err != nil || got != h || string(body) != "body" {
			t.Fatalf("decodeEntry(encodeEntry(%+v)) = %+v, %q, %v", h, got, body, err)
		}
	}
	good := encodeEntry(entryHeader{kind: entryCommand, epoch: 1, seq: 2, ts: ts}, nil)
	zero := append(append([]byte(nil), good[:entryHeaderLen]...), make([]byte, clock.TimestampSize)...)
	zero[entryHeaderLen], zero[entryHeaderLen+7] = 0x80, 0 // the encoding of the zero timestamp
	for _, bad := range [][]byte{good[:entryHeaderLen+5], zero} {
		if _, _, err := decodeEntry(bad); err == nil {
			t.Fatalf("decodeEntry(%x) accepted a malformed timestamp", bad)
		}
	}

	rs := sampleReplicated()
	rs.ts = ts
	hdr := encodeSnapshotHeader(rs, false)
	got, _, err := decodeSnapshotHeader(bytesReader(hdr), 1<<20)
	if err != nil || got.ts != ts {
		t.Fatalf("snapshot header timestamp = %v, %v; want %v", got.ts, err, ts)
	}
	if _, _, err := decodeSnapshotHeader(bytesReader(hdr[:len(hdr)-3]), 1<<20); err == nil {
		t.Fatal("truncated snapshot timestamp accepted")
	}
}

func FuzzDecodeStampedEntry(f *testing.F) {
	ts := clock.Timestamp{Wall: 1_700_000_000_000_000_000, Logical: 7}
	f.Add(encodeEntry(entryHeader{kind: entryCommand, epoch: 1, seq: 2, ts: ts}, []byte("x")))
	f.Add(encodeEntry(entryHeader{kind: entryCommand, epoch: 1, seq: 2, reqID: "id", ts: ts}, []byte("x")))
	f.Add([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := decodeEntry(data)
		if err != nil {
			return
		}
		if again := encodeEntry(h, body); !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs: %x vs %x", again, data)
		}
	})
}

func FuzzDecodeStampedSnapshotHeader(f *testing.F) {
	rs := sampleReplicated()
	rs.ts = clock.Timestamp{Wall: 1, Logical: 2}
	f.Add(encodeSnapshotHeader(rs, false))
	f.Add(encodeSnapshotHeader(rs, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, noUser, err := decodeSnapshotHeader(bytesReader(data), 1<<20)
		if err != nil {
			return
		}
		rs2, _, err := decodeSnapshotHeader(bytesReader(encodeSnapshotHeader(rs, noUser)), 1<<20)
		if err != nil || rs2.ts != rs.ts {
			t.Fatalf("timestamp does not round-trip: %v vs %v (%v)", rs2.ts, rs.ts, err)
		}
	})
}
