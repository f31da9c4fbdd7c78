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
// and the leftover temporary files (removed once replay has succeeded).
func listSegments(dir string) (seqs []uint64, leftovers []string, err error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: read dir: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, ".wal.tmp"):
			leftovers = append(leftovers, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".wal"):
			seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".wal"), 16, 64)
			if err != nil || segmentName(seq) != name {
				return nil, nil, fmt.Errorf("%w: unexpected file %s", ErrCorrupt, name)
			}
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, leftovers, nil
}

// scanState is what replay carries from batch to batch and segment to
// segment.
type scanState struct {
	next  uint64    // sequence number of the next batch expected (0 before the first segment)
	chain uint32    // chain value of the last batch read
	tail  markState // the last complete batch read
	mark  markState // the high-water mark, if present
	// atMark is the batch the mark names, as found in the log.
	atMark      markState
	foundMark   bool
	v2          bool // some segment has format version 2
	havePresent bool // the mark file is present
}

// repairPlan is a torn tail found by replay, cut off only once every check
// has passed.
type repairPlan struct {
	seg    *segment
	data   []byte
	off    int64
	batch  uint64 // sequence number of the torn batch
	damage error
	// The entries of the torn batch that were readable (0: none).
	firstIndex, lastIndex uint64
}

// lossError reports acknowledged data that is gone. It wraps ErrDataLoss
// and ErrCorrupt.
type lossError struct{ msg string }

func (e *lossError) Error() string   { return e.msg }
func (e *lossError) Unwrap() []error { return []error{ErrDataLoss, ErrCorrupt} }

// remedy is appended to every refusal of replay.
const remedy = "nothing on disk was changed; restore the directory from a copy that holds the missing data, " +
	"or remove this member from its group and add it back under a new id with an empty directory"

func (l *Log) lossf(format string, args ...any) error {
	return &lossError{fmt.Sprintf("%v: %s: %s; %s", ErrDataLoss, l.dir, fmt.Sprintf(format, args...), remedy)}
}

// replay reads and checks the whole log without changing anything; only
// when every check has passed does it remove leftovers, cut off a torn
// tail, migrate a version 1 log and update the high-water mark.
func (l *Log) replay() error {
	seqs, leftovers, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	mark, gen, present, markErr := readMark(l.markPath)
	st := &scanState{mark: mark, havePresent: present}
	if len(seqs) == 0 {
		if markErr != nil {
			return fmt.Errorf("%w; %s", markErr, remedy)
		}
		if present && mark.batch > 0 {
			return l.lossf("no segment files, but the high-water mark %s records batch %d (index %d) in segment %s as durable",
				l.markPath, mark.batch, mark.index, segmentName(mark.seg))
		}
		return l.initLog(leftovers, present, gen)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			return l.lossf("segment %s is missing (found %s and %s)",
				segmentName(seqs[i-1]+1), segmentName(seqs[i-1]), segmentName(seqs[i]))
		}
	}
	r := &replayState{hs: l.hs, snap: l.snap}
	var plan *repairPlan
	for i, seq := range seqs {
		seg, p, err := l.replaySegment(r, seq, i == len(seqs)-1, st)
		if seg != nil {
			l.segs = append(l.segs, seg)
		}
		if err != nil {
			return err
		}
		plan = p
	}
	if markErr != nil {
		if st.v2 {
			return fmt.Errorf("%w; %s", markErr, remedy)
		}
		// Only a version 1 log can be without a valid mark: a crash
		// while its mark was first written.
		present = false
	}
	if err := l.checkMark(st, present); err != nil {
		return err
	}
	if err := r.finish(); err != nil {
		return fmt.Errorf("%w; %s", err, remedy)
	}

	// Every check passed: from here on the directory may change.
	for _, p := range leftovers {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("wal: remove leftover %s: %w", p, err)
		}
	}
	if plan != nil {
		if err := l.repair(plan, st.tail); err != nil {
			return err
		}
	}
	l.hs, l.snap = r.hs, r.snap
	l.dummyIndex, l.dummyTerm, l.locs = r.dummyIndex, r.dummyTerm, r.locs
	l.nextBatch, l.chain = st.next, st.chain
	l.durable = st.tail
	l.durable.index = l.dummyIndex + uint64(len(l.locs))
	if present {
		l.markSaved = mark
	}
	if err := l.openMark(present, gen); err != nil {
		return err
	}
	if err := l.saveMark(l.durable); err != nil {
		return err
	}
	if l.active().version < segVersion {
		// Migrate: new batches go to a new segment in the current format.
		l.opts.Logger.Info("wal: upgrading log format", "dir", l.dir, "from_version", l.active().version, "to_version", segVersion)
		if err := l.cut(); err != nil {
			return err
		}
	}
	if act := l.active(); act.size < l.opts.SegmentBytes {
		if err := preallocate(act.f, l.opts.SegmentBytes); err != nil {
			l.opts.Logger.Warn("wal: preallocate failed", "path", act.path, "err", err)
		}
	}
	return nil
}

// initLog creates a new log: the high-water mark first (recording no batch),
// so that a segment never exists without one, then the first segment.
func (l *Log) initLog(leftovers []string, present bool, gen uint64) error {
	for _, p := range leftovers {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("wal: remove leftover %s: %w", p, err)
		}
	}
	l.markSaved = markState{}
	if err := l.openMark(present, gen); err != nil {
		return err
	}
	seg, chain, err := l.createSegment(1, 1, 0, 0)
	if err != nil {
		return err
	}
	l.segs = []*segment{seg}
	l.nextBatch, l.chain = 2, chain
	l.durable = markState{seg: 1, batch: 1, end: seg.size, chain: chain}
	return l.saveMark(l.durable)
}

// checkMark compares the end of the log with the high-water mark.
func (l *Log) checkMark(st *scanState, present bool) error {
	t := st.tail
	if !present {
		if st.v2 {
			return l.lossf("the high-water mark %s is missing, so whether batches after batch %d (index %d, %s offset %d) were lost cannot be told",
				l.markPath, t.batch, t.index, segmentName(t.seg), t.end)
		}
		return nil // a version 1 log: migrated after replay
	}
	m := st.mark
	if m.batch == 0 {
		return nil
	}
	if t.batch < m.batch {
		return l.lossf("the log ends with batch %d (index %d) at %s offset %d, but the high-water mark records batch %d (index %d) at %s offset %d as durable: batches %d..%d are lost",
			t.batch, t.index, segmentName(t.seg), t.end, m.batch, m.index, segmentName(m.seg), m.end, t.batch+1, m.batch)
	}
	a := st.atMark
	if !st.foundMark {
		return l.lossf("the high-water mark records batch %d (index %d) in %s, which the log does not hold (it starts after it)",
			m.batch, m.index, segmentName(m.seg))
	}
	if a.seg != m.seg || a.end != m.end || a.chain != m.chain {
		return l.lossf("batch %d is in %s ending at offset %d with chain %08x, but the high-water mark records it in %s ending at offset %d with chain %08x: the directory holds a different copy of the log",
			m.batch, segmentName(a.seg), a.end, a.chain, segmentName(m.seg), m.end, m.chain)
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

// replaySegment reads one segment into r without changing it. For the last
// segment it may return a plan to cut off a torn tail.
func (l *Log) replaySegment(r *replayState, seq uint64, last bool, st *scanState) (*segment, *repairPlan, error) {
	path := filepath.Join(l.dir, segmentName(seq))
	corrupt := func(off int64, format string, args ...any) error {
		return fmt.Errorf("%w: %s at offset %d: %s; %s", ErrCorrupt, path, off, fmt.Sprintf(format, args...), remedy)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: open segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("wal: stat segment: %w", err)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, fi.Size()), data); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	seg := &segment{seq: seq, path: path, f: f}
	h, err := decodeSegHeader(data)
	if err != nil {
		if len(data) < segHeaderSize || allZero(data[segHeaderSize:]) {
			// Nothing but a (partial) header is left: the header was
			// synced before the segment was named.
			return seg, nil, l.lossf("segment %s holds %d bytes and no intact header (%v): it was truncated or zeroed",
				segmentName(seq), len(data), err)
		}
		return seg, nil, corrupt(0, "%v", err)
	}
	seg.version = h.version
	if h.version >= 2 {
		st.v2 = true
	}
	if h.seq != seq {
		return seg, nil, corrupt(0, "header names segment %d", h.seq)
	}
	if fi.Size() < h.prealloc {
		return seg, nil, l.lossf("segment %s is %d bytes, but it was created with %d: it was truncated (a crash cannot shorten it)",
			segmentName(seq), fi.Size(), h.prealloc)
	}
	if st.next == 0 {
		st.next = h.firstBatch
		st.chain = h.prevChain
		st.tail = markState{seg: seq, batch: h.firstBatch - 1, end: int64(h.size()), chain: h.prevChain, index: h.baseIndex}
	} else {
		if h.firstBatch != st.next {
			return seg, nil, l.lossf("segment %s starts with batch %d, but the previous segment ends with batch %d (index %d) at offset %d: batches are missing",
				segmentName(seq), h.firstBatch, st.next-1, st.tail.index, st.tail.end)
		}
		if h.version >= 2 && h.prevChain != st.chain {
			return seg, nil, l.lossf("segment %s continues chain %08x, but the previous segment ends with chain %08x: it belongs to another copy of the log",
				segmentName(seq), h.prevChain, st.chain)
		}
	}
	seg.salt = h.salt

	var pending []pendingRec
	good := int64(h.size()) // end of the last complete batch
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
			var count, chain uint32
			bseq, count, chain, err = decodeCommit(payload)
			want := uint32(0)
			if h.version >= 2 {
				want = batchChain(st.chain, data[good:off], bseq)
			}
			switch {
			case err != nil:
			case bseq != st.next || int(count) != len(pending):
				err = fmt.Errorf("commit of batch %d with %d records, want batch %d with %d", bseq, count, st.next, len(pending))
			case chain != want:
				err = fmt.Errorf("batch %d has chain %08x, want %08x", bseq, chain, want)
			}
			if err == nil {
				applyBatch(r, seg, pending)
				pending = pending[:0]
				good = off + int64(n)
				st.chain = chain
				st.tail = markState{seg: seq, batch: bseq, end: good, chain: chain, index: r.dummyIndex + uint64(len(r.locs))}
				if bseq == st.mark.batch {
					st.atMark, st.foundMark = st.tail, true
				}
				st.next++
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
		return seg, nil, nil
	}
	if seg.headSize == 0 {
		if torn {
			// The head is synced before the segment is named.
			return seg, nil, l.lossf("%s offset %d: segment head damaged: %v; it was written before the segment was named, so it was truncated or zeroed",
				segmentName(seq), good, damage)
		}
		return seg, nil, corrupt(good, "segment head damaged: %v", damage)
	}
	if !last {
		if torn {
			return seg, nil, l.lossf("%s offset %d, after batch %d (index %d): %v; it is not the last segment, so acknowledged data was truncated or zeroed",
				segmentName(seq), good, st.tail.batch, st.tail.index, damage)
		}
		return seg, nil, corrupt(good, "%v (not the last segment: acknowledged data is damaged)", damage)
	}
	if !torn {
		return seg, nil, corrupt(good, "%v (the record is intact as written)", damage)
	}
	if st.havePresent && st.mark.batch >= st.next {
		m := st.mark
		return seg, nil, l.lossf("%s offset %d, after batch %d (index %d): %v; the high-water mark records batch %d (index %d) at %s offset %d as durable: batches %d..%d are lost",
			segmentName(seq), good, st.tail.batch, st.tail.index, damage, m.batch, m.index, segmentName(m.seg), m.end, st.next, m.batch)
	}
	if why := laterData(data, good, h.salt, st.next); why != "" {
		return seg, nil, l.lossf("%s offset %d, after batch %d (index %d): %v; %s: acknowledged data was zeroed or overwritten",
			segmentName(seq), good, st.tail.batch, st.tail.index, damage, why)
	}
	if !batchTorn(data, good, l.opts.maxPayload()) {
		return seg, nil, corrupt(good, "%v (the batch was completely written, so it may have been acknowledged)", damage)
	}
	plan := &repairPlan{seg: seg, data: data, off: good, batch: st.next, damage: damage}
	for _, p := range pending {
		if p.t == recEntry {
			if plan.firstIndex == 0 {
				plan.firstIndex = p.index
			}
			plan.lastIndex = p.index
		}
	}
	return seg, plan, nil
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
		seq, _, _, err := decodeCommit(payload)
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
// ".broken" file, zeroes everything from the plan's offset on and syncs.
// tail is the last complete batch, which the cut keeps.
func (l *Log) repair(p *repairPlan, tail markState) error {
	seg, data, off := p.seg, p.data, p.off
	broken := seg.path + ".broken"
	for i := 1; ; i++ {
		if _, err := os.Lstat(broken); errors.Is(err, os.ErrNotExist) {
			break
		}
		broken = fmt.Sprintf("%s.broken.%d", seg.path, i)
	}
	l.opts.Logger.Error("wal: cutting off a torn final write (a batch never acknowledged)",
		"segment", seg.path, "offset", off, "bytes", len(data)-int(off), "torn_batch", p.batch,
		"torn_first_index", p.firstIndex, "torn_last_index", p.lastIndex,
		"kept_batch", tail.batch, "kept_last_index", tail.index, "reason", p.damage.Error(), "evidence", broken)
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
