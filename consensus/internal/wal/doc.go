// Package wal is the write-ahead log behind a consensus node: a segmented,
// checksummed log of raft entries, hard state and snapshot markers that
// implements raft.Storage.
//
// # Usage
//
//	l, err := wal.Open(dir, wal.Options{})
//	if err != nil { ... }           // errors.Is(err, wal.ErrCorrupt) (or ErrDataLoss): rebuild the member from peers
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
//   - Open replays the log in two phases: it first reads and checks every
//     segment and the high-water mark without changing anything; only when
//     every check passes does it cut off a torn final write (a batch whose
//     Append never returned), after copying the segment to a ".broken" file
//     as evidence, and log the cut at ERROR level. Any loss of a batch that
//     was synced (see "Fault model") is an error wrapping ErrDataLoss (and
//     ErrCorrupt); other damage to written bytes is an error wrapping
//     ErrCorrupt. On every refusal nothing on disk is changed, and the
//     message says what is missing and what to do: acknowledged entries are
//     never dropped silently.
//   - Open takes an exclusive lock on the directory (ErrLocked).
//   - The read methods (raft.Storage) may run concurrently with writes.
//     Recent entries are served from a cache bounded by Options.CacheBytes;
//     older ones are read from disk through an in-memory index of entry
//     locations, and their checksums are verified on every read.
//   - After Open the log starts right after the latest snapshot marker.
//
// # On disk
//
// The directory holds a LOCK file, the high-water mark (HWM, unless
// Options.MarkPath puts it elsewhere) and segment files named by sequence
// number (0000000000000001.wal, ...). A segment is created under a temporary
// name, preallocated to Options.SegmentBytes (in the background), given a
// versioned header that records the preallocated size and a head batch that
// repeats the current hard state and snapshot marker, synced, renamed, and
// the directory synced. Batches of 8-byte-aligned records follow, each
// record with a CRC32C seeded by a per-segment random salt; every batch ends
// in a commit record carrying its sequence number and a chain value that
// hashes the batch together with the chain value of the batch before it.
// Compact deletes whole segments whose entries are all covered by the
// snapshot. A full segment is left at its preallocated size.
//
// The high-water mark names the last batch known to be durable (segment,
// batch sequence number, end offset, chain value, last index). It is
// written in place in one of two checksummed slots, alternately, with one
// fdatasync, never on the path of an Append: every Options.MarkInterval in
// the background when batches were synced since, synchronously when a new
// segment starts (once per segment), and at Close.
//
// Format version 1 logs (no chain, no preallocated size, no mark) are read:
// Open replays them, writes a mark and moves new batches to a new segment
// in version 2. Older releases cannot read version 2.
//
// # Fault model
//
// A crash (power loss, kill) can only leave the batch being written when it
// happened incomplete: its unsynced sectors may be written, unwritten
// (zero, as the file was preallocated or zeroed by an earlier repair), or,
// where the write grew the file past its preallocated size, cut off with
// the file. This is a torn final write and Open repairs it. Write order
// guarantees the rest: a segment is complete before it is named, the mark
// names only synced batches, and a synced file never shrinks below its
// synced size.
//
// Anything else is detected and reported as data loss:
//
//   - a segment shorter than its preallocated size (truncated), or whose
//     header or head batch is gone;
//   - zeros or damage in any segment but the last, or in the last followed
//     by later batches (a hole);
//   - a missing segment: a gap in the numbering, or the newest segment
//     removed (the mark names it: the mark is updated whenever a segment
//     starts);
//   - batch sequence numbers or chain values that do not continue from one
//     segment to the next (a segment from another copy of the log);
//   - the log ending before the batch the mark names, or holding a
//     different batch under that number (truncated or zeroed at the end, or
//     an older copy of the directory put back while the mark is outside
//     it);
//   - a missing mark beside version 2 segments.
//
// What it cannot detect:
//
//   - The last batches synced after the mark's latest update (at most
//     Options.MarkInterval of writes, 50 ms by default) zeroed in place, or
//     cut off where the file had grown past its preallocated size: this is
//     exactly what a crash leaves, and they are cut off as a torn write.
//   - On a file system without fallocate, segments are not preallocated and
//     a truncation of the newest segment is seen only through the mark
//     (same window).
//   - The whole directory, mark included, replaced by an older copy of
//     itself: the copy is consistent. Keep the mark outside the directory
//     (Options.MarkPath) to detect a stale copy of the directory alone; a
//     stale copy of both is left to the consensus layer, which can compare
//     with its peers.
//
// # Torn tail or corruption
//
// A write that did not complete is recognised by the assumption that every
// 512-byte sector is either written or left as it was, and unwritten space
// is zero (segments are preallocated, and repair zeroes what it cuts off).
// Damage at the end of the last segment is cut off only if it has that
// shape: the batch reaches zeros before its commit record, has an all-zero
// sector, or runs past the end of a file that was cut short; and the
// high-water mark does not name the damaged batch or a later one. Damage
// with every byte written (a flipped bit) is ErrCorrupt, even in the last
// batch, because that batch may have been acknowledged. Two cases are read
// as a torn write although they may not be, when the mark has not yet
// recorded the batch: a flipped bit in the last batch of the log when that
// batch legitimately holds a whole zero sector, or when the bit is in the
// 8-byte header of its commit record.
//
// # What it does not do
//
// It stores no snapshot data (see package snap) and keeps one index record
// per entry in memory (32 bytes). A rollover (once per segment) still costs
// three fsyncs on the writing goroutine (the new segment's head, the
// directory, the high-water mark); the space is allocated ahead of time.
//
// # Goroutines
//
// Open starts two goroutines: one keeps the next segment file preallocated
// and synced, the other brings the high-water mark up to date every
// Options.MarkInterval. Close stops both and removes the unused file.
package wal
