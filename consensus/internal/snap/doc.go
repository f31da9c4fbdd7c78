// Package snap stores raft snapshot files: streamed, checksummed, and
// published atomically.
//
// # Usage
//
//	s, err := snap.Open(dir, snap.Options{})
//	w, err := s.Create(meta)     // meta: *raftpb.SnapshotMetadata
//	defer w.Abort()              // no-op after Commit
//	err = sm.WriteSnapshot(w)    // stream: the data is never held in memory
//	err = w.Commit()             // durable and visible from here on
//	// then record it in the WAL: wal.Log.SetSnapshot(meta), and s.Keep(meta.GetIndex())
//
//	meta, rc, err := s.Open(index) // on restart, or to send to a follower
//	defer rc.Close()
//	err = sm.Restore(rc)           // rc fails with ErrCorrupt instead of io.EOF on damage
//
// # Guarantees
//
//   - A snapshot is written to a temporary file, followed by a trailer with
//     its length and CRC32C; Commit syncs the file, renames it to its final
//     name (index-term.snap), syncs the directory, then deletes all but the
//     newest Options.Retain snapshots and the one protected by Keep (the
//     WAL's current snapshot). A crash leaves either the complete
//     file or none; leftover temporary files are removed by Open.
//   - Every file starts with a versioned, checksummed header holding the
//     snapshot metadata. Open and Latest check the header and the trailer
//     (so truncation is caught up front); the reader checks the data
//     checksum at the end and returns an error wrapping ErrCorrupt instead
//     of io.EOF if it does not match. Damaged files are reported, never used
//     silently, and Latest does not fall back to an older file.
//
// # What it does not do
//
// It does not decide which snapshot is current: the WAL's snapshot marker
// does, and it is written only after Commit. It does not compress, chunk
// for the network or verify data before it is read (use Verify).
package snap
