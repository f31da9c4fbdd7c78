package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// On-disk format, version 2 (version 1 is still read). All integers are
// little endian.
//
// A segment file starts with a fixed header. Version 2:
//
//	[0:8]   magic "DKWALSEG"
//	[8:12]  format version (2)
//	[12:16] salt: random, seeds every record checksum of this segment
//	[16:24] segment sequence number (also in the file name)
//	[24:32] sequence number of the first batch written to the segment
//	[32:40] last log index when the segment was created (informational)
//	[40:48] size the file was preallocated to before it was named (0: not
//	        preallocated); the file can never legitimately be shorter
//	[48:52] chain value of the batch before the first one (see below)
//	[52:60] zero
//	[60:64] CRC32C of bytes [0:60]
//
// Version 1 has a 48-byte header: bytes [0:40] as above, [40:44] the CRC32C
// of [0:40], [44:48] zero; it has no preallocated size and no chain.
//
// Records follow, each aligned to 8 bytes so that a record header never
// straddles an 8-byte boundary:
//
//	[0:4]   type<<28 | payload length (length < 2^28)
//	[4:8]   CRC32C seeded with the segment salt over bytes [0:4] and the payload
//	[8:..]  payload, then zero padding up to the next multiple of 8
//
// Type 0 is invalid, so preallocated (zeroed) space reads as "no record".
// Records are grouped into batches; a batch is one Append, SetSnapshot or
// segment head and ends with a commit record carrying the batch sequence
// number, the number of records in the batch and (version 2; zero in
// version 1) the batch's chain value: CRC32C seeded with the previous
// batch's chain value over the 8-byte headers of the batch's other records
// (which hold their checksums) and the 8-byte batch sequence number. The
// chain ties every batch to all batches before it, across segments, so a
// batch from another copy of the log cannot be spliced in unnoticed. Only
// batches whose commit record is intact are replayed. Each segment starts
// with a head batch that holds the hard state and snapshot marker current
// at its creation, so older segments can be deleted without losing them.

const (
	segMagic        = "DKWALSEG"
	segVersion      = 2
	segHeaderSizeV1 = 48
	segHeaderSize   = 64 // version 2
	recHeaderSize   = 8
	recAlign        = 8
	maxRecordLen    = 1<<28 - 1

	entryPayloadHeader = 18 // index, term, type, flags
	statePayloadSize   = 24 // term, vote, commit
	commitPayloadSize  = 16 // batch seq, record count, chain (zero in version 1)
)

type recType uint8

const (
	recInvalid  recType = 0
	recEntry    recType = 1 // one raft entry
	recState    recType = 2 // hard state
	recSnapshot recType = 3 // snapshot marker: flags byte + SnapshotMetadata
	recCommit   recType = 4 // end of a batch
)

func (t recType) String() string {
	switch t {
	case recEntry:
		return "entry"
	case recState:
		return "hardstate"
	case recSnapshot:
		return "snapshot"
	case recCommit:
		return "commit"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Snapshot marker flags.
const (
	snapDiscard = 1 << 0 // the log did not contain the snapshot index: drop all entries
)

// Entry presence flags (raftpb uses optional fields; keep presence exact).
const (
	entHasIndex = 1 << 0
	entHasTerm  = 1 << 1
	entHasType  = 1 << 2
	entHasData  = 1 << 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errRecord describes why bytes do not form a valid record. It is internal:
// callers turn it into either a torn tail or an ErrCorrupt.
var errRecord = errors.New("invalid record")

type segHeader struct {
	version    uint32 // 0 means segVersion
	salt       uint32
	seq        uint64
	firstBatch uint64
	baseIndex  uint64
	prealloc   int64  // version 2
	prevChain  uint32 // version 2
}

func (h segHeader) size() int {
	if h.version == 1 {
		return segHeaderSizeV1
	}
	return segHeaderSize
}

func (h segHeader) encode() []byte {
	v := h.version
	if v == 0 {
		v = segVersion
	}
	b := make([]byte, h.size())
	copy(b[0:8], segMagic)
	binary.LittleEndian.PutUint32(b[8:12], v)
	binary.LittleEndian.PutUint32(b[12:16], h.salt)
	binary.LittleEndian.PutUint64(b[16:24], h.seq)
	binary.LittleEndian.PutUint64(b[24:32], h.firstBatch)
	binary.LittleEndian.PutUint64(b[32:40], h.baseIndex)
	if v == 1 {
		binary.LittleEndian.PutUint32(b[40:44], crc32.Checksum(b[0:40], castagnoli))
		return b
	}
	binary.LittleEndian.PutUint64(b[40:48], uint64(h.prealloc))
	binary.LittleEndian.PutUint32(b[48:52], h.prevChain)
	binary.LittleEndian.PutUint32(b[60:64], crc32.Checksum(b[0:60], castagnoli))
	return b
}

func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSizeV1 {
		return segHeader{}, fmt.Errorf("segment header: %d bytes, want %d", len(b), segHeaderSizeV1)
	}
	if string(b[0:8]) != segMagic {
		return segHeader{}, fmt.Errorf("segment header: bad magic %q", b[0:8])
	}
	h := segHeader{
		version:    binary.LittleEndian.Uint32(b[8:12]),
		salt:       binary.LittleEndian.Uint32(b[12:16]),
		seq:        binary.LittleEndian.Uint64(b[16:24]),
		firstBatch: binary.LittleEndian.Uint64(b[24:32]),
		baseIndex:  binary.LittleEndian.Uint64(b[32:40]),
	}
	switch h.version {
	case 1:
		if got, want := binary.LittleEndian.Uint32(b[40:44]), crc32.Checksum(b[0:40], castagnoli); got != want {
			return segHeader{}, fmt.Errorf("segment header: checksum %08x, want %08x", got, want)
		}
		if binary.LittleEndian.Uint32(b[44:48]) != 0 {
			return segHeader{}, errors.New("segment header: reserved bytes not zero")
		}
	case 2:
		if len(b) < segHeaderSize {
			return segHeader{}, fmt.Errorf("segment header: %d bytes, want %d", len(b), segHeaderSize)
		}
		if got, want := binary.LittleEndian.Uint32(b[60:64]), crc32.Checksum(b[0:60], castagnoli); got != want {
			return segHeader{}, fmt.Errorf("segment header: checksum %08x, want %08x", got, want)
		}
		if !allZero(b[52:60]) {
			return segHeader{}, errors.New("segment header: reserved bytes not zero")
		}
		prealloc := binary.LittleEndian.Uint64(b[40:48])
		if prealloc > 1<<62 {
			return segHeader{}, fmt.Errorf("segment header: preallocated size %d", prealloc)
		}
		h.prealloc = int64(prealloc)
		h.prevChain = binary.LittleEndian.Uint32(b[48:52])
	default:
		return segHeader{}, fmt.Errorf("segment header: unsupported version %d", h.version)
	}
	return h, nil
}

func padLen(n int) int { return (recAlign - n%recAlign) % recAlign }

// recordSize is the on-disk size of a record with an n-byte payload.
func recordSize(n int) int { return recHeaderSize + n + padLen(n) }

// beginRecord appends a record header placeholder and returns the offset of
// the record in buf; finishRecord fills in the header once the payload has
// been appended.
func beginRecord(buf []byte) ([]byte, int) {
	return append(buf, 0, 0, 0, 0, 0, 0, 0, 0), len(buf)
}

func finishRecord(buf []byte, start int, t recType, salt uint32) []byte {
	n := len(buf) - start - recHeaderSize
	binary.LittleEndian.PutUint32(buf[start:], uint32(t)<<28|uint32(n))
	crc := crc32.Update(salt, castagnoli, buf[start:start+4])
	crc = crc32.Update(crc, castagnoli, buf[start+recHeaderSize:])
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	for range padLen(n) {
		buf = append(buf, 0)
	}
	return buf
}

// decodeRecord validates the record at the start of b. maxLen bounds the
// payload length. It returns the type, the payload (aliasing b) and the total
// record size. An all-zero header returns recInvalid with a nil error: it
// marks unwritten space.
func decodeRecord(b []byte, salt uint32, maxLen int) (recType, []byte, int, error) {
	if len(b) < recHeaderSize {
		return recInvalid, nil, 0, fmt.Errorf("%w: %d bytes left, short header", errRecord, len(b))
	}
	word := binary.LittleEndian.Uint32(b[0:4])
	crc := binary.LittleEndian.Uint32(b[4:8])
	if word == 0 && crc == 0 {
		return recInvalid, nil, 0, nil
	}
	t := recType(word >> 28)
	n := int(word & maxRecordLen)
	if t < recEntry || t > recCommit {
		return t, nil, 0, fmt.Errorf("%w: unknown type %d", errRecord, t)
	}
	if n > maxLen {
		return t, nil, 0, fmt.Errorf("%w: %v payload of %d bytes exceeds limit %d", errRecord, t, n, maxLen)
	}
	size := recordSize(n)
	if size > len(b) {
		return t, nil, 0, fmt.Errorf("%w: %v record of %d bytes runs past the end (%d left)", errRecord, t, size, len(b))
	}
	payload := b[recHeaderSize : recHeaderSize+n]
	want := crc32.Update(crc32.Update(salt, castagnoli, b[0:4]), castagnoli, payload)
	if crc != want {
		return t, nil, 0, fmt.Errorf("%w: %v record checksum %08x, want %08x", errRecord, t, crc, want)
	}
	for _, c := range b[recHeaderSize+n : size] {
		if c != 0 {
			return t, nil, 0, fmt.Errorf("%w: non-zero padding", errRecord)
		}
	}
	return t, payload, size, nil
}

func appendEntryRecord(buf []byte, salt uint32, e *raftpb.Entry) []byte {
	buf, start := beginRecord(buf)
	var flags byte
	if e.Index != nil {
		flags |= entHasIndex
	}
	if e.Term != nil {
		flags |= entHasTerm
	}
	if e.Type != nil {
		flags |= entHasType
	}
	if e.Data != nil {
		flags |= entHasData
	}
	buf = binary.LittleEndian.AppendUint64(buf, e.GetIndex())
	buf = binary.LittleEndian.AppendUint64(buf, e.GetTerm())
	buf = append(buf, byte(e.GetType()), flags)
	buf = append(buf, e.Data...)
	return finishRecord(buf, start, recEntry, salt)
}

// checkEntry validates an entry payload as decodeEntry does and returns its
// index and term without allocating.
func checkEntry(p []byte) (index, term uint64, err error) {
	if err := checkEntryHeader(p); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint64(p[0:8]), binary.LittleEndian.Uint64(p[8:16]), nil
}

func checkEntryHeader(p []byte) error {
	if len(p) < entryPayloadHeader {
		return fmt.Errorf("%w: entry payload of %d bytes", errRecord, len(p))
	}
	index := binary.LittleEndian.Uint64(p[0:8])
	term := binary.LittleEndian.Uint64(p[8:16])
	typ, flags := p[16], p[17]
	switch {
	case flags&^(entHasIndex|entHasTerm|entHasType|entHasData) != 0:
		return fmt.Errorf("%w: unknown entry flags %#x", errRecord, flags)
	case raftpb.EntryType_name[int32(typ)] == "":
		return fmt.Errorf("%w: unknown entry type %d", errRecord, typ)
	case flags&entHasIndex == 0 && index != 0:
		return fmt.Errorf("%w: absent index is %d", errRecord, index)
	case flags&entHasTerm == 0 && term != 0:
		return fmt.Errorf("%w: absent term is %d", errRecord, term)
	case flags&entHasType == 0 && typ != 0:
		return fmt.Errorf("%w: absent type is %d", errRecord, typ)
	case flags&entHasData == 0 && len(p) > entryPayloadHeader:
		return fmt.Errorf("%w: absent data has %d bytes", errRecord, len(p)-entryPayloadHeader)
	}
	return nil
}

// decodeEntry decodes an entry payload. The entry's Data aliases p unless
// copyData is set.
func decodeEntry(p []byte, copyData bool) (*raftpb.Entry, error) {
	if err := checkEntryHeader(p); err != nil {
		return nil, err
	}
	flags := p[17]
	// One allocation for the entry and its optional fields.
	a := &struct {
		e           raftpb.Entry
		index, term uint64
		typ         raftpb.EntryType
	}{
		index: binary.LittleEndian.Uint64(p[0:8]),
		term:  binary.LittleEndian.Uint64(p[8:16]),
		typ:   raftpb.EntryType(p[16]),
	}
	e := &a.e
	if flags&entHasIndex != 0 {
		e.Index = &a.index
	}
	if flags&entHasTerm != 0 {
		e.Term = &a.term
	}
	if flags&entHasType != 0 {
		e.Type = &a.typ
	}
	if flags&entHasData != 0 {
		data := p[entryPayloadHeader:]
		if copyData {
			e.Data = append(make([]byte, 0, len(data)), data...)
		} else {
			e.Data = data[:len(data):len(data)]
		}
	}
	return e, nil
}

func appendStateRecord(buf []byte, salt uint32, hs *raftpb.HardState) []byte {
	buf, start := beginRecord(buf)
	buf = binary.LittleEndian.AppendUint64(buf, hs.GetTerm())
	buf = binary.LittleEndian.AppendUint64(buf, hs.GetVote())
	buf = binary.LittleEndian.AppendUint64(buf, hs.GetCommit())
	return finishRecord(buf, start, recState, salt)
}

func decodeState(p []byte) (*raftpb.HardState, error) {
	if len(p) != statePayloadSize {
		return nil, fmt.Errorf("%w: hard state payload of %d bytes", errRecord, len(p))
	}
	return newHardState(
		binary.LittleEndian.Uint64(p[0:8]),
		binary.LittleEndian.Uint64(p[8:16]),
		binary.LittleEndian.Uint64(p[16:24]),
	), nil
}

func newHardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: &term, Vote: &vote, Commit: &commit}
}

func appendSnapshotRecord(buf []byte, salt uint32, meta *raftpb.SnapshotMetadata, flags byte) ([]byte, error) {
	buf, start := beginRecord(buf)
	buf = append(buf, flags)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, meta)
	if err != nil {
		return nil, fmt.Errorf("wal: encode snapshot metadata: %w", err)
	}
	return finishRecord(buf, start, recSnapshot, salt), nil
}

func decodeSnapshot(p []byte) (*raftpb.SnapshotMetadata, byte, error) {
	if len(p) < 1 {
		return nil, 0, fmt.Errorf("%w: empty snapshot payload", errRecord)
	}
	flags := p[0]
	if flags&^snapDiscard != 0 {
		return nil, 0, fmt.Errorf("%w: unknown snapshot flags %#x", errRecord, flags)
	}
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(p[1:], meta); err != nil {
		return nil, 0, fmt.Errorf("%w: snapshot metadata: %v", errRecord, err)
	}
	return meta, flags, nil
}

func appendCommitRecord(buf []byte, salt uint32, seq uint64, count, chain uint32) []byte {
	buf, start := beginRecord(buf)
	buf = binary.LittleEndian.AppendUint64(buf, seq)
	buf = binary.LittleEndian.AppendUint32(buf, count)
	buf = binary.LittleEndian.AppendUint32(buf, chain)
	return finishRecord(buf, start, recCommit, salt)
}

func decodeCommit(p []byte) (seq uint64, count, chain uint32, err error) {
	if len(p) != commitPayloadSize {
		return 0, 0, 0, fmt.Errorf("%w: commit payload of %d bytes", errRecord, len(p))
	}
	return binary.LittleEndian.Uint64(p[0:8]), binary.LittleEndian.Uint32(p[8:12]), binary.LittleEndian.Uint32(p[12:16]), nil
}

// batchChain returns the chain value of the batch numbered seq whose
// records other than the commit record are recs (well-formed records, as
// encoded or validated), given the previous batch's chain value.
func batchChain(prev uint32, recs []byte, seq uint64) uint32 {
	c := prev
	for len(recs) >= recHeaderSize {
		c = crc32.Update(c, castagnoli, recs[:recHeaderSize])
		n := recordSize(int(binary.LittleEndian.Uint32(recs) & maxRecordLen))
		recs = recs[min(n, len(recs)):]
	}
	// crc32.Update over the 8 little-endian bytes of seq, without a buffer
	// that would escape to the heap.
	c = ^c
	for i := range 8 {
		c = castagnoli[byte(c)^byte(seq>>(8*i))] ^ c>>8
	}
	return ^c
}

// entrySize is proto.Size(e) for entries without unknown fields (all
// entries raft creates and all entries decoded here), computed directly.
func entrySize(e *raftpb.Entry) int {
	n := 0
	if e.Type != nil {
		n += 1 + varintLen(uint64(*e.Type))
	}
	if e.Term != nil {
		n += 1 + varintLen(*e.Term)
	}
	if e.Index != nil {
		n += 1 + varintLen(*e.Index)
	}
	if e.Data != nil {
		n += 1 + varintLen(uint64(len(e.Data))) + len(e.Data)
	}
	return n
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
