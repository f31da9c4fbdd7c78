package snap_test

import (
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/distkit/distkit/consensus/internal/snap"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ExampleStore_Create streams a snapshot to disk and reads it back.
func ExampleStore_Create() {
	dir, err := os.MkdirTemp("", "snap-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := snap.Open(dir, snap.Options{})
	if err != nil {
		log.Fatal(err)
	}

	meta := &raftpb.SnapshotMetadata{Index: proto.Uint64(100), Term: proto.Uint64(3),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	w, err := s.Create(meta)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort() // no-op once committed
	if _, err := io.Copy(w, strings.NewReader("state machine contents")); err != nil {
		log.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		log.Fatal(err)
	}

	latest, ok, err := s.Latest()
	if err != nil || !ok {
		log.Fatal(ok, err)
	}
	_, rc, err := s.Open(latest.GetIndex())
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc) // fails with snap.ErrCorrupt if the data was damaged
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(latest.GetIndex(), latest.GetTerm(), latest.GetConfState().GetVoters(), string(data))
	// Output: 100 3 [1 2 3] state machine contents
}
