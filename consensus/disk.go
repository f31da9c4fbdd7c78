package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkit/distkit/consensus/internal/snap"
	"github.com/distkit/distkit/consensus/internal/wal"
)

// openDisk opens the durable log (Dir/wal, with its high-water mark in
// Dir/wal.hwm) and snapshot files (Dir/snap). The log is opened first: when
// it refuses to open, nothing in Dir has been changed.
func openDisk(c Config) (logStore, snapStore, error) {
	l, err := wal.Open(filepath.Join(c.Dir, "wal"), wal.Options{
		MaxEntryBytes: c.MaxEntryBytes + entryHeaderLen + binary.MaxVarintLen64 + maxRequestIDLen,
		NoSync:        c.UnsafeNoSync,
		Logger:        c.Logger,
		// Outside Dir/wal, so that Dir/wal replaced by an older copy of
		// itself is detected too.
		MarkPath: filepath.Join(c.Dir, "wal.hwm"),
	})
	if err != nil {
		switch {
		case errors.Is(err, wal.ErrDataLoss):
			return nil, nil, fmt.Errorf("%w (%w): open log: %w", ErrDataLoss, ErrCorrupt, err)
		case errors.Is(err, wal.ErrCorrupt):
			return nil, nil, fmt.Errorf("consensus: open log: %w: %w", err, ErrCorrupt)
		}
		return nil, nil, fmt.Errorf("consensus: open log: %w", err)
	}
	ss, err := snap.Open(filepath.Join(c.Dir, "snap"), snap.Options{NoSync: c.UnsafeNoSync, Logger: c.Logger})
	if err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("consensus: open snapshots: %w", err)
	}
	ss.Keep(l.SnapshotMetadata().GetIndex())
	return diskLog{l}, diskSnaps{ss}, nil
}

// diskSnaps adapts *snap.Store to snapStore.
type diskSnaps struct{ *snap.Store }

func (d diskSnaps) Create(meta *raftpb.SnapshotMetadata) (snapWriter, error) {
	return d.Store.Create(meta)
}

// Prune protects the snapshot the log now records; the store's retention
// removes older files as new snapshots are committed.
func (d diskSnaps) Prune(index uint64) { d.Store.Keep(index) }

// diskLog adapts *wal.Log to logStore: recording an older snapshot or
// compacting twice are no-ops for the node.
type diskLog struct{ *wal.Log }

func (d diskLog) SetSnapshot(meta *raftpb.SnapshotMetadata) error {
	if err := d.Log.SetSnapshot(meta); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		return err
	}
	return nil
}

func (d diskLog) Compact(index uint64) error {
	if err := d.Log.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return err
	}
	return nil
}
