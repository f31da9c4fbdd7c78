package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// recLog records the writes the persist goroutine makes.
type recLog struct {
	logStore // nil: reads are not used
	ops      []string
}

func (r *recLog) Save(ents []*raftpb.Entry, hs *raftpb.HardState, sync bool) error {
	r.ops = append(r.ops, fmt.Sprintf("save %v hs=%d/%d/%d sync=%v", entIDs(ents), hs.GetTerm(), hs.GetVote(), hs.GetCommit(), sync))
	return nil
}

func (r *recLog) Append(ents []*raftpb.Entry, hs *raftpb.HardState) error {
	return r.Save(ents, hs, true)
}

func (r *recLog) SetSnapshot(meta *raftpb.SnapshotMetadata) error {
	r.ops = append(r.ops, fmt.Sprintf("snapshot %d", meta.GetIndex()))
	return nil
}

func (r *recLog) Compact(index uint64) error {
	r.ops = append(r.ops, fmt.Sprintf("compact %d", index))
	return nil
}

// entIDs renders entries as index.term.
func entIDs(ents []*raftpb.Entry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, fmt.Sprintf("%d.%d", e.GetIndex(), e.GetTerm()))
	}
	return out
}

func ents(term uint64, lo, hi uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, &raftpb.Entry{Index: new(i), Term: new(term)})
	}
	return out
}

func appendMsg(es []*raftpb.Entry, hs *raftpb.HardState, resp ...*raftpb.Message) persistJob {
	m := &raftpb.Message{Type: raftpb.MsgStorageAppend.Enum(), Entries: es, Responses: resp}
	if hs != nil {
		m.Term, m.Vote, m.Commit = new(hs.GetTerm()), new(hs.GetVote()), new(hs.GetCommit())
	}
	return persistJob{m: m}
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

type memSnapsNop struct{}

func (memSnapsNop) Create(*raftpb.SnapshotMetadata) (snapWriter, error) { return nil, nil }
func (memSnapsNop) Open(uint64) (*raftpb.SnapshotMetadata, io.ReadCloser, error) {
	return nil, nil, nil
}
func (memSnapsNop) Prune(uint64) {}

// TestPersistMergesJobs checks that the persist goroutine turns the jobs it
// drains into the same log contents separate writes would give, with one
// write and at most one sync per run of appends, and hands back every
// response in order.
func TestPersistMergesJobs(t *testing.T) {
	resp := func(i uint64) *raftpb.Message { return &raftpb.Message{Index: new(i)} }
	tests := []struct {
		name  string
		start *raftpb.HardState
		jobs  []persistJob
		want  []string
		resps int
	}{
		{
			name:  "consecutive appends, one sync",
			start: hardState(1, 1, 0),
			jobs: []persistJob{
				appendMsg(ents(1, 1, 2), nil, resp(1)),
				appendMsg(ents(1, 3, 4), hardState(1, 1, 2), resp(2)),
			},
			want:  []string{"save [1.1 2.1 3.1 4.1] hs=1/1/2 sync=true"},
			resps: 2,
		},
		{
			name:  "a later append replaces the tail",
			start: hardState(1, 1, 0),
			jobs: []persistJob{
				appendMsg(ents(1, 1, 4), nil),
				appendMsg(ents(2, 3, 3), hardState(2, 0, 2)),
			},
			want: []string{"save [1.1 2.1 3.2] hs=2/0/2 sync=true"},
		},
		{
			name:  "a later append replaces the whole batch",
			start: hardState(1, 1, 0),
			jobs: []persistJob{
				appendMsg(ents(1, 5, 6), nil),
				appendMsg(ents(2, 4, 5), nil),
			},
			want: []string{"save [4.2 5.2] hs=1/1/0 sync=true"},
		},
		{
			name:  "commit index alone is not synced",
			start: hardState(3, 2, 5),
			jobs:  []persistJob{appendMsg(nil, hardState(3, 2, 7), resp(1))},
			want:  []string{"save [] hs=3/2/7 sync=false"},
			resps: 1,
		},
		{
			name:  "a vote is synced",
			start: hardState(3, 0, 5),
			jobs:  []persistJob{appendMsg(nil, hardState(4, 2, 5))},
			want:  []string{"save [] hs=4/2/5 sync=true"},
		},
		{
			name:  "responses only: nothing written",
			start: hardState(3, 0, 5),
			jobs:  []persistJob{appendMsg(nil, nil, resp(1), resp(2))},
			resps: 2,
		},
		{
			name:  "a local snapshot splits the batch and syncs the commit first",
			start: hardState(1, 1, 0),
			jobs: []persistJob{
				appendMsg(ents(1, 1, 3), hardState(1, 1, 3)),
				{snap: &raftpb.SnapshotMetadata{Index: new(uint64(3)), Term: new(uint64(1))}},
				appendMsg(ents(1, 4, 4), nil),
			},
			want: []string{
				"save [1.1 2.1 3.1] hs=1/1/3 sync=true",
				"snapshot 3",
				"save [4.1] hs=1/1/3 sync=true",
			},
		},
		{
			name:  "a local snapshot beyond the synced commit syncs it",
			start: hardState(1, 1, 3),
			jobs: []persistJob{
				appendMsg(nil, hardState(1, 1, 4)),
				{snap: &raftpb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(1))}},
			},
			want: []string{
				"save [] hs=1/1/4 sync=false",
				"save [] hs=1/1/4 sync=true",
				"snapshot 4",
			},
		},
		{
			name:  "a leader's snapshot is recorded before its hard state",
			start: hardState(1, 1, 3),
			jobs: []persistJob{{m: &raftpb.Message{
				Type:     raftpb.MsgStorageAppend.Enum(),
				Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(2))}},
				Term:     new(uint64(2)), Vote: new(uint64(0)), Commit: new(uint64(9)),
			}}},
			want: []string{"snapshot 9", "save [] hs=2/0/9 sync=true"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recLog{}
			n := &Node{logs: rec, snaps: memSnapsNop{}, pipe: newPipeline(1 << 20), cfg: Config{TrailingEntries: 100}}
			st := &persistState{hs: tt.start, persistedCommit: tt.start.GetCommit()}
			if err := n.persist(st, tt.jobs); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec.ops, tt.want) {
				t.Fatalf("writes:\n got %q\nwant %q", rec.ops, tt.want)
			}
			// Each drained batch hands back one result with every
			// response, plus one per recorded local snapshot.
			var snaps int
			for _, j := range tt.jobs {
				if j.snap != nil {
					snaps++
				}
			}
			got := n.pipe.results()
			wantResults := snaps
			if tt.resps > 0 || slices.ContainsFunc(tt.jobs, func(j persistJob) bool { return len(j.m.GetEntries()) > 0 }) {
				wantResults++
			}
			if len(got) != wantResults {
				t.Fatalf("results = %d, want %d", len(got), wantResults)
			}
		})
	}
}

// TestPipelineBoundsMemory checks that push waits while the queue is over
// its limit, until the persist side takes it, and gives up on stop.
func TestPipelineBoundsMemory(t *testing.T) {
	p := newPipeline(10)
	big := appendMsg([]*raftpb.Entry{{Data: make([]byte, 20)}}, nil)
	stop := make(chan struct{})
	if !p.push(big, stop) {
		t.Fatal("first push refused")
	}
	pushed := make(chan bool)
	go func() { pushed <- p.push(big, stop) }()
	select {
	case <-pushed:
		t.Fatal("push over the limit did not wait")
	default:
	}
	if got := p.take(); len(got) != 1 {
		t.Fatalf("take = %d jobs, want 1", len(got))
	}
	if !<-pushed {
		t.Fatal("push after take refused")
	}
	go func() { pushed <- p.push(big, stop) }()
	close(stop)
	if <-pushed {
		t.Fatal("push over the limit succeeded after stop")
	}
}

// failingLog fails every write once armed.
type failingLog struct {
	logStore
	armed atomic.Bool
}

var errInjected = errors.New("injected write failure")

func (f *failingLog) Save(ents []*raftpb.Entry, hs *raftpb.HardState, sync bool) error {
	if f.armed.Load() {
		return errInjected
	}
	return f.logStore.Save(ents, hs, sync)
}

func (f *failingLog) Append(ents []*raftpb.Entry, hs *raftpb.HardState) error {
	return f.Save(ents, hs, true)
}

// loneTransport serves a single-member group: there is nobody to talk to.
type loneTransport struct{}

func (loneTransport) Start(Handler) error                                    { return nil }
func (loneTransport) Send([]Message)                                         {}
func (loneTransport) SendSnapshot(context.Context, Message, io.Reader) error { return nil }
func (loneTransport) AddPeer(uint64, string)                                 {}
func (loneTransport) RemovePeer(uint64)                                      {}
func (loneTransport) Close() error                                           { return nil }

type nopSM struct{}

func (nopSM) Apply([]Command) error             { return nil }
func (nopSM) Snapshot() (SnapshotWriter, error) { return nil, errors.New("no snapshots") }
func (nopSM) Restore(r io.Reader) error         { _, err := io.Copy(io.Discard, r); return err }

// TestLogWriteFailureStopsNode checks, in both storage modes, that a failed
// log write stops the node: the proposal waiting on it fails with
// ErrStopped, and Err and Close report the cause.
func TestLogWriteFailureStopsNode(t *testing.T) {
	for _, mode := range []StorageMode{StoragePipelined, StorageInline} {
		t.Run(mode.String(), func(t *testing.T) {
			fl := &failingLog{}
			leader := make(chan struct{}, 1)
			n, err := Start(Config{
				ID: 1, Memory: NewMemoryStore(), Transport: loneTransport{},
				Bootstrap:    []Member{{ID: 1}},
				TickInterval: time.Millisecond, StorageMode: mode,
				wrapLog: func(l logStore) logStore { fl.logStore = l; return fl },
				OnEvent: func(e Event) {
					if e.Kind == EventLeaderChanged && e.Leader == 1 {
						wake(leader)
					}
				},
			}, nopSM{})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			select {
			case <-leader:
			case <-ctx.Done():
				t.Fatal("no leader")
			}
			if _, err := n.Propose(ctx, []byte("ok")); err != nil {
				t.Fatalf("propose before the failure: %v", err)
			}
			fl.armed.Store(true)
			_, err = n.Propose(ctx, []byte("lost"))
			if !errors.Is(err, ErrStopped) || !errors.Is(err, errInjected) {
				t.Fatalf("propose during the failure = %v, want ErrStopped wrapping the cause", err)
			}
			select {
			case <-n.Done():
			case <-ctx.Done():
				t.Fatal("node did not stop")
			}
			if !errors.Is(n.Err(), errInjected) {
				t.Fatalf("Err = %v", n.Err())
			}
			if err := n.Close(); !errors.Is(err, errInjected) {
				t.Fatalf("Close = %v", err)
			}
			if _, err := n.Propose(ctx, []byte("after")); !errors.Is(err, ErrStopped) {
				t.Fatalf("propose after the failure = %v", err)
			}
		})
	}
}
