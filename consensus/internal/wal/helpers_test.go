package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ent builds an entry with data derived from index and term.
func ent(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{
		Index: proto.Uint64(index),
		Term:  proto.Uint64(term),
		Type:  raftpb.EntryNormal.Enum(),
		Data:  fmt.Appendf(nil, "entry %d term %d", index, term),
	}
}

// ents builds entries lo..hi inclusive at term.
func ents(lo, hi, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, ent(i, term))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState { return newHardState(term, vote, commit) }

func meta(index, term uint64, voters ...uint64) *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{
		Index:     proto.Uint64(index),
		Term:      proto.Uint64(term),
		ConfState: &raftpb.ConfState{Voters: voters},
	}
}

func testOptions() Options { return Options{NoSync: true, SegmentBytes: 4 << 10} }

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(t testing.TB, l *Log, es []*raftpb.Entry, hs *raftpb.HardState) {
	t.Helper()
	if err := l.Append(es, hs); err != nil {
		t.Fatalf("Append(%d entries from %d, %v): %v", len(es), firstIndexOf(es), hs, err)
	}
}

func firstIndexOf(es []*raftpb.Entry) uint64 {
	if len(es) == 0 {
		return 0
	}
	return es[0].GetIndex()
}

// checkLog asserts that l holds exactly want after its dummy entry at
// (dummyIndex, dummyTerm), read through the raft.Storage methods.
func checkLog(t testing.TB, l *Log, dummyIndex, dummyTerm uint64, want []*raftpb.Entry) {
	t.Helper()
	first, err := l.FirstIndex()
	if err != nil || first != dummyIndex+1 {
		t.Fatalf("FirstIndex() = %d, %v; want %d", first, err, dummyIndex+1)
	}
	last, err := l.LastIndex()
	if wantLast := dummyIndex + uint64(len(want)); err != nil || last != wantLast {
		t.Fatalf("LastIndex() = %d, %v; want %d", last, err, wantLast)
	}
	if term, err := l.Term(dummyIndex); err != nil || term != dummyTerm {
		t.Fatalf("Term(%d) = %d, %v; want %d", dummyIndex, term, err, dummyTerm)
	}
	got, err := l.Entries(first, last+1, ^uint64(0))
	if err != nil {
		t.Fatalf("Entries(%d, %d): %v", first, last+1, err)
	}
	if len(got) != len(want) {
		t.Fatalf("Entries(%d, %d) returned %d entries, want %d", first, last+1, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d = %v, want %v", first+uint64(i), got[i], want[i])
		}
		if term, err := l.Term(first + uint64(i)); err != nil || term != want[i].GetTerm() {
			t.Fatalf("Term(%d) = %d, %v; want %d", first+uint64(i), term, err, want[i].GetTerm())
		}
	}
}

func checkHardState(t testing.TB, l *Log, want *raftpb.HardState) {
	t.Helper()
	hs, _, err := l.InitialState()
	if err != nil {
		t.Fatalf("InitialState: %v", err)
	}
	if !proto.Equal(hs, want) && !(isEmpty(hs) && isEmpty(want)) {
		t.Fatalf("hard state = %v, want %v", hs, want)
	}
}

func isEmpty(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	return copyDirTo(t, src, t.TempDir())
}

// copyDirTo copies the regular files of src into dst, creating it. Files
// named in link are hard-linked instead (cheaper; they must not be written).
func copyDirTo(t testing.TB, src, dst string, link ...string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, de.Name()), filepath.Join(dst, de.Name())
		if slices.Contains(link, de.Name()) {
			if err := os.Link(from, to); err == nil {
				continue
			}
		}
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// readOnlySegments names the segments of dir that Open does not write to:
// all but the newest and the one named mutated.
func readOnlySegments(t testing.TB, dir, mutated string) []string {
	t.Helper()
	segs := segmentFiles(t, dir)
	var out []string
	for _, s := range segs[:max(len(segs)-1, 0)] {
		if name := filepath.Base(s); name != mutated {
			out = append(out, name)
		}
	}
	return out
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}
