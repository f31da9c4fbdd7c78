package wal

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestOpenEmpty(t *testing.T) {
	l := mustOpen(t, filepath.Join(t.TempDir(), "new", "wal"), testOptions())
	hs, cs, err := l.InitialState()
	if err != nil || !raft.IsEmptyHardState(hs) || cs == nil || len(cs.GetVoters()) != 0 {
		t.Fatalf("InitialState() = %v, %v, %v; want empty state and non-nil ConfState", hs, cs, err)
	}
	checkLog(t, l, 0, 0, nil)
	if _, err := l.Snapshot(); err != raft.ErrSnapshotTemporarilyUnavailable {
		t.Fatalf("Snapshot() err = %v, want ErrSnapshotTemporarilyUnavailable", err)
	}
	if got := l.Stats().Segments; got != 1 {
		t.Fatalf("Stats().Segments = %d, want 1", got)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{SegmentBytes: 100},
		{SegmentBytes: -1},
		{MaxEntryBytes: -1},
		{MaxEntryBytes: MaxMaxEntryBytes + 1},
	} {
		if _, err := Open(t.TempDir(), o); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%+v) err = %v, want ErrInvalid", o, err)
		}
	}
}

// step is one operation of a scenario.
type step struct {
	ents    []*raftpb.Entry
	hs      *raftpb.HardState
	snap    *raftpb.SnapshotMetadata
	compact uint64
}

func TestScenarios(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		// expected state after the steps, and again after reopening
		dummy, dummyTerm uint64
		want             []*raftpb.Entry
		hs               *raftpb.HardState
		// after reopen, when it differs (Open starts right after the snapshot)
		reopenDummy, reopenTerm uint64
		reopenWant              []*raftpb.Entry
	}{
		{
			name:  "append",
			steps: []step{{ents: ents(1, 5, 1), hs: hardState(1, 1, 3)}},
			want:  ents(1, 5, 1), hs: hardState(1, 1, 3),
		},
		{
			name:  "hard state only",
			steps: []step{{ents: ents(1, 2, 1)}, {hs: hardState(2, 3, 2)}},
			want:  ents(1, 2, 1), hs: hardState(2, 3, 2),
		},
		{
			name: "conflicting suffix replaced",
			steps: []step{
				{ents: ents(1, 10, 1), hs: hardState(1, 1, 4)},
				{ents: ents(6, 7, 2), hs: hardState(2, 0, 4)},
			},
			want: append(ents(1, 5, 1), ents(6, 7, 2)...), hs: hardState(2, 0, 4),
		},
		{
			name: "conflict twice",
			steps: []step{
				{ents: ents(1, 10, 1)},
				{ents: ents(4, 12, 2)},
				{ents: ents(8, 8, 3)},
			},
			want: slices.Concat(ents(1, 3, 1), ents(4, 7, 2), ents(8, 8, 3)),
		},
		{
			name: "local snapshot keeps entries, compact drops prefix",
			steps: []step{
				{ents: ents(1, 10, 1), hs: hardState(1, 1, 8)},
				{snap: meta(6, 1, 1, 2, 3)},
				{compact: 4},
			},
			dummy: 4, dummyTerm: 1, want: ents(5, 10, 1), hs: hardState(1, 1, 8),
			reopenDummy: 6, reopenTerm: 1, reopenWant: ents(7, 10, 1),
		},
		{
			name: "received snapshot discards log",
			steps: []step{
				{ents: ents(1, 5, 1), hs: hardState(1, 1, 2)},
				{snap: meta(20, 3, 1)},
				{ents: ents(21, 22, 3), hs: hardState(3, 0, 21)},
			},
			dummy: 20, dummyTerm: 3, want: ents(21, 22, 3), hs: hardState(3, 0, 21),
			reopenDummy: 20, reopenTerm: 3, reopenWant: ents(21, 22, 3),
		},
		{
			name: "snapshot with term mismatch discards log",
			steps: []step{
				{ents: ents(1, 5, 1), hs: hardState(2, 1, 1)},
				{snap: meta(4, 2)},
			},
			dummy: 4, dummyTerm: 2, hs: hardState(2, 1, 1),
			reopenDummy: 4, reopenTerm: 2,
		},
		{
			name: "entries below first index are skipped",
			steps: []step{
				{ents: ents(1, 6, 1)},
				{snap: meta(3, 1)},
				{compact: 3},
				{ents: ents(2, 8, 1)},
			},
			dummy: 3, dummyTerm: 1, want: ents(4, 8, 1),
			reopenDummy: 3, reopenTerm: 1, reopenWant: ents(4, 8, 1),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, dir, testOptions())
			for i, s := range tc.steps {
				var err error
				switch {
				case s.snap != nil:
					err = l.SetSnapshot(s.snap)
				case s.compact != 0:
					err = l.Compact(s.compact)
				default:
					err = l.Append(s.ents, s.hs)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			hs := tc.hs
			if hs == nil {
				hs = &raftpb.HardState{}
			}
			checkLog(t, l, tc.dummy, tc.dummyTerm, tc.want)
			checkHardState(t, l, hs)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, testOptions())
			if tc.reopenDummy != 0 {
				checkLog(t, l, tc.reopenDummy, tc.reopenTerm, tc.reopenWant)
			} else {
				checkLog(t, l, tc.dummy, tc.dummyTerm, tc.want)
			}
			checkHardState(t, l, hs)
		})
	}
}

func TestStorageErrors(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testOptions())
	mustAppend(t, l, ents(1, 10, 2), hardState(2, 1, 8))
	if err := l.SetSnapshot(meta(5, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(3); err != nil {
		t.Fatal(err)
	}
	// dummy at 3, entries 4..10.
	tests := []struct {
		name    string
		call    func() error
		wantErr error
	}{
		{"Entries below first", func() error { _, err := l.Entries(3, 5, 100); return err }, raft.ErrCompacted},
		{"Entries past last", func() error { _, err := l.Entries(4, 12, 100); return err }, raft.ErrUnavailable},
		{"Entries lo > hi", func() error { _, err := l.Entries(6, 5, 100); return err }, ErrInvalid},
		{"Entries ok", func() error { _, err := l.Entries(4, 11, 100); return err }, nil},
		{"Term below dummy", func() error { _, err := l.Term(2); return err }, raft.ErrCompacted},
		{"Term dummy", func() error { _, err := l.Term(3); return err }, nil},
		{"Term past last", func() error { _, err := l.Term(11); return err }, raft.ErrUnavailable},
		{"Compact at dummy", func() error { return l.Compact(3) }, raft.ErrCompacted},
		{"Compact beyond snapshot", func() error { return l.Compact(6) }, ErrInvalid},
		{"SetSnapshot older", func() error { return l.SetSnapshot(meta(4, 2)) }, raft.ErrSnapOutOfDate},
		{"SetSnapshot same", func() error { return l.SetSnapshot(meta(5, 2)) }, raft.ErrSnapOutOfDate},
		{"SetSnapshot nil", func() error { return l.SetSnapshot(nil) }, ErrInvalid},
		{"Append gap", func() error { return l.Append(ents(12, 13, 2), nil) }, ErrInvalid},
		{"Append not consecutive", func() error { return l.Append([]*raftpb.Entry{ent(11, 2), ent(13, 2)}, nil) }, ErrInvalid},
		{"Append commit beyond last", func() error { return l.Append(nil, hardState(2, 1, 11)) }, ErrInvalid},
		{"Append truncating committed", func() error { return l.Append(ents(8, 8, 3), nil) }, ErrInvalid},
		{"Append too large", func() error {
			e := ent(11, 2)
			e.Data = make([]byte, DefaultMaxEntryBytes+1)
			return l.Append([]*raftpb.Entry{e}, nil)
		}, ErrTooLarge},
		{"Append nothing", func() error { return l.Append(nil, &raftpb.HardState{}) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	// raft compares its sentinels with ==: they must not be wrapped.
	if _, err := l.Entries(1, 2, 1); err != raft.ErrCompacted {
		t.Fatalf("Entries err = %#v, want raft.ErrCompacted unwrapped", err)
	}
	if _, err := l.Term(99); err != raft.ErrUnavailable {
		t.Fatalf("Term err = %#v, want raft.ErrUnavailable unwrapped", err)
	}
	// Nothing above changed the log.
	checkLog(t, l, 3, 2, ents(4, 10, 2))
	snap, err := l.Snapshot()
	if err != nil || snap.GetMetadata().GetIndex() != 5 || snap.Data != nil {
		t.Fatalf("Snapshot() = %v, %v; want index 5 without data", snap, err)
	}
	_, cs, _ := l.InitialState()
	if !slices.Equal(cs.GetVoters(), []uint64{1}) {
		t.Fatalf("ConfState voters = %v, want [1]", cs.GetVoters())
	}
}

func TestEntriesMaxSize(t *testing.T) {
	for _, cache := range []int64{-1, DefaultCacheBytes} {
		opts := testOptions()
		opts.CacheBytes = cache
		l := mustOpen(t, t.TempDir(), opts)
		all := ents(1, 20, 1)
		mustAppend(t, l, all, nil)
		one := uint64(proto.Size(all[0]))
		tests := []struct {
			lo, hi, max uint64
			want        int
		}{
			{1, 21, 0, 1},
			{1, 21, one, 1},
			{1, 21, one + 1, 1},
			{1, 21, 3 * one, 3},
			{5, 21, 100 * one, 16},
			{5, 5, 100, 0},
		}
		for _, tc := range tests {
			got, err := l.Entries(tc.lo, tc.hi, tc.max)
			if err != nil || len(got) != tc.want {
				t.Fatalf("cache %d: Entries(%d, %d, %d) = %d entries, %v; want %d", cache, tc.lo, tc.hi, tc.max, len(got), err, tc.want)
			}
			for i, e := range got {
				if !proto.Equal(e, all[tc.lo-1+uint64(i)]) {
					t.Fatalf("entry %d = %v", tc.lo+uint64(i), e)
				}
			}
		}
		// The caller may append to the returned slice without affecting the log.
		got, _ := l.Entries(1, 3, ^uint64(0))
		_ = append(got, ent(99, 9))
		checkLog(t, l, 0, 0, all)
	}
}

func TestSegmentRolloverAndDiskReads(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions()
	opts.CacheBytes = -1
	l := mustOpen(t, dir, opts)
	var want []*raftpb.Entry
	for i := uint64(1); i <= 400; i += 10 {
		b := ents(i, i+9, 1+i/100)
		mustAppend(t, l, b, hardState(1+i/100, 1, i))
		want = append(want, b...)
	}
	if n := len(segmentFiles(t, dir)); n < 4 {
		t.Fatalf("%d segment files, want several", n)
	}
	checkLog(t, l, 0, 0, want)
	if s := l.Stats(); s.CacheHits != 0 || s.CacheMisses == 0 || s.Segments != len(segmentFiles(t, dir)) {
		t.Fatalf("Stats() = %+v; want disk reads only and matching segment count", s)
	}
	// A batch larger than a segment gets one of its own.
	big := ents(401, 401, 5)
	big[0].Data = make([]byte, 3*opts.SegmentBytes)
	mustAppend(t, l, big, nil)
	want = append(want, big...)
	l.Close()
	l = mustOpen(t, dir, opts)
	checkLog(t, l, 0, 0, want)
	checkHardState(t, l, hardState(4, 1, 391))
}

func TestCompactDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testOptions())
	for i := uint64(1); i <= 500; i += 10 {
		mustAppend(t, l, ents(i, i+9, 1), hardState(1, 1, i+9))
	}
	before := len(segmentFiles(t, dir))
	if err := l.SetSnapshot(meta(450, 1, 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(440); err != nil {
		t.Fatal(err)
	}
	after := len(segmentFiles(t, dir))
	if after >= before || after > 3 {
		t.Fatalf("segments before compaction %d, after %d; want most of them deleted", before, after)
	}
	if l.Stats().Segments != after {
		t.Fatalf("Stats().Segments = %d, want %d", l.Stats().Segments, after)
	}
	checkLog(t, l, 440, 1, ents(441, 500, 1))
	mustAppend(t, l, ents(501, 505, 2), hardState(2, 2, 503))
	l.Close()
	l = mustOpen(t, dir, testOptions())
	checkLog(t, l, 450, 1, slices.Concat(ents(451, 500, 1), ents(501, 505, 2)))
	checkHardState(t, l, hardState(2, 2, 503))
	_, cs, _ := l.InitialState()
	if !slices.Equal(cs.GetVoters(), []uint64{1, 2}) {
		t.Fatalf("voters = %v after compaction and reopen", cs.GetVoters())
	}
}

func TestLockAndClose(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testOptions())
	if _, err := Open(dir, testOptions()); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open err = %v, want ErrLocked", err)
	}
	mustAppend(t, l, ents(1, 3, 1), nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Close removes the file prepared for the next segment.
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Fatalf("temporary files left after Close: %v", m)
	}
	calls := map[string]func() error{
		"Append":       func() error { return l.Append(ents(4, 4, 1), nil) },
		"SetSnapshot":  func() error { return l.SetSnapshot(meta(2, 1)) },
		"Compact":      func() error { return l.Compact(1) },
		"Entries":      func() error { _, err := l.Entries(1, 2, 10); return err },
		"Term":         func() error { _, err := l.Term(1); return err },
		"FirstIndex":   func() error { _, err := l.FirstIndex(); return err },
		"LastIndex":    func() error { _, err := l.LastIndex(); return err },
		"Snapshot":     func() error { _, err := l.Snapshot(); return err },
		"InitialState": func() error { _, _, err := l.InitialState(); return err },
	}
	for name, call := range calls {
		wantErr(t, name+" after Close", call(), ErrClosed)
	}
	l2 := mustOpen(t, dir, testOptions())
	checkLog(t, l2, 0, 0, ents(1, 3, 1))
}

func TestReadsConcurrentWithAppend(t *testing.T) {
	opts := testOptions()
	opts.CacheBytes = 2 << 10 // force some reads from disk
	l := mustOpen(t, t.TempDir(), opts)
	mustAppend(t, l, ents(1, 1, 1), nil)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				last, err := l.LastIndex()
				if err != nil {
					t.Error(err)
					return
				}
				es, err := l.Entries(1, last+1, ^uint64(0))
				if err != nil {
					t.Error(err)
					return
				}
				for i, e := range es {
					if e.GetIndex() != uint64(i)+1 || string(e.Data) != string(ent(e.GetIndex(), e.GetTerm()).Data) {
						t.Errorf("read entry %v at position %d", e, i)
						return
					}
				}
			}
		})
	}
	for i := uint64(2); i < 300; i += 3 {
		mustAppend(t, l, ents(i, i+2, 1), hardState(1, 1, i))
	}
	close(done)
	wg.Wait()
}

func TestFailedWriteIsSticky(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testOptions())
	mustAppend(t, l, ents(1, 2, 1), nil)
	// Simulate an I/O error: close the segment file under the log.
	l.active().f.Close()
	if err := l.Append(ents(3, 3, 1), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on broken file err = %v, want ErrFailed", err)
	}
	if err := l.Append(ents(3, 3, 1), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after failure err = %v, want ErrFailed", err)
	}
	checkLog(t, l, 0, 0, ents(1, 2, 1))
}

func TestLeftoverTempSegmentIgnored(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testOptions())
	mustAppend(t, l, ents(1, 3, 1), nil)
	l.Close()
	tmp := filepath.Join(dir, segmentName(2)+".tmp")
	if err := os.WriteFile(tmp, []byte("half-created"), 0o600); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, testOptions())
	checkLog(t, l, 0, 0, ents(1, 3, 1))
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary segment not removed: %v", err)
	}
}

func TestMissingSegmentIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testOptions())
	for i := uint64(1); i <= 200; i += 10 {
		mustAppend(t, l, ents(i, i+9, 1), nil)
	}
	l.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(segs))
	}
	if err := os.Remove(segs[1]); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions())
	wantErr(t, "Open with a segment missing", err, ErrCorrupt)
}

func TestSaveWithoutSync(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentBytes: 64 << 10}) // real fsyncs
	mustAppend(t, l, ents(1, 3, 1), hardState(1, 1, 1))
	before := l.Stats()
	if before.Fsyncs == 0 {
		t.Fatal("Append did not fsync")
	}
	// A commit-only change: raft's Ready.MustSync is false.
	if err := l.Save(nil, hardState(1, 1, 3), false); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats(); got.Fsyncs != before.Fsyncs || got.BytesWritten != before.BytesWritten {
		t.Fatalf("Save(sync=false) wrote or synced: %+v -> %+v", before, got)
	}
	checkHardState(t, l, hardState(1, 1, 3))
	// A crash now brings back the previous commit index.
	crashed := mustOpen(t, copyDir(t, dir), testOptions())
	checkHardState(t, crashed, hardState(1, 1, 1))

	// A term change is never deferred, even with sync false.
	if err := l.Save(nil, hardState(2, 0, 3), false); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Fsyncs; got != before.Fsyncs+1 {
		t.Fatalf("Save of a new term: fsyncs %d, want %d", got, before.Fsyncs+1)
	}
	// The next Append carries a deferred commit index.
	if err := l.Save(nil, hardState(2, 0, 3), false); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, ents(4, 4, 2), nil)
	if s := l.Stats(); s.FsyncTotal <= 0 || s.FsyncMax <= 0 || s.FsyncMax > s.FsyncTotal || sum(s.FsyncHistogram[:]) != s.Fsyncs {
		t.Fatalf("fsync latency stats inconsistent: %+v", s)
	}
	crashed.Close()
	crashed = mustOpen(t, copyDir(t, dir), testOptions())
	checkHardState(t, crashed, hardState(2, 0, 3))
	checkLog(t, crashed, 0, 0, append(ents(1, 3, 1), ents(4, 4, 2)...))

	// Close writes a deferred commit index.
	if err := l.Save(nil, hardState(2, 0, 4), false); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = mustOpen(t, dir, testOptions())
	checkHardState(t, l, hardState(2, 0, 4))
}

func sum(xs []uint64) uint64 {
	var n uint64
	for _, x := range xs {
		n += x
	}
	return n
}

// TestOpenVerifiesCommitIndex: a hard state whose commit index is beyond
// the last entry (raft would panic on it later) is reported at Open.
func TestOpenVerifiesCommitIndex(t *testing.T) {
	dir := t.TempDir()
	h := segHeader{version: 1, salt: 5, seq: 1, firstBatch: 1}
	b := h.encode()
	b = appendCommitRecord(b, h.salt, 1, 0, 0) // head batch
	b = appendEntryRecord(b, h.salt, ent(1, 1))
	b = appendStateRecord(b, h.salt, hardState(1, 1, 2))
	b = appendCommitRecord(b, h.salt, 2, 2, 0)
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions())
	wantErr(t, "Open with commit 2 and last index 1", err, ErrCorrupt)

	// The same log with commit 1 opens.
	b = h.encode()
	b = appendCommitRecord(b, h.salt, 1, 0, 0)
	b = appendEntryRecord(b, h.salt, ent(1, 1))
	b = appendStateRecord(b, h.salt, hardState(1, 1, 1))
	b = appendCommitRecord(b, h.salt, 2, 2, 0)
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, dir, testOptions())
	checkLog(t, l, 0, 0, ents(1, 1, 1))
	checkHardState(t, l, hardState(1, 1, 1))
}

// TestOpenRejectsBatchSequenceGap: a batch whose sequence number does not
// follow the previous one is corruption, even with valid checksums.
func TestOpenRejectsBatchSequenceGap(t *testing.T) {
	dir := t.TempDir()
	h := segHeader{version: 1, salt: 5, seq: 1, firstBatch: 1}
	b := h.encode()
	b = appendCommitRecord(b, h.salt, 1, 0, 0)
	b = appendEntryRecord(b, h.salt, ent(1, 1))
	b = appendCommitRecord(b, h.salt, 3, 1, 0) // batch 2 is missing
	b = appendEntryRecord(b, h.salt, ent(2, 1))
	b = appendCommitRecord(b, h.salt, 4, 1, 0)
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, testOptions())
	wantErr(t, "Open with a batch sequence gap", err, ErrCorrupt)
}
