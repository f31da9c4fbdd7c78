package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3/raftpb"
)

// sectorSize is the unit a torn write is assumed to leave either written or
// untouched (still zero).
const sectorSize = 512

// replayState is the log rebuilt from the segments, batch by batch.
type replayState struct {
	dummyIndex, dummyTerm uint64
	// floating: the entries do not start right after a known snapshot or the
	// beginning of the log (older segments were deleted by compaction), so
	// dummyTerm is unknown until a snapshot marker anchors the log.
	floating bool
	locs     []loc
	hs       *raftpb.HardState
	snap     *raftpb.SnapshotMetadata
}

func (r *replayState) entry(index, term uint64, l loc) {
	last := r.dummyIndex + uint64(len(r.locs))
	switch {
	case index == last+1:
	case index > last+1 || index <= r.dummyIndex && r.floating:
		// The entries before it were in deleted segments.
		r.locs = r.locs[:0]
		r.dummyIndex, r.dummyTerm, r.floating = index-1, 0, true
	case index <= r.dummyIndex:
		return // below the snapshot; Append skips these too
	default: // overwrite a suffix
		r.locs = r.locs[:index-r.dummyIndex-1]
	}
	l.term = term
	r.locs = append(r.locs, l)
}

func (r *replayState) marker(meta *raftpb.SnapshotMetadata, flags byte) {
	r.snap = meta
	switch {
	case flags&snapDiscard != 0:
		r.locs = r.locs[:0]
		r.dummyIndex, r.dummyTerm, r.floating = meta.GetIndex(), meta.GetTerm(), false
	case len(r.locs) == 0:
		r.dummyIndex, r.dummyTerm, r.floating = meta.GetIndex(), meta.GetTerm(), false
	case r.floating && meta.GetIndex() == r.dummyIndex:
		r.dummyTerm, r.floating = meta.GetTerm(), false
	}
}

// finish anchors the log right after the latest snapshot marker and checks
// that the result is usable by raft.
func (r *replayState) finish() error {
	m := r.snap
	last := r.dummyIndex + uint64(len(r.locs))
	switch {
	case m.GetIndex() > r.dummyIndex:
		if m.GetIndex() > last {
			return fmt.Errorf("%w: snapshot at index %d beyond the last entry %d", ErrCorrupt, m.GetIndex(), last)
		}
		if t := r.locs[m.GetIndex()-r.dummyIndex-1].term; t != m.GetTerm() {
			return fmt.Errorf("%w: snapshot at index %d has term %d, the log has term %d", ErrCorrupt, m.GetIndex(), m.GetTerm(), t)
		}
		r.locs = slices.Clone(r.locs[m.GetIndex()-r.dummyIndex:])
	case m.GetIndex() == r.dummyIndex:
		if !r.floating && r.dummyTerm != m.GetTerm() {
			return fmt.Errorf("%w: snapshot at index %d has term %d, the log has term %d", ErrCorrupt, m.GetIndex(), m.GetTerm(), r.dummyTerm)
		}
	default:
		return fmt.Errorf("%w: entries %d..%d are missing between the snapshot and the first entry",
			ErrCorrupt, m.GetIndex()+1, r.dummyIndex)
	}
	r.dummyIndex, r.dummyTerm, r.floating = m.GetIndex(), m.GetTerm(), false
	if last := r.dummyIndex + uint64(len(r.locs)); r.hs.GetCommit() > last {
		return fmt.Errorf("%w: hard state commit %d beyond the last index %d", ErrCorrupt, r.hs.GetCommit(), last)
	}
	return nil
}

// listSegments returns the sequence numbers of the segments in dir, sorted,
// and removes leftover temporary files.
func listSegments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: read dir: %w", err)
	}
	var seqs []uint64
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, ".wal.tmp"):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("wal: remove leftover %s: %w", name, err)
			}
		case strings.HasSuffix(name, ".wal"):
			seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".wal"), 16, 64)
			if err != nil || segmentName(seq) != name {
				return nil, fmt.Errorf("%w: unexpected file %s", ErrCorrupt, name)
			}
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return nil, fmt.Errorf("%w: segment %s missing", ErrCorrupt, segmentName(seqs[i-1]+1))
		}
	}
	return seqs, nil
}

func (l *Log) replay() error {
	seqs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		seg, err := l.createSegment(1, 1, 0)
		if err != nil {
			return err
		}
		l.segs = []*segment{seg}
		l.nextBatch = 2
		return nil
	}
	r := &replayState{hs: l.hs, snap: l.snap}
	var nextBatch uint64
	for i, seq := range seqs {
		seg, err := l.replaySegment(r, seq, i == len(seqs)-1, &nextBatch)
		if seg != nil {
			l.segs = append(l.segs, seg)
		}
		if err != nil {
			return err
		}
	}
	if err := r.finish(); err != nil {
		return err
	}
	l.hs, l.snap = r.hs, r.snap
	l.dummyIndex, l.dummyTerm, l.locs = r.dummyIndex, r.dummyTerm, r.locs
	l.nextBatch = nextBatch
	if act := l.active(); act.size < l.opts.SegmentBytes {
		if err := preallocate(act.f, l.opts.SegmentBytes); err != nil {
			l.opts.Logger.Warn("wal: preallocate failed", "path", act.path, "err", err)
		}
	}
	return nil
}

type pendingRec struct {
	t     recType
	off   int64
	size  int
	index uint64
	term  uint64
	hs    *raftpb.HardState
	meta  *raftpb.SnapshotMetadata
	flags byte
}

// replaySegment reads one segment into r. next is the sequence number of the
// next batch expected (0 before the first segment).
func (l *Log) replaySegment(r *replayState, seq uint64, last bool, next *uint64) (*segment, error) {
	path := filepath.Join(l.dir, segmentName(seq))
	corrupt := func(off int64, format string, args ...any) error {
		return fmt.Errorf("%w: %s at offset %d: %s", ErrCorrupt, path, off, fmt.Sprintf(format, args...))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: stat segment: %w", err)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), data); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	seg := &segment{seq: seq, path: path, f: f}
	h, err := decodeSegHeader(data)
	if err != nil {
		return seg, corrupt(0, "%v", err)
	}
	if h.seq != seq {
		return seg, corrupt(0, "header names segment %d", h.seq)
	}
	if *next == 0 {
		*next = h.firstBatch
	} else if h.firstBatch != *next {
		return seg, corrupt(0, "segment starts with batch %d, want %d", h.firstBatch, *next)
	}
	seg.salt = h.salt

	var pending []pendingRec
	good := int64(segHeaderSize) // end of the last complete batch
	off := good
	var damage error
	torn := true // whether the damage can be an unfinished write
	for damage == nil {
		rest := data[off:]
		if len(rest) == 0 || len(rest) < recHeaderSize && allZero(rest) {
			break
		}
		t, payload, n, err := decodeRecord(rest, h.salt, l.opts.maxPayload())
		if err != nil {
			damage = fmt.Errorf("offset %d: %w", off, err)
			break
		}
		if t == recInvalid {
			break // unwritten space
		}
		p := pendingRec{t: t, off: off, size: n}
		switch t {
		case recEntry:
			p.index, p.term, err = checkEntry(payload)
		case recState:
			p.hs, err = decodeState(payload)
		case recSnapshot:
			p.meta, p.flags, err = decodeSnapshot(payload)
		case recCommit:
			var bseq uint64
			var count uint32
			bseq, count, err = decodeCommit(payload)
			if err == nil && (bseq != *next || int(count) != len(pending)) {
				err = fmt.Errorf("commit of batch %d with %d records, want batch %d with %d", bseq, count, *next, len(pending))
			}
			if err == nil {
				applyBatch(r, seg, pending)
				pending = pending[:0]
				*next++
				good = off + int64(n)
				if seg.headSize == 0 {
					seg.headSize = good
				}
			}
		}
		if err != nil {
			// The checksum matched, so the bytes are as written: not torn.
			damage = fmt.Errorf("%v record at offset %d: %w", t, off, err)
			torn = false
			break
		}
		if t != recCommit {
			pending = append(pending, p)
		}
		off += int64(n)
	}
	if damage == nil && len(pending) > 0 {
		damage = fmt.Errorf("batch at offset %d has no commit record", good)
	}
	if damage == nil && !allZero(data[good:]) {
		damage = fmt.Errorf("non-zero bytes after the last batch")
	}
	seg.size = good
	if damage == nil {
		return seg, nil
	}
	if seg.headSize == 0 {
		return seg, corrupt(good, "segment head damaged: %v", damage)
	}
	if !last {
		return seg, corrupt(good, "%v (not the last segment: acknowledged data is damaged)", damage)
	}
	if !torn {
		return seg, corrupt(good, "%v (the record is intact as written)", damage)
	}
	if why := laterData(data, good, h.salt, *next); why != "" {
		return seg, corrupt(good, "%v; %s", damage, why)
	}
	if !batchTorn(data, good, l.opts.maxPayload()) {
		return seg, corrupt(good, "%v (the batch was completely written, so it may have been acknowledged)", damage)
	}
	return seg, l.repair(seg, data, good, damage)
}

// applyBatch applies the records of one complete batch.
func applyBatch(r *replayState, seg *segment, recs []pendingRec) {
	for _, p := range recs {
		switch p.t {
		case recEntry:
			r.entry(p.index, p.term, loc{seg: seg, off: p.off, size: uint32(p.size)})
			seg.maxIndex = max(seg.maxIndex, p.index)
		case recState:
			r.hs = p.hs
		case recSnapshot:
			if p.meta.ConfState == nil {
				p.meta.ConfState = &raftpb.ConfState{}
			}
			r.marker(p.meta, p.flags)
		}
	}
}

// batchTorn reports whether the bytes of the batch at offset off can be the
// result of a write that did not complete. Sectors are assumed to be either
// written or left as they were, i.e. zero: segments are preallocated with
// zeros and torn tails are zeroed on repair. Following the record lengths, a
// torn batch reaches unwritten space (a zero header, or the end of a file
// that was cut short) before its commit record, or has an all-zero sector
// within its extent. A nonsensical header is torn only where it is stray bits
// in unused space: at the start of the batch with only zeros after it.
func batchTorn(data []byte, off int64, maxLen int) bool {
	start := off
	for {
		rest := data[off:]
		if len(rest) < recHeaderSize {
			return true
		}
		word := le32(rest)
		if word == 0 && le32(rest[4:]) == 0 {
			return true
		}
		t, n := recType(word>>28), int(word&maxRecordLen)
		if t < recEntry || t > recCommit || n > maxLen {
			return off == start && allZero(rest[recHeaderSize:])
		}
		size := int64(recordSize(n))
		if size > int64(len(rest)) {
			return true
		}
		if t == recCommit {
			return hasZeroSector(data, start, off+size)
		}
		off += size
	}
}

// laterData looks past damage at offset from for proof that the damaged
// batch was acknowledged: a commit record of a later batch, or the damaged
// batch's own commit record with every sector of the batch written (a torn
// write leaves some sector unwritten, i.e. zero). It returns "" if the damage
// can be a torn tail.
func laterData(data []byte, from int64, salt uint32, next uint64) string {
	want := uint32(recCommit)<<28 | commitPayloadSize
	for p := from; p+int64(recordSize(commitPayloadSize)) <= int64(len(data)); p += recAlign {
		if le32(data[p:]) != want {
			continue
		}
		t, payload, n, err := decodeRecord(data[p:], salt, commitPayloadSize)
		if err != nil || t != recCommit {
			continue
		}
		seq, _, err := decodeCommit(payload)
		if err != nil {
			continue
		}
		if seq > next {
			return fmt.Sprintf("batch %d follows at offset %d", seq, p)
		}
		if seq == next && !hasZeroSector(data, from, p+int64(n)) {
			return fmt.Sprintf("the damaged batch %d was completely written (commit at offset %d)", seq, p)
		}
	}
	return ""
}

// hasZeroSector reports whether some sector's share of data[from:to] is all
// zero.
func hasZeroSector(data []byte, from, to int64) bool {
	for s := from - from%sectorSize; s < to; s += sectorSize {
		if allZero(data[max(s, from):min(s+sectorSize, to)]) {
			return true
		}
	}
	return false
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

var zeroChunk = make([]byte, 64<<10)

func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroChunk))
		if !bytes.Equal(b[:n], zeroChunk[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// repair cuts a torn tail off the last segment: it saves the segment to a
// ".broken" file, zeroes everything from off on and syncs.
func (l *Log) repair(seg *segment, data []byte, off int64, why error) error {
	broken := seg.path + ".broken"
	for i := 1; ; i++ {
		if _, err := os.Lstat(broken); errors.Is(err, os.ErrNotExist) {
			break
		}
		broken = fmt.Sprintf("%s.broken.%d", seg.path, i)
	}
	l.opts.Logger.Warn("wal: truncating torn tail", "path", seg.path, "offset", off,
		"bytes", len(data)-int(off), "reason", why.Error(), "evidence", broken)
	if err := writeFileSync(broken, data, !l.opts.NoSync); err != nil {
		return fmt.Errorf("wal: save evidence of torn tail: %w", err)
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	l.hook(crashPoint{kind: "repair-evidence", path: seg.path, off: off})
	for p := off; p < int64(len(data)); p += int64(len(zeroChunk)) {
		end := min(p+int64(len(zeroChunk)), int64(len(data)))
		if allZero(data[p:end]) {
			continue
		}
		if _, err := seg.f.WriteAt(zeroChunk[:end-p], p); err != nil {
			return fmt.Errorf("wal: zero torn tail of %s: %w", seg.path, err)
		}
		l.hook(crashPoint{kind: "repair-zeroing", path: seg.path, off: p})
	}
	if err := l.sync(seg.f); err != nil {
		return fmt.Errorf("wal: sync %s: %w", seg.path, err)
	}
	return nil
}

func writeFileSync(path string, data []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
