package wal

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// dirDigest hashes every regular file of dir (and the extra files named),
// so a test can check that a refused Open changed nothing.
func dirDigest(t testing.TB, dir string, extra ...string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, de := range des {
		if de.Type().IsRegular() {
			paths = append(paths, filepath.Join(dir, de.Name()))
		}
	}
	paths = append(paths, extra...)
	var sb strings.Builder
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(&sb, "%s: %v\n", filepath.Base(p), err)
			continue
		}
		fmt.Fprintf(&sb, "%s %d %x\n", filepath.Base(p), len(b), sha256.Sum256(b))
	}
	return sb.String()
}

// mustRefuse opens dir, which must fail with an error wrapping want (and
// ErrCorrupt) that says what to do, and leave every file unchanged.
func mustRefuse(t testing.TB, what, dir string, opts Options, want error, extra ...string) error {
	t.Helper()
	before := dirDigest(t, dir, extra...)
	l, err := Open(dir, opts)
	if err == nil {
		l.Close()
		t.Fatalf("%s: Open succeeded, want %v", what, want)
	}
	if !errors.Is(err, want) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: Open err = %v, want %v", what, err, want)
	}
	if !strings.Contains(err.Error(), "new id with an empty directory") {
		t.Fatalf("%s: error does not say what to do: %v", what, err)
	}
	if after := dirDigest(t, dir, extra...); after != before {
		t.Fatalf("%s: the refused Open changed the directory:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
	return err
}

// recordEnds lists the offsets where the records of a segment file end,
// and which of them end a batch.
func recordEnds(t testing.TB, path string) (ends []int64, batchEnd map[int64]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeSegHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	batchEnd = map[int64]bool{}
	off := int64(h.size())
	ends = append(ends, off)
	for {
		typ, _, n, err := decodeRecord(data[off:], h.salt, 1<<20)
		if err != nil || typ == recInvalid {
			return ends, batchEnd
		}
		off += int64(n)
		ends = append(ends, off)
		if typ == recCommit {
			batchEnd[off] = true
		}
	}
}

// lossLog writes a closed log of several segments, each batch synced.
func lossLog(t testing.TB, dir string, opts Options) []*raftpb.Entry {
	t.Helper()
	l := mustOpen(t, dir, opts)
	var all []*raftpb.Entry
	for i := uint64(1); i <= 120; i += 4 {
		es := ents(i, i+3, 1)
		for _, e := range es {
			e.Data = append(e.Data, make([]byte, 100)...)
		}
		mustAppend(t, l, es, hardState(1, 1, i))
		all = append(all, es...)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n < 4 {
		t.Fatalf("%d segments, want at least 4", n)
	}
	return all
}

// TestTruncationIsDataLoss cuts the last segment and a middle segment of a
// closed log (every batch synced) at every record boundary and at random
// offsets, both by truncating the file and by zeroing everything from the
// cut on (a truncation that keeps the file size). Every such cut loses a
// synced batch, so Open must refuse with ErrDataLoss and change nothing.
// (Before format version 2 a cut at a record boundary of the last segment
// was taken for a torn write and the batches after it were dropped.)
func TestTruncationIsDataLoss(t *testing.T) {
	opts := testOptions()
	src := t.TempDir()
	lossLog(t, src, opts)
	segs := segmentFiles(t, src)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, which := range []string{"last", "middle"} {
		seg := segs[len(segs)-1]
		if which == "middle" {
			seg = segs[len(segs)/2]
		}
		name := filepath.Base(seg)
		ends, batchEnd := recordEnds(t, seg)
		last := ends[len(ends)-1]
		cuts := slices.Clone(ends[:len(ends)-1]) // every record boundary before the end
		for range 20 {
			cuts = append(cuts, rng.Int64N(last))
			cuts = append(cuts, rng.Int64N(segHeaderSize+8))
		}
		if len(cuts) < 10 {
			t.Fatalf("%s segment: only %d record boundaries", which, len(cuts))
		}
		for _, cut := range cuts {
			for _, how := range []string{"truncate", "zero"} {
				what := fmt.Sprintf("%s segment %s cut at %d (batch end %v) by %s", which, name, cut, batchEnd[cut], how)
				d := copyDir(t, src)
				p := filepath.Join(d, name)
				if how == "truncate" {
					if err := os.Truncate(p, cut); err != nil {
						t.Fatal(err)
					}
				} else {
					zeroRange(t, p, cut, last)
				}
				mustRefuse(t, what, d, opts, ErrDataLoss)
			}
		}
	}
}

// TestTornFinalWriteIsRepaired is the other side: a crash while the last
// batch was being written leaves a prefix of it (zeros after the cut, or a
// file cut short where the write grew it). Cutting at every record boundary
// and at random offsets inside the batch in flight must open with exactly
// the acknowledged entries, without reporting data loss.
func TestTornFinalWriteIsRepaired(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.SegmentBytes = 16 << 10
	var image string
	var inflight crashPoint
	armed := false
	opts.crashHook = func(p crashPoint) {
		if armed && p.kind == "write" {
			image, inflight = copyDir(t, dir), p
		}
	}
	l := mustOpen(t, dir, opts)
	var acked []*raftpb.Entry
	for i := uint64(1); i <= 40; i += 4 {
		mustAppend(t, l, ents(i, i+3, 1), hardState(1, 1, i))
		acked = append(acked, ents(i, i+3, 1)...)
	}
	armed = true
	big := ents(41, 60, 1)
	for _, e := range big {
		e.Data = make([]byte, 900) // a batch of several sectors that grows the file
	}
	mustAppend(t, l, big, hardState(1, 1, 41))
	l.Close()
	if image == "" {
		t.Fatal("no crash image")
	}
	name := filepath.Base(inflight.path)
	var cuts []int64
	ends, _ := recordEnds(t, filepath.Join(image, name))
	for _, e := range ends {
		if e >= inflight.off && e < inflight.end {
			cuts = append(cuts, e)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		cuts = append(cuts, inflight.off+rng.Int64N(inflight.end-inflight.off))
	}
	if len(cuts) < 20+10 {
		t.Fatalf("batch in flight has %d record boundaries", len(cuts)-20)
	}
	h := readHeader(t, filepath.Join(image, name))
	if inflight.end <= h.prealloc {
		t.Fatalf("batch in flight [%d, %d) does not grow the file beyond %d", inflight.off, inflight.end, h.prealloc)
	}
	ropts := testOptions()
	ropts.SegmentBytes = opts.SegmentBytes
	for _, cut := range cuts {
		for _, how := range []string{"zero", "file-cut"} {
			if how == "file-cut" && cut < h.prealloc {
				continue // a crash cannot shorten a preallocated file
			}
			d := copyDir(t, image)
			p := filepath.Join(d, name)
			if how == "zero" {
				zeroRange(t, p, cut, inflight.end)
			} else if err := os.Truncate(p, cut); err != nil {
				t.Fatal(err)
			}
			l, err := Open(d, ropts)
			if err != nil {
				t.Fatalf("cut at %d by %s inside the batch in flight [%d, %d): %v", cut, how, inflight.off, inflight.end, err)
			}
			checkLog(t, l, 0, 0, acked)
			l.Close()
		}
	}
}

func readHeader(t testing.TB, path string) segHeader {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := decodeSegHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHoleIsDataLoss zeroes a range inside a middle segment and inside the
// last segment (with batches after it).
func TestHoleIsDataLoss(t *testing.T) {
	opts := testOptions()
	src := t.TempDir()
	lossLog(t, src, opts)
	segs := segmentFiles(t, src)
	for _, seg := range []string{segs[len(segs)/2], segs[len(segs)-1]} {
		ends, _ := recordEnds(t, seg)
		if len(ends) < 6 {
			t.Fatalf("%s has %d records", seg, len(ends))
		}
		for _, hole := range [][2]int64{
			{ends[2], ends[4]},         // whole records
			{ends[2] + 3, ends[3] + 5}, // across a record boundary
			{ends[1], ends[2]},         // one record
		} {
			d := copyDir(t, src)
			zeroRange(t, filepath.Join(d, filepath.Base(seg)), hole[0], hole[1])
			mustRefuse(t, fmt.Sprintf("hole [%d, %d) in %s", hole[0], hole[1], filepath.Base(seg)), d, opts, ErrDataLoss)
		}
	}
}

// TestRemovedSegmentIsDataLoss removes a middle segment, the last segment,
// and the high-water mark.
func TestRemovedSegmentIsDataLoss(t *testing.T) {
	opts := testOptions()
	src := t.TempDir()
	lossLog(t, src, opts)
	segs := segmentFiles(t, src)
	for _, victim := range []string{segs[len(segs)/2], segs[len(segs)-1], filepath.Join(src, "HWM")} {
		d := copyDir(t, src)
		if err := os.Remove(filepath.Join(d, filepath.Base(victim))); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, "removed "+filepath.Base(victim), d, opts, ErrDataLoss)
	}
	// Every segment removed, the mark left.
	d := copyDir(t, src)
	for _, s := range segs {
		if err := os.Remove(filepath.Join(d, filepath.Base(s))); err != nil {
			t.Fatal(err)
		}
	}
	mustRefuse(t, "all segments removed", d, opts, ErrDataLoss)
}

// TestStaleCopyOfDirectory puts back an older copy of the log directory
// after more batches were synced. With the high-water mark outside the
// directory (Options.MarkPath) this is detected; with the mark inside, the
// copy carries its own older mark and cannot be told from a log that never
// had the later batches: that case is left to the consensus layer.
func TestStaleCopyOfDirectory(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "wal")
	opts := testOptions()
	opts.MarkPath = filepath.Join(parent, "wal.hwm")
	l := mustOpen(t, dir, opts)
	mustAppend(t, l, ents(1, 10, 1), hardState(1, 1, 5))
	l.Close()
	stale := copyDir(t, dir)
	l = mustOpen(t, dir, opts)
	mustAppend(t, l, ents(11, 20, 1), hardState(1, 1, 15))
	l.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDirTo(t, stale, dir)
	err := mustRefuse(t, "stale copy", dir, opts, ErrDataLoss, opts.MarkPath)
	if !strings.Contains(err.Error(), "index 20") {
		t.Fatalf("error does not name the last durable index: %v", err)
	}

	// The same with the mark inside the directory: not detectable here.
	dir2 := t.TempDir()
	l = mustOpen(t, dir2, testOptions())
	mustAppend(t, l, ents(1, 10, 1), hardState(1, 1, 5))
	l.Close()
	stale = copyDir(t, dir2)
	l = mustOpen(t, dir2, testOptions())
	mustAppend(t, l, ents(11, 20, 1), hardState(1, 1, 15))
	l.Close()
	l = mustOpen(t, stale, testOptions())
	checkLog(t, l, 0, 0, ents(1, 10, 1))
	l.Close()
}

// TestMarkFromAnotherHistory pairs a log with the mark of a log that wrote
// the same number of batches with other contents: the batch chain tells
// them apart.
func TestMarkFromAnotherHistory(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for i, d := range []string{a, b} {
		l := mustOpen(t, d, testOptions())
		mustAppend(t, l, ents(1, 5, 1), hardState(1, 1, 1))
		mustAppend(t, l, ents(6, 8, uint64(1+i)), hardState(uint64(1+i), 1, 6))
		l.Close()
	}
	mark, err := os.ReadFile(filepath.Join(b, "HWM"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "HWM"), mark, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "mark of another log", a, testOptions(), ErrDataLoss)
}

// TestSplicedSegmentIsDataLoss replaces a middle segment with the same
// segment of another log that wrote as many batches: sequence numbers
// match, the chain does not.
func TestSplicedSegmentIsDataLoss(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for i, d := range []string{a, b} {
		l := mustOpen(t, d, testOptions())
		for j := uint64(1); j <= 120; j += 4 {
			es := ents(j, j+3, 1)
			for _, e := range es {
				e.Data = append(e.Data, make([]byte, 100)...)
			}
			es[0].Data[0] = byte(i)
			mustAppend(t, l, es, hardState(1, 1, j))
		}
		l.Close()
	}
	segs := segmentFiles(t, a)
	mid := filepath.Base(segs[len(segs)/2])
	other, err := os.ReadFile(filepath.Join(b, mid))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, mid), other, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "spliced segment", a, testOptions(), ErrDataLoss)
}

// TestTornMarkUpdate: a torn update of one slot of the mark leaves the
// other slot, the previous mark, in use; both slots damaged is ErrCorrupt.
func TestTornMarkUpdate(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testOptions())
	mustAppend(t, l, ents(1, 10, 1), hardState(1, 1, 5))
	l.Close()
	path := filepath.Join(dir, "HWM")
	_, gen, _, err := readMark(path)
	if err != nil {
		t.Fatal(err)
	}
	newest := int64(gen%2) * markSlotSize
	flipBit(t, path, newest+30, 2)
	l = mustOpen(t, dir, testOptions())
	checkLog(t, l, 0, 0, ents(1, 10, 1))
	l.Close()
	_, gen, _, err = readMark(path)
	if err != nil {
		t.Fatal(err)
	}
	flipBit(t, path, int64(gen%2)*markSlotSize+40, 1)
	flipBit(t, path, int64((gen+1)%2)*markSlotSize+40, 1)
	mustRefuse(t, "both mark slots damaged", dir, testOptions(), ErrCorrupt)
}

// TestMarkWindow documents the window the high-water mark cannot cover:
// batches synced after its last update (at most Options.MarkInterval ago,
// here never, as the background updates are off) can be zeroed away and the
// log opens as after a crash. A new segment always updates the mark.
func TestMarkWindow(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.MarkInterval = -1
	l := mustOpen(t, dir, opts)
	mustAppend(t, l, ents(1, 2, 1), hardState(1, 1, 1))
	seg := l.active()
	off := seg.size
	mustAppend(t, l, ents(3, 4, 1), hardState(1, 1, 3))
	end := seg.size
	// Simulate a crash: no Close, which would update the mark.
	l.wmu.Lock()
	l.stopMarker()
	l.stopPreparer()
	l.closeFiles()
	l.wmu.Unlock()
	zeroRange(t, seg.path, off, end)
	l = mustOpen(t, dir, opts)
	checkLog(t, l, 0, 0, ents(1, 2, 1))
	l.Close()
}

// TestOpenVersion1Log opens a log written in format version 1 (no chain,
// no preallocated size, no mark): it replays, and new batches go to a new
// segment in the current format.
func TestOpenVersion1Log(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for seq, batch := uint64(1), uint64(1); seq <= 2; seq++ {
		h := segHeader{version: 1, salt: uint32(seq * 77), seq: seq, firstBatch: batch}
		b = h.encode()
		b = appendStateRecord(b, h.salt, hardState(1, 1, (seq-1)*3))
		b = appendCommitRecord(b, h.salt, batch, 1, 0)
		batch++
		for i := (seq-1)*3 + 1; i <= seq*3; i++ {
			b = appendEntryRecord(b, h.salt, ent(i, 1))
			b = appendStateRecord(b, h.salt, hardState(1, 1, i))
			b = appendCommitRecord(b, h.salt, batch, 2, 0)
			batch++
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(seq)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l := mustOpen(t, dir, testOptions())
	checkLog(t, l, 0, 0, ents(1, 6, 1))
	if v := l.active().version; v != segVersion {
		t.Fatalf("active segment has version %d, want %d", v, segVersion)
	}
	mustAppend(t, l, ents(7, 8, 1), hardState(1, 1, 8))
	l.Close()
	segs := segmentFiles(t, dir)
	if len(segs) != 3 || readHeader(t, segs[0]).version != 1 || readHeader(t, segs[2]).version != segVersion {
		t.Fatalf("segments after the upgrade: %v", segs)
	}
	l = mustOpen(t, dir, testOptions())
	checkLog(t, l, 0, 0, ents(1, 8, 1))
	l.Close()

	// Truncating the new segment is now detected.
	ends, _ := recordEnds(t, segs[2])
	if err := os.Truncate(segs[2], ends[len(ends)-2]); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "truncated after the upgrade", dir, testOptions(), ErrDataLoss)
}

// TestRefusalChangesNothing: when Open refuses a log, neither a torn tail
// that would have been repaired nor leftover temporary files are touched
// (the checks run before any repair).
func TestRefusalChangesNothing(t *testing.T) {
	dir := t.TempDir()
	h := segHeader{version: 1, salt: 5, seq: 1, firstBatch: 1}
	b := h.encode()
	b = appendCommitRecord(b, h.salt, 1, 0, 0)
	b = appendEntryRecord(b, h.salt, ent(1, 1))
	b = appendStateRecord(b, h.salt, hardState(1, 1, 2)) // commit beyond the last entry
	b = appendCommitRecord(b, h.salt, 2, 2, 0)
	b = appendEntryRecord(b, h.salt, ent(2, 1)) // a torn batch: no commit record
	b = append(b, make([]byte, 1024)...)
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "next-1.wal.tmp"), []byte("leftover"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The LOCK file of a log that was opened before (Open creates it to
	// take the lock).
	if err := os.WriteFile(filepath.Join(dir, "LOCK"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "commit beyond the last entry behind a torn tail", dir, testOptions(), ErrCorrupt)
	if m, _ := filepath.Glob(filepath.Join(dir, "*.broken*")); len(m) != 0 {
		t.Fatalf("evidence files written by a refused Open: %v", m)
	}
}

// TestCrashWhileCreatingMark: a crash while a new log's mark was being
// created leaves it empty, zero or short; Open starts the log afresh.
func TestCrashWhileCreatingMark(t *testing.T) {
	full := append(encodeMarkSlot(markState{}, 0), make([]byte, markSlotSize)...)
	for _, b := range [][]byte{nil, make([]byte, markFileSize), full[:markSlotSize], full[:100]} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "HWM"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, testOptions())
		if err != nil {
			t.Fatalf("mark of %d bytes: %v", len(b), err)
		}
		mustAppend(t, l, ents(1, 3, 1), hardState(1, 1, 1))
		l.Close()
		l = mustOpen(t, dir, testOptions())
		checkLog(t, l, 0, 0, ents(1, 3, 1))
		l.Close()
	}
}
