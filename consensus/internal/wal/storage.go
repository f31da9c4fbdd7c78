package wal

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var _ raft.Storage = (*Log)(nil)

// InitialState returns the hard state and the ConfState of the latest
// snapshot marker (empty, never nil, if there is none).
func (l *Log) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	cs := l.snap.GetConfState()
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	return proto.Clone(l.hs).(*raftpb.HardState), proto.Clone(cs).(*raftpb.ConfState), nil
}

// HardState returns the last hard state written.
func (l *Log) HardState() *raftpb.HardState {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return proto.Clone(l.hs).(*raftpb.HardState)
}

// Entries returns the entries in [lo, hi), at most maxSize bytes of them as
// raft counts them (encoded protobuf size) but at least one if any. The slice is the
// caller's; the entries must not be modified. Recent entries come from
// memory, older ones from disk.
func (l *Log) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if lo <= l.dummyIndex {
		return nil, raft.ErrCompacted
	}
	last := l.dummyIndex + uint64(len(l.locs))
	if hi > last+1 {
		return nil, raft.ErrUnavailable
	}
	if lo > hi {
		return nil, fmt.Errorf("wal: entries [%d, %d): %w", lo, hi, ErrInvalid)
	}
	var out []*raftpb.Entry
	var size uint64
	add := func(e *raftpb.Entry) bool {
		size += uint64(entrySize(e))
		if len(out) > 0 && size > maxSize {
			return false
		}
		out = append(out, e)
		return size < maxSize
	}
	for i := lo; i < hi; {
		if e := l.cache.get(i); e != nil {
			l.cacheHits.Add(1)
			if !add(e) {
				break
			}
			i++
			continue
		}
		// Read a run of entries that sit one after another in one segment.
		l.cacheMisses.Add(1)
		first := l.locs[i-l.dummyIndex-1]
		end := first.off + int64(first.size)
		j := i + 1
		for ; j < hi && l.cache.get(j) == nil && end-first.off < readChunk; j++ {
			c := l.locs[j-l.dummyIndex-1]
			if c.seg != first.seg || c.off != end {
				break
			}
			end += int64(c.size)
		}
		ents, err := l.readRun(i, j, first, end)
		if err != nil {
			return nil, err
		}
		full := false
		for _, e := range ents {
			if !add(e) {
				full = true
				break
			}
		}
		if full {
			break
		}
		i = j
	}
	return out, nil
}

// readChunk bounds a single read of consecutive records.
const readChunk = 1 << 20

// readRun reads and verifies entries [lo, hi) stored contiguously from
// first.off to end in first.seg. Caller holds mu (read).
func (l *Log) readRun(lo, hi uint64, first loc, end int64) ([]*raftpb.Entry, error) {
	buf := make([]byte, end-first.off)
	if _, err := first.seg.f.ReadAt(buf, first.off); err != nil {
		return nil, fmt.Errorf("%w: read entries %d..%d from %s at %d: %v", ErrCorrupt, lo, hi-1, first.seg.path, first.off, err)
	}
	out := make([]*raftpb.Entry, 0, hi-lo)
	for i, p := lo, 0; i < hi; i++ {
		t, payload, n, err := decodeRecord(buf[p:], first.seg.salt, l.opts.maxPayload())
		if err == nil && t != recEntry {
			err = fmt.Errorf("record type %v", t)
		}
		var e *raftpb.Entry
		if err == nil {
			e, err = decodeEntry(payload, false)
		}
		if err == nil && (e.GetIndex() != i || e.GetTerm() != l.locs[i-l.dummyIndex-1].term) {
			err = fmt.Errorf("found entry %d term %d", e.GetIndex(), e.GetTerm())
		}
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d in %s at offset %d: %v", ErrCorrupt, i, first.seg.path, first.off+int64(p), err)
		}
		out = append(out, e)
		p += n
	}
	return out, nil
}

// Term returns the term of entry i, for i in [FirstIndex()-1, LastIndex()].
func (l *Log) Term(i uint64) (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.term(i)
}

// term is Term without locking; callers hold mu or wmu.
func (l *Log) term(i uint64) (uint64, error) {
	switch {
	case i < l.dummyIndex:
		return 0, raft.ErrCompacted
	case i == l.dummyIndex:
		return l.dummyTerm, nil
	case i > l.dummyIndex+uint64(len(l.locs)):
		return 0, raft.ErrUnavailable
	}
	return l.locs[i-l.dummyIndex-1].term, nil
}

// FirstIndex returns the index of the first entry available.
func (l *Log) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.dummyIndex + 1, nil
}

// LastIndex returns the index of the last entry (the snapshot index if the
// log holds no entries).
func (l *Log) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.dummyIndex + uint64(len(l.locs)), nil
}

// Snapshot returns the latest snapshot marker as a raftpb.Snapshot with nil
// Data: the data lives in the snapshot store. Without a marker it returns
// raft.ErrSnapshotTemporarilyUnavailable.
func (l *Log) Snapshot() (*raftpb.Snapshot, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.snap.GetIndex() == 0 {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return &raftpb.Snapshot{Metadata: proto.Clone(l.snap).(*raftpb.SnapshotMetadata)}, nil
}

// SnapshotMetadata returns the latest snapshot marker (index 0 if none).
func (l *Log) SnapshotMetadata() *raftpb.SnapshotMetadata {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return proto.Clone(l.snap).(*raftpb.SnapshotMetadata)
}

// Stats returns counters describing the log's work so far.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	s := l.stats
	s.CacheHits = l.cacheHits.Load()
	s.CacheMisses = l.cacheMisses.Load()
	s.Segments = len(l.segs)
	s.CachedEntries = len(l.cache.ents)
	s.CachedBytes = l.cache.bytes
	return s
}

// FsyncBuckets are the upper bounds of Stats.FsyncHistogram's buckets; the
// last bucket counts everything slower.
var FsyncBuckets = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond,
}

// Stats describes the work done by a Log since Open.
type Stats struct {
	Appends      uint64        // Append calls that wrote a batch
	Entries      uint64        // entries written by Append
	BytesWritten uint64        // bytes written to segments, headers included
	Fsyncs       uint64        // fdatasync calls (none with NoSync)
	FsyncTotal   time.Duration // total time spent in fdatasync
	FsyncMax     time.Duration // slowest fdatasync
	// FsyncHistogram[i] counts fsyncs no slower than FsyncBuckets[i]; the
	// last element counts the rest.
	FsyncHistogram [len(FsyncBuckets) + 1]uint64
	Segments       int    // segment files in use
	CachedEntries  int    // entries in the in-memory cache
	CachedBytes    int64  // bytes of the cached entries (approximate)
	CacheHits      uint64 // entries served by Entries from memory
	CacheMisses    uint64 // runs of entries Entries read from disk
}

func (s *Stats) recordFsync(d time.Duration) {
	s.Fsyncs++
	s.FsyncTotal += d
	s.FsyncMax = max(s.FsyncMax, d)
	i := 0
	for i < len(FsyncBuckets) && d > FsyncBuckets[i] {
		i++
	}
	s.FsyncHistogram[i]++
}
