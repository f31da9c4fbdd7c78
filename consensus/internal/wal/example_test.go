package wal_test

import (
	"fmt"
	"log"
	"os"

	"github.com/distkit/distkit/consensus/internal/wal"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func entry(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Data: []byte(data)}
}

// ExampleLog_Append appends entries with a hard state, replaces a
// conflicting suffix, and reads the log back after a restart.
func ExampleLog_Append() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	hs := &raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(1)}
	if err := l.Append([]*raftpb.Entry{entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, hs); err != nil {
		log.Fatal(err)
	}
	// A new leader's log disagrees from index 2 on: raft overwrites it.
	if err := l.Append([]*raftpb.Entry{entry(2, 2, "B")}, nil); err != nil {
		log.Fatal(err)
	}
	l.Close()

	l, err = wal.Open(dir, wal.Options{}) // restart: replay
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	ents, _ := l.Entries(first, last+1, 1<<20)
	for _, e := range ents {
		fmt.Printf("%d/%d %s\n", e.GetIndex(), e.GetTerm(), e.Data)
	}
	st, _, _ := l.InitialState()
	fmt.Println("commit", st.GetCommit())
	// Output:
	// 1/1 a
	// 2/2 B
	// commit 1
}

// ExampleLog_Compact records a snapshot and drops the log prefix it covers.
func ExampleLog_Compact() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 10; i++ {
		ents = append(ents, entry(i, 1, "x"))
	}
	hs := &raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(10)}
	if err := l.Append(ents, hs); err != nil {
		log.Fatal(err)
	}
	// The snapshot data is already durable in the snapshot store.
	meta := &raftpb.SnapshotMetadata{Index: proto.Uint64(8), Term: proto.Uint64(1),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	if err := l.SetSnapshot(meta); err != nil {
		log.Fatal(err)
	}
	if err := l.Compact(5); err != nil { // keep a few entries for slow followers
		log.Fatal(err)
	}
	first, _ := l.FirstIndex()
	snap, _ := l.Snapshot()
	fmt.Println("first index", first, "snapshot", snap.GetMetadata().GetIndex(), snap.GetMetadata().GetConfState().GetVoters())
	// Output: first index 6 snapshot 8 [1 2 3]
}
