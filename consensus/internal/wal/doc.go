// Package wal is the write-ahead log behind a consensus node: a segmented,
// checksummed log of raft entries, hard state and snapshot markers that
// implements raft.Storage.
//
// # Usage
//
//	l, err := wal.Open(dir, wal.Options{})
//	if err != nil { ... }           // errors.Is(err, wal.ErrCorrupt): rebuild the member from peers
//	defer l.Close()
//	// raft.Config.Storage = l
//	// for every Ready, in order:
//	//   if rd.Snapshot != nil: write its data (package snap), then l.SetSnapshot(rd.Snapshot.GetMetadata())
//	//   l.Save(rd.Entries, rd.HardState, rd.MustSync) // durable on return when synced: one fsync
//	//   ... send messages, apply, Advance
//	// after a local snapshot at index i: l.SetSnapshot(meta) then l.Compact(i - keep)
//
// The raftpb types are passed by pointer, exactly as raft's Ready carries
// them (Entries []*raftpb.Entry, a nil-able *raftpb.HardState): protobuf
// structs must not be copied.
//
// # Guarantees
//
//   - Append, SetSnapshot and Compact are durable when they return nil. One
//     Append is one batch written with a single write and one fdatasync
//     (group commit); a batch is replayed entirely or not at all. Save
//     takes a Ready's MustSync: a change of the commit index alone is kept
//     in memory until the next write (a crash may bring back the previous
//     commit index, which raft tolerates).
//   - Appending at an index at or below the last index replaces that entry
//     and everything after it, crash-safely: on replay the latest record for
//     an index wins.
//   - Open replays the log. A batch that was never completely written at the
//     end of the last segment (a torn tail: its Append never returned) is cut
//     off, after the segment is copied to a ".broken" file as evidence; the
//     tail is zeroed so stale bytes can never be mistaken for records. Damage
//     anywhere else, damage followed by later batches, a missing segment, or
//     a commit index beyond the last entry is an error wrapping ErrCorrupt,
//     and nothing on disk is changed: acknowledged entries are never dropped
//     silently.
//   - Open takes an exclusive lock on the directory (ErrLocked).
//   - The read methods (raft.Storage) may run concurrently with writes.
//     Recent entries are served from a cache bounded by Options.CacheBytes;
//     older ones are read from disk through an in-memory index of entry
//     locations, and their checksums are verified on every read.
//   - After Open the log starts right after the latest snapshot marker.
//
// # On disk
//
// The directory holds a LOCK file and segment files named by sequence number
// (0000000000000001.wal, ...). A segment is preallocated in the
// background, starts with a
// versioned header and a head batch that repeats the current hard state and
// snapshot marker, and then holds batches of 8-byte-aligned records, each
// with a CRC32C seeded by a per-segment random salt; every batch ends in a
// commit record carrying its sequence number. A new segment is created under
// a temporary name, synced and renamed, and the directory is synced. Compact
// deletes whole segments whose entries are all covered by the snapshot.
//
// # Torn tail or corruption
//
// A write that did not complete is recognised by the assumption that every
// 512-byte sector is either written or left as it was, and unwritten space
// is zero (segments are preallocated, and repair zeroes what it cuts off).
// Damage at the end of the last segment is cut off only if it has that
// shape: the batch reaches zeros before its commit record, has an all-zero
// sector, or runs past the end of a file that was cut short. Damage with
// every byte written (a flipped bit) is ErrCorrupt, even in the last batch,
// because that batch may have been acknowledged. Two cases are read as a torn
// write although they may not be: a flipped bit in the last batch of the
// log when that batch legitimately holds a whole zero sector, or when the bit
// is in the 8-byte header of its commit record.
//
// # What it does not do
//
// It stores no snapshot data (see package snap) and keeps one index record
// per entry in memory (32 bytes). A rollover (once per segment) still costs
// two fsyncs on the writing goroutine (the new segment's head, the
// directory); the space is allocated ahead of time.
//
// # Goroutines
//
// Open starts one goroutine that keeps the next segment file preallocated
// and synced; Close stops it and removes the unused file.
package wal
