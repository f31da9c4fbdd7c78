package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Defaults for Options.
const (
	// DefaultSegmentBytes is the default size at which the log rolls over to
	// a new segment file.
	DefaultSegmentBytes = 64 << 20
	// DefaultMaxEntryBytes is the default limit on the data of one entry.
	DefaultMaxEntryBytes = 64 << 20
	// DefaultCacheBytes is the default budget of the in-memory cache of
	// recently appended entries. Older entries are read from disk.
	DefaultCacheBytes = 8 << 20

	// MinSegmentBytes is the smallest accepted Options.SegmentBytes.
	MinSegmentBytes = 1 << 10
	// MaxMaxEntryBytes is the largest accepted Options.MaxEntryBytes.
	MaxMaxEntryBytes = maxRecordLen - entryPayloadHeader
)

// Errors returned by the log. Corruption errors wrap ErrCorrupt and name the
// segment and offset. Storage methods also return raft's own sentinels
// (raft.ErrCompacted, raft.ErrUnavailable, raft.ErrSnapOutOfDate,
// raft.ErrSnapshotTemporarilyUnavailable) unwrapped, as raft compares them
// with ==.
var (
	ErrCorrupt  = errors.New("wal: corrupt log")
	ErrClosed   = errors.New("wal: log closed")
	ErrLocked   = errors.New("wal: directory locked by another process")
	ErrInvalid  = errors.New("wal: invalid argument")
	ErrTooLarge = errors.New("wal: entry too large")
	ErrFailed   = errors.New("wal: log failed after a write error")
	// ErrDataLoss is returned by Open when batches that were durably
	// written are gone: a segment truncated, zeroed or removed, or the
	// directory replaced by an older copy. Such errors also wrap
	// ErrCorrupt. Their message names what is missing and what to do.
	ErrDataLoss = errors.New("wal: data loss")
)

// Options configures a Log. The zero value is valid and means defaults.
type Options struct {
	// SegmentBytes is the size at which the log starts a new segment file;
	// segments are preallocated to this size. A batch larger than a segment
	// gets a segment of its own. Default DefaultSegmentBytes, minimum
	// MinSegmentBytes.
	SegmentBytes int64
	// MaxEntryBytes bounds the data of one entry. Larger entries are
	// rejected by Append with ErrTooLarge, and larger records found on disk
	// are treated as corruption. Default DefaultMaxEntryBytes, at most
	// MaxMaxEntryBytes.
	MaxEntryBytes int
	// CacheBytes bounds the cache of recently appended entries served
	// without disk reads. Default DefaultCacheBytes; negative disables it.
	CacheBytes int64
	// NoSync skips every fsync. Only for tests: nothing is durable.
	NoSync bool
	// Logger receives repair and compaction events. Nil is silent.
	Logger *slog.Logger
	// MarkPath is the high-water mark file, which records the last durable
	// batch so that Open detects lost batches. Default dir/HWM. Keeping it
	// outside dir (in a parent directory the caller owns) also detects dir
	// being replaced by an older copy of itself.
	MarkPath string
	// MarkInterval is how often the high-water mark is brought up to date
	// in the background while batches are synced (it is also updated at
	// every new segment and at Close). Loss of the batches synced since the
	// last update cannot be told from a crash. Default
	// DefaultMarkInterval; negative disables the background updates.
	MarkInterval time.Duration

	// crashHook, when set, is called at points where a crash would leave
	// the directory in an interesting state (tests only).
	crashHook func(crashPoint)
}

// crashPoint describes where a crash simulated by a test would happen.
type crashPoint struct {
	kind string // "write", "segment-tmp", "segment-renamed", "segment-removed"
	path string // the file concerned
	off  int64  // for "write": the unsynced byte range [off, end)
	end  int64
}

func (o Options) withDefaults() (Options, error) {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentBytes < MinSegmentBytes {
		return o, fmt.Errorf("wal: SegmentBytes %d below minimum %d: %w", o.SegmentBytes, MinSegmentBytes, ErrInvalid)
	}
	if o.MaxEntryBytes == 0 {
		o.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if o.MaxEntryBytes < 0 || o.MaxEntryBytes > MaxMaxEntryBytes {
		return o, fmt.Errorf("wal: MaxEntryBytes %d outside [1, %d]: %w", o.MaxEntryBytes, MaxMaxEntryBytes, ErrInvalid)
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MarkInterval == 0 {
		o.MarkInterval = DefaultMarkInterval
	}
	return o, nil
}

// maxPayload bounds the payload of any record.
func (o Options) maxPayload() int { return o.MaxEntryBytes + entryPayloadHeader }

// segment is one file of the log.
type segment struct {
	version  uint32
	seq      uint64
	path     string
	f        *os.File
	salt     uint32
	size     int64  // end of the last intact batch: where the next write goes
	headSize int64  // end of the head batch
	maxIndex uint64 // highest entry index written into the segment
}

// loc is where an entry lives on disk.
type loc struct {
	term uint64
	seg  *segment
	off  int64
	size uint32 // record size including header and padding
}

// Log is a segmented write-ahead log of raft entries, hard state and
// snapshot markers. It implements raft.Storage. Append, SetSnapshot and
// Compact are serialized against each other; the read methods may run
// concurrently with them and with each other.
type Log struct {
	dir  string
	opts Options
	lock *os.File

	wmu sync.Mutex // serializes writers; held across disk writes and fsyncs
	buf []byte     // encode buffer, guarded by wmu

	mu         sync.RWMutex // guards everything below; writers hold it only to publish
	closed     bool
	failed     error
	segs       []*segment // oldest first; the last one is written
	nextBatch  uint64
	hs         *raftpb.HardState
	hsPending  bool // hs holds a commit index not yet written (Save without sync)
	snap       *raftpb.SnapshotMetadata
	dummyIndex uint64 // index of the entry before the first one
	dummyTerm  uint64
	locs       []loc // locs[i] is entry dummyIndex+1+i
	cache      entryCache
	stats      Stats

	cacheHits, cacheMisses atomic.Uint64 // updated by readers under the read lock

	prep *preparer // nil until replay is done; guarded by wmu

	chain    uint32    // chain value of the last batch written; guarded by wmu
	durable  markState // the last synced batch; guarded by mu
	markPath string

	markMu    sync.Mutex // guards the mark file and the two fields below
	markFile  *os.File
	markGen   uint64
	markSaved markState

	markStop, markDone chan struct{} // the marker goroutine; guarded by wmu
}

// Open opens the log in dir, creating dir if needed, and replays it. It takes
// an exclusive lock on the directory (ErrLocked if another Log holds it).
//
// Replay starts from the oldest segment; for each index the latest record
// wins, so a truncated-and-rewritten suffix is replayed as it was last
// written. A batch that was never completely written at the end of the last
// segment (a torn tail: the Append never returned) is cut off: the segment is
// first copied to a ".broken" file as evidence, then the tail is zeroed and
// synced. Every check runs before anything is changed. Lost batches that
// were synced (a truncated, zeroed or removed segment, a log that ends
// before the batch the high-water mark names) are reported as an error
// wrapping ErrDataLoss and ErrCorrupt; other damage anywhere else, or
// damage followed by later batches, as an error wrapping ErrCorrupt. After
// a refusal nothing on disk has changed. See the package documentation for
// the fault model.
func Open(dir string, opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: create dir: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && !opts.NoSync {
		// Make the new directory's own entry durable.
		if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return nil, err
		}
	}
	lf, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: open lock file: %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	if opts.MarkPath == "" {
		opts.MarkPath = filepath.Join(dir, "HWM")
	}
	l := &Log{
		markPath: opts.MarkPath,
		dir:      dir,
		opts:     opts,
		lock:     lf,
		hs:       &raftpb.HardState{},
		snap:     &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}},
		cache:    entryCache{max: opts.CacheBytes},
	}
	if err := l.replay(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.startPreparer()
	l.startMarker()
	return l, nil
}

// Append writes ents and hs as one batch and syncs it with a single fsync: it
// is durable when Append returns nil. Entries must have consecutive indexes.
// An entry whose index is at or below the last index replaces that entry and
// everything after it (raft's conflicting-suffix truncation). Entries below
// FirstIndex are ignored, as raft.MemoryStorage does. A nil or empty hs
// leaves the hard state unchanged. hs.Commit must not exceed the last index
// after the append, so a Ready that carries a snapshot must call SetSnapshot
// before Append.
//
// After a write or sync error the log refuses further writes (ErrFailed):
// whether the failed batch reached the disk is unknown.
func (l *Log) Append(ents []*raftpb.Entry, hs *raftpb.HardState) error {
	return l.Save(ents, hs, true)
}

// Save is Append for a raft Ready: pass rd.Entries, rd.HardState and
// rd.MustSync. Raft sets MustSync false only when nothing but the commit
// index changed; Save then keeps the new hard state in memory (InitialState
// reports it) and writes it with the next batch or at Close, so a crash may
// bring back the previous commit index, which raft tolerates. In every
// other case Save writes and syncs like Append: nothing unsynced is ever
// left in the log, which keeps torn-tail detection exact.
func (l *Log) Save(ents []*raftpb.Entry, hs *raftpb.HardState, sync bool) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	first, last := l.dummyIndex+1, l.dummyIndex+uint64(len(l.locs))
	for len(ents) > 0 && ents[0].GetIndex() < first {
		ents = ents[1:]
	}
	hasHS := hs != nil && !raft.IsEmptyHardState(hs)
	if len(ents) == 0 && !hasHS {
		return nil
	}
	newLast := last
	if len(ents) > 0 {
		start := ents[0].GetIndex()
		if start > last+1 {
			return fmt.Errorf("wal: append at index %d leaves a gap after last index %d: %w", start, last, ErrInvalid)
		}
		if start <= last && start <= l.hs.GetCommit() {
			return fmt.Errorf("wal: append at index %d would truncate committed entries (commit %d): %w",
				start, l.hs.GetCommit(), ErrInvalid)
		}
		for i, e := range ents {
			if e.GetIndex() != start+uint64(i) {
				return fmt.Errorf("wal: entry %d has index %d, want %d: %w", i, e.GetIndex(), start+uint64(i), ErrInvalid)
			}
			if len(e.Data) > l.opts.MaxEntryBytes {
				return fmt.Errorf("%w: entry %d has %d bytes, limit %d", ErrTooLarge, e.GetIndex(), len(e.Data), l.opts.MaxEntryBytes)
			}
		}
		newLast = ents[len(ents)-1].GetIndex()
	}
	if hasHS && hs.GetCommit() > newLast {
		return fmt.Errorf("wal: hard state commit %d beyond last index %d: %w", hs.GetCommit(), newLast, ErrInvalid)
	}
	if !sync && len(ents) == 0 && hs.GetTerm() == l.hs.GetTerm() && hs.GetVote() == l.hs.GetVote() {
		l.mu.Lock()
		l.hs = proto.Clone(hs).(*raftpb.HardState)
		l.hsPending = true
		l.mu.Unlock()
		return nil
	}
	if !hasHS && l.hsPending {
		hs, hasHS = l.hs, true
	}

	size := recordSize(statePayloadSize) + recordSize(commitPayloadSize)
	for _, e := range ents {
		size += recordSize(entryPayloadHeader + len(e.Data))
	}
	if err := l.maybeCut(int64(size)); err != nil {
		return err
	}
	seg := l.active()
	buf := l.buf[:0]
	offs := make([]int64, len(ents))
	for i, e := range ents {
		offs[i] = seg.size + int64(len(buf))
		buf = appendEntryRecord(buf, seg.salt, e)
	}
	count := uint32(len(ents))
	if hasHS {
		buf = appendStateRecord(buf, seg.salt, hs)
		count++
	}
	chain := batchChain(l.chain, buf, l.nextBatch)
	buf = appendCommitRecord(buf, seg.salt, l.nextBatch, count, chain)
	if err := l.writeBatch(seg, buf, chain, newLast); err != nil {
		return err
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if len(ents) > 0 {
		keep := ents[0].GetIndex() - l.dummyIndex - 1
		l.locs = l.locs[:keep]
		for i, e := range ents {
			l.locs = append(l.locs, loc{
				term: e.GetTerm(), seg: seg, off: offs[i],
				size: uint32(recordSize(entryPayloadHeader + len(e.Data))),
			})
		}
		seg.maxIndex = max(seg.maxIndex, newLast)
		l.cache.put(ents)
		l.stats.Entries += uint64(len(ents))
	}
	if hasHS {
		l.hs = proto.Clone(hs).(*raftpb.HardState)
		l.hsPending = false
	}
	l.stats.Appends++
	return nil
}

// SetSnapshot durably records that a snapshot described by meta exists. The
// caller must have made the snapshot data durable first. If the log holds
// meta.Index with term meta.Term, the entries are kept (a snapshot taken
// locally; use Compact to drop the covered prefix); otherwise every entry is
// discarded and the log continues after meta.Index (a snapshot received from
// the leader). A snapshot not newer than the current one returns
// raft.ErrSnapOutOfDate.
func (l *Log) SetSnapshot(meta *raftpb.SnapshotMetadata) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	if meta == nil {
		return fmt.Errorf("wal: nil snapshot metadata: %w", ErrInvalid)
	}
	if cur := l.snap.GetIndex(); cur != 0 && cur >= meta.GetIndex() {
		return raft.ErrSnapOutOfDate
	}
	t, err := l.term(meta.GetIndex())
	keep := err == nil && t == meta.GetTerm()
	if !keep && meta.GetIndex() < l.hs.GetCommit() {
		return fmt.Errorf("wal: snapshot at index %d term %d conflicts with the log below commit %d: %w",
			meta.GetIndex(), meta.GetTerm(), l.hs.GetCommit(), ErrInvalid)
	}
	meta = proto.Clone(meta).(*raftpb.SnapshotMetadata)
	if meta.ConfState == nil {
		meta.ConfState = &raftpb.ConfState{}
	}
	var flags byte
	if !keep {
		flags = snapDiscard
	}
	if err := l.maybeCut(int64(recordSize(proto.Size(meta)+1) + recordSize(commitPayloadSize))); err != nil {
		return err
	}
	seg := l.active()
	buf, err := appendSnapshotRecord(l.buf[:0], seg.salt, meta, flags)
	if err != nil {
		return err
	}
	chain := batchChain(l.chain, buf, l.nextBatch)
	buf = appendCommitRecord(buf, seg.salt, l.nextBatch, 1, chain)
	last := l.dummyIndex + uint64(len(l.locs))
	if !keep {
		last = meta.GetIndex()
	}
	if err := l.writeBatch(seg, buf, chain, last); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snap = meta
	if !keep {
		l.locs = nil
		l.dummyIndex, l.dummyTerm = meta.GetIndex(), meta.GetTerm()
		l.cache.reset()
	}
	return nil
}

// Compact drops the entries up to and including index, which must not exceed
// the snapshot index recorded by SetSnapshot, and deletes the segment files
// that hold nothing else. Compacting at or below the current compaction
// point returns raft.ErrCompacted. Dropped entries may be replayed again by a
// later Open if their segment is still needed; Open always starts the log
// right after the snapshot index.
func (l *Log) Compact(index uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable(); err != nil {
		return err
	}
	if index <= l.dummyIndex {
		return raft.ErrCompacted
	}
	if index > l.snap.GetIndex() {
		return fmt.Errorf("wal: compact to %d beyond snapshot index %d: %w", index, l.snap.GetIndex(), ErrInvalid)
	}
	if last := l.dummyIndex + uint64(len(l.locs)); index > last {
		return fmt.Errorf("wal: compact to %d beyond last index %d: %w", index, last, raft.ErrUnavailable)
	}
	l.mu.Lock()
	i := index - l.dummyIndex
	l.dummyTerm = l.locs[i-1].term
	l.locs = append([]loc(nil), l.locs[i:]...)
	l.dummyIndex = index
	l.cache.compact(index)
	var drop []*segment
	for len(l.segs) > 1 && l.segs[0].maxIndex <= index {
		drop = append(drop, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()

	if len(drop) == 0 {
		return nil
	}
	for _, s := range drop {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			return l.fail(fmt.Errorf("wal: remove segment: %w", err))
		}
		l.hook(crashPoint{kind: "segment-removed", path: s.path})
		l.opts.Logger.Info("wal: removed segment", "path", s.path, "compact_index", index)
	}
	if err := l.syncDir(); err != nil {
		return l.fail(err)
	}
	return nil
}

// Close writes a hard state kept in memory by Save without sync, then
// releases the files and the directory lock. It is idempotent.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.stopMarker()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.stopPreparer()
	var err error
	if l.hsPending && l.failed == nil && len(l.segs) > 0 {
		// Persist a commit index kept in memory by Save without sync.
		seg := l.active()
		buf := appendStateRecord(nil, seg.salt, l.hs)
		chain := batchChain(l.chain, buf, l.nextBatch)
		buf = appendCommitRecord(buf, seg.salt, l.nextBatch, 1, chain)
		if _, err = seg.f.WriteAt(buf, seg.size); err == nil && !l.opts.NoSync {
			err = fdatasync(seg.f)
		}
		if err == nil {
			seg.size += int64(len(buf))
			l.durable = markState{seg: seg.seq, batch: l.nextBatch, end: seg.size, chain: chain,
				index: l.dummyIndex + uint64(len(l.locs))}
			l.nextBatch++
			l.chain = chain
		}
	}
	if l.failed == nil {
		err = errors.Join(err, l.saveMark(l.durable))
	}
	return errors.Join(err, l.closeFiles())
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segs {
		errs = append(errs, s.f.Close())
	}
	if l.lock != nil {
		errs = append(errs, l.lock.Close())
	}
	l.markMu.Lock()
	if l.markFile != nil {
		errs = append(errs, l.markFile.Close())
		l.markFile = nil
	}
	l.markMu.Unlock()
	l.cache.reset()
	l.locs = nil
	return errors.Join(errs...)
}

// writable reports why the log cannot be written. Caller holds wmu.
func (l *Log) writable() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return l.failed
}

// fail records a write error; later writes return it. Caller holds wmu.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		l.opts.Logger.Error("wal: write failed; log is read-only until reopened", "err", err)
	}
	return l.failed
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

func (l *Log) hook(p crashPoint) {
	if l.opts.crashHook != nil {
		l.opts.crashHook(p)
	}
}

// writeBatch writes an encoded batch at the end of seg and syncs it. chain
// is the batch's chain value and index the last log index after it.
func (l *Log) writeBatch(seg *segment, buf []byte, chain uint32, index uint64) error {
	if cap(buf) <= 4<<20 {
		l.buf = buf[:0]
	} else {
		l.buf = nil
	}
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		return l.fail(fmt.Errorf("wal: write %s: %w", seg.path, err))
	}
	l.hook(crashPoint{kind: "write", path: seg.path, off: seg.size, end: seg.size + int64(len(buf))})
	if err := l.sync(seg.f); err != nil {
		return l.fail(fmt.Errorf("wal: sync %s: %w", seg.path, err))
	}
	l.mu.Lock()
	seg.size += int64(len(buf))
	l.durable = markState{seg: seg.seq, batch: l.nextBatch, end: seg.size, chain: chain, index: index}
	l.chain = chain
	l.nextBatch++
	l.stats.BytesWritten += uint64(len(buf))
	l.mu.Unlock()
	return nil
}

func (l *Log) sync(f *os.File) error {
	if l.opts.NoSync {
		return nil
	}
	start := time.Now()
	err := fdatasync(f)
	d := time.Since(start)
	l.mu.Lock()
	l.stats.recordFsync(d)
	l.mu.Unlock()
	return err
}

func (l *Log) syncDir() error {
	if l.opts.NoSync {
		return nil
	}
	return syncDir(l.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync dir: %w", err)
	}
	return nil
}

// maybeCut starts a new segment if a batch of n bytes does not fit in the
// active one (unless the active segment holds nothing but its head).
func (l *Log) maybeCut(n int64) error {
	seg := l.active()
	if seg.size+n <= l.opts.SegmentBytes || seg.size <= seg.headSize {
		return nil
	}
	if err := l.cut(); err != nil {
		return l.fail(err)
	}
	return nil
}

// cut seals the active segment and starts a new one, and records the new
// segment's head batch in the high-water mark, so that losing the whole
// newest segment is always detected. The sealed segment keeps its
// preallocated size: a segment shorter than that was truncated.
func (l *Log) cut() error {
	seg := l.active()
	last := l.dummyIndex + uint64(len(l.locs))
	next, chain, err := l.createSegment(seg.seq+1, l.nextBatch, last, l.chain)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.segs = append(l.segs, next)
	l.durable = markState{seg: next.seq, batch: l.nextBatch, end: next.size, chain: chain, index: last}
	l.chain = chain
	l.nextBatch++
	l.stats.Segments++
	m := l.durable
	l.mu.Unlock()
	l.opts.Logger.Debug("wal: new segment", "path", next.path, "first_batch", l.nextBatch-1)
	return l.saveMark(m)
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x.wal", seq) }

// createSegment atomically creates segment seq holding its header and a head
// batch (the current hard state and snapshot marker): write to a temporary
// file, preallocate, sync, rename, sync the directory.
func (l *Log) createSegment(seq, batch, baseIndex uint64, prevChain uint32) (*segment, uint32, error) {
	name := segmentName(seq)
	path := filepath.Join(l.dir, name)
	pf, err := l.takePrepared()
	if err != nil {
		if l.prep != nil {
			l.opts.Logger.Warn("wal: segment preparation failed; creating it directly", "err", err)
		}
		if pf = l.prepareFile(); pf.err != nil {
			return nil, 0, pf.err
		}
	}
	f, tmp := pf.f, pf.path
	ok := false
	defer func() {
		if !ok {
			pf.discard()
		}
	}()
	h := segHeader{salt: rand.Uint32(), seq: seq, firstBatch: batch, baseIndex: baseIndex, prealloc: pf.size, prevChain: prevChain}
	buf := h.encode()
	count := uint32(0)
	if !raft.IsEmptyHardState(l.hs) {
		buf = appendStateRecord(buf, h.salt, l.hs)
		count++
	}
	if l.snap.GetIndex() != 0 || proto.Size(l.snap.GetConfState()) != 0 {
		if buf, err = appendSnapshotRecord(buf, h.salt, l.snap, 0); err != nil {
			return nil, 0, err
		}
		count++
	}
	chain := batchChain(prevChain, buf[h.size():], batch)
	buf = appendCommitRecord(buf, h.salt, batch, count, chain)
	if _, err := f.WriteAt(buf, 0); err != nil {
		return nil, 0, fmt.Errorf("wal: write %s: %w", tmp, err)
	}
	if err := l.sync(f); err != nil {
		return nil, 0, fmt.Errorf("wal: sync %s: %w", tmp, err)
	}
	l.hook(crashPoint{kind: "segment-tmp", path: tmp})
	if err := os.Rename(tmp, path); err != nil {
		return nil, 0, fmt.Errorf("wal: rename %s: %w", tmp, err)
	}
	l.hook(crashPoint{kind: "segment-renamed", path: path, end: int64(len(buf))})
	if err := l.syncDir(); err != nil {
		return nil, 0, err
	}
	ok = true
	l.mu.Lock()
	l.stats.BytesWritten += uint64(len(buf))
	l.mu.Unlock()
	return &segment{version: segVersion, seq: seq, path: path, f: f, salt: h.salt, size: int64(len(buf)), headSize: int64(len(buf))}, chain, nil
}
