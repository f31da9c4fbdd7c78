package wal

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestEntrySizeMatchesProto(t *testing.T) {
	big := uint64(math.MaxUint64)
	for _, e := range []*raftpb.Entry{
		{},
		ent(1, 1),
		{Index: &big, Term: &big, Type: raftpb.EntryConfChangeV2.Enum(), Data: make([]byte, 300)},
		{Data: []byte{}},
		{Index: proto.Uint64(1 << 35)},
	} {
		if got, want := entrySize(e), proto.Size(e); got != want {
			t.Errorf("entrySize(%v) = %d, want %d", e, got, want)
		}
	}
}

func TestEntryRecordRoundTrip(t *testing.T) {
	for _, e := range []*raftpb.Entry{
		{},
		ent(7, 3),
		{Index: proto.Uint64(9), Data: []byte{}},
		{Term: proto.Uint64(2), Type: raftpb.EntryConfChange.Enum()},
	} {
		rec := appendEntryRecord(nil, 99, e)
		if len(rec)%recAlign != 0 {
			t.Fatalf("record of %d bytes is not aligned", len(rec))
		}
		typ, payload, n, err := decodeRecord(rec, 99, 1<<10)
		if err != nil || typ != recEntry || n != len(rec) {
			t.Fatalf("decodeRecord = %v, %d, %v", typ, n, err)
		}
		got, err := decodeEntry(payload, true)
		if err != nil || !proto.Equal(got, e) {
			t.Fatalf("decoded %v, %v; want %v", got, err, e)
		}
		if _, _, _, err := decodeRecord(rec, 98, 1<<10); err == nil {
			t.Fatal("record decoded with another segment's salt")
		}
	}
}

func TestBatchChainMatchesCRC(t *testing.T) {
	recs := appendEntryRecord(nil, 9, ent(3, 2))
	recs = appendStateRecord(recs, 9, hardState(2, 1, 3))
	b := append([]byte(nil), recs[:recHeaderSize]...)
	second := recordSize(int(binary.LittleEndian.Uint32(recs) & maxRecordLen))
	b = append(b, recs[second:second+recHeaderSize]...)
	b = binary.LittleEndian.AppendUint64(b, 0x0102030405060708)
	if got, want := batchChain(77, recs, 0x0102030405060708), crc32.Update(77, castagnoli, b); got != want {
		t.Fatalf("batchChain = %08x, want %08x", got, want)
	}
}
