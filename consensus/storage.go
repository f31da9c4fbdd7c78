package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// logStore is the durable raft log the node writes through. raft reads it
// through the embedded raft.Storage.
type logStore interface {
	raft.Storage
	// Append makes ents and hs durable (one sync per call), first discarding
	// any stored entries at or after ents[0].Index.
	Append(ents []*raftpb.Entry, hs *raftpb.HardState) error
	// Save is Append for a Ready: with sync false (raft's MustSync false:
	// only the commit index changed) it may defer writing hs.
	Save(ents []*raftpb.Entry, hs *raftpb.HardState, sync bool) error
	// SetSnapshot records that a snapshot at meta is durable in the snapshot
	// store; entries the snapshot covers become unavailable and, if the log
	// does not contain meta's index and term, the whole log is discarded.
	SetSnapshot(meta *raftpb.SnapshotMetadata) error
	// Compact discards entries up to and including index.
	Compact(index uint64) error
	Close() error
}

// snapStore keeps snapshot streams.
type snapStore interface {
	Create(meta *raftpb.SnapshotMetadata) (snapWriter, error)
	Open(index uint64) (*raftpb.SnapshotMetadata, io.ReadCloser, error)
	// Prune deletes snapshots older than index (the one the log records).
	Prune(index uint64)
}

type snapWriter interface {
	io.Writer
	Commit() error
	Abort() error
}

// MemoryStore keeps a member's log and snapshots in memory. Pass it in
// Config.Memory; starting a new Node over the same MemoryStore after Close
// resumes from its state, which is how tests exercise restarts. It is safe
// for concurrent use but holds one member's state: never share one between
// two running nodes.
type MemoryStore struct {
	log   *memLog
	snaps *memSnaps
	idMu  sync.Mutex
	ident *identity // created on first start
}

// memSnaps keeps snapshots by index.
type memSnaps struct {
	mu    sync.Mutex
	snaps map[uint64]memSnap
}

type memSnap struct {
	meta *raftpb.SnapshotMetadata
	data []byte
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{log: &memLog{ms: raft.NewMemoryStorage()}, snaps: &memSnaps{snaps: make(map[uint64]memSnap)}}
}

// LastIndex returns the index of the last entry in the stored log.
func (s *MemoryStore) LastIndex() uint64 {
	i, _ := s.log.ms.LastIndex()
	return i
}

// memLog adapts raft.MemoryStorage to logStore.
type memLog struct {
	ms *raft.MemoryStorage
}

func (l *memLog) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return l.ms.InitialState()
}
func (l *memLog) Entries(lo, hi, max uint64) ([]*raftpb.Entry, error) {
	return l.ms.Entries(lo, hi, max)
}
func (l *memLog) Term(i uint64) (uint64, error)       { return l.ms.Term(i) }
func (l *memLog) LastIndex() (uint64, error)          { return l.ms.LastIndex() }
func (l *memLog) FirstIndex() (uint64, error)         { return l.ms.FirstIndex() }
func (l *memLog) Snapshot() (*raftpb.Snapshot, error) { return l.ms.Snapshot() }
func (l *memLog) Close() error                        { return nil }

func (l *memLog) Append(ents []*raftpb.Entry, hs *raftpb.HardState) error {
	if len(ents) > 0 {
		if err := l.ms.Append(ents); err != nil {
			return err
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		return l.ms.SetHardState(hs)
	}
	return nil
}

func (l *memLog) Save(ents []*raftpb.Entry, hs *raftpb.HardState, _ bool) error {
	return l.Append(ents, hs)
}

func (l *memLog) SetSnapshot(meta *raftpb.SnapshotMetadata) error {
	cur, err := l.ms.Snapshot()
	if err != nil {
		return err
	}
	if meta.GetIndex() <= cur.GetMetadata().GetIndex() {
		return nil
	}
	if t, err := l.ms.Term(meta.GetIndex()); err == nil && t == meta.GetTerm() {
		_, err := l.ms.CreateSnapshot(meta.GetIndex(), meta.GetConfState(), nil)
		return err
	}
	return l.ms.ApplySnapshot(&raftpb.Snapshot{Metadata: meta})
}

func (l *memLog) Compact(index uint64) error {
	err := l.ms.Compact(index)
	if errors.Is(err, raft.ErrCompacted) {
		return nil
	}
	return err
}

func (s *memSnaps) Create(meta *raftpb.SnapshotMetadata) (snapWriter, error) {
	return &memSnapWriter{s: s, meta: meta}, nil
}

func (s *memSnaps) Open(index uint64) (*raftpb.SnapshotMetadata, io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[index]
	if !ok {
		return nil, nil, fmt.Errorf("consensus: no snapshot at index %d", index)
	}
	return sn.meta, io.NopCloser(bytes.NewReader(sn.data)), nil
}

type memSnapWriter struct {
	s    *memSnaps
	meta *raftpb.SnapshotMetadata
	buf  bytes.Buffer
	done bool
}

func (w *memSnapWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *memSnapWriter) Commit() error {
	if w.done {
		return errors.New("consensus: snapshot writer already finished")
	}
	w.done = true
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	idx := w.meta.GetIndex()
	w.s.snaps[idx] = memSnap{meta: w.meta, data: w.buf.Bytes()}
	return nil
}

// Prune implements snapStore.
func (s *memSnaps) Prune(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.snaps {
		if i < index {
			delete(s.snaps, i)
		}
	}
}

func (w *memSnapWriter) Abort() error { w.done = true; return nil }
