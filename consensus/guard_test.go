package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// fuzzReader takes fields from fuzz input, zeros once it runs out.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *fuzzReader) u64() uint64 {
	var b [8]byte
	n := copy(b[:], r.b)
	r.b = r.b[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// small returns a value near base: most fuzz inputs should land near the
// node's real indexes and terms, some anywhere.
func (r *fuzzReader) small(base uint64) uint64 {
	switch k := r.byte(); {
	case k < 200:
		return base + uint64(k%8) - min(base, uint64(k%3))
	default:
		return r.u64()
	}
}

// fuzzMessages turns fuzz input into messages from the members 2 and 3 of
// a group of three (and strangers) to member 1.
func fuzzMessages(b []byte, incs map[uint64]uint64) []Message {
	r := &fuzzReader{b}
	var out []Message
	for range 6 {
		if len(r.b) == 0 {
			break
		}
		from := uint64(2 + r.byte()%3) // 2, 3 or 4 (not a member)
		m := &raftpb.Message{
			Type:    raftpb.MessageType(r.byte() % 22).Enum(),
			From:    new(from),
			To:      new(uint64(1)),
			Term:    new(r.small(1)),
			LogTerm: new(r.small(1)),
			Index:   new(r.small(1)),
			Commit:  new(r.small(1)),
			Reject:  new(r.byte()%2 == 0),
		}
		if m.GetType() == raftpb.MsgProp || m.GetType() == raftpb.MsgReadIndex {
			m.Term = nil
		}
		for i := range r.byte() % 4 {
			e := &raftpb.Entry{Index: new(m.GetIndex() + 1 + uint64(i)), Term: new(m.GetTerm()), Data: []byte{r.byte()}}
			if k := r.byte(); k > 230 {
				e.Index = new(r.small(m.GetIndex()))
				e.Term = new(r.small(m.GetTerm()))
				e.Type = raftpb.EntryType(k % 3).Enum()
			}
			m.Entries = append(m.Entries, e)
		}
		inc := incs[from]
		if r.byte() > 240 {
			inc = r.u64()
		}
		p, _ := proto.MarshalOptions{}.MarshalAppend(appendEnvelope(nil, 0, inc), m)
		if k := r.byte(); k > 240 && len(p) > 0 {
			p[int(k)%len(p)] ^= r.byte() // damage it
		}
		out = append(out, Message{From: from, To: 1, Payload: p})
	}
	return out
}

// FuzzStep feeds messages built from arbitrary bytes through member 1's
// decoding and checks to raft's Step, and raft's Ready through the node.
// Whatever arrives, the node must neither panic nor fail, except with
// ErrDataLoss where a heartbeat claims it acknowledged more than its log
// holds.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, byte(raftpb.MsgHeartbeat), 255, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, byte(raftpb.MsgApp), 3, 0, 1, 0, 1, 3, 'a', 0, 'b', 240, 'c', 231, 9, 9})
	f.Add([]byte{0, byte(raftpb.MsgProp), 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, byte(raftpb.MsgVote), 2, 2, 3, 0, 1, 0, 0, 2, byte(raftpb.MsgApp), 2, 1, 1, 5, 0, 2, 'x', 0, 'y', 0})
	f.Add([]byte{0, byte(raftpb.MsgHeartbeat), 1, 0, 0, 7, 0})
	f.Add([]byte{2, byte(raftpb.MsgApp), 1, 1, 1, 0, 0, 1, 'z', 0, 0, byte(raftpb.MsgTimeoutNow), 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		incs := map[uint64]uint64{2: 22, 3: 33, 4: 44}
		msgs := fuzzMessages(b, incs)
		mem := NewMemoryStore()
		n, err := Start(Config{
			ID: 1, Memory: mem, Transport: loneTransport{}, TickInterval: time.Hour,
			Bootstrap: []Member{{ID: 1}, {ID: 2}, {ID: 3}},
		}, nopSM{})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		ctx := context.Background()
		// The group has recorded members 2 and 3.
		_ = n.do(ctx, func() { n.incs.Store(&map[uint64]uint64{2: 22, 3: 33}) })
		for _, wm := range msgs {
			in, err := decodeInbound(1, 0, wm)
			if err != nil {
				continue
			}
			_ = n.do(ctx, func() { n.step([]inbound{in}) })
		}
		_ = n.do(ctx, func() {}) // the last Ready is handled
		if err := n.Err(); err != nil && !errors.Is(err, ErrDataLoss) {
			t.Fatalf("node failed: %v", err)
		}
	})
}

// A directory of an earlier release (a log, no identity file) gets an
// identity on its first start; later starts read the same one.
func TestIdentityCreatedForExistingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o750); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: dir, GroupID: 5}
	id, err := openIdentity(cfg)
	if err != nil || id.group != 5 || id.incarnation == 0 {
		t.Fatalf("first open = %+v, %v", id, err)
	}
	again, err := openIdentity(cfg)
	if err != nil || again != id {
		t.Fatalf("second open = %+v, %v; want %+v", again, err, id)
	}
	cfg.GroupID = 6
	if _, err := openIdentity(cfg); !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("open as group 6: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, identityFile), []byte("dkid garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := openIdentity(cfg); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged identity: %v", err)
	}
}

func TestMaxTermJumpValidated(t *testing.T) {
	c := Config{ID: 1, Memory: NewMemoryStore(), Transport: loneTransport{}}
	got, err := c.withDefaults()
	if err != nil || got.MaxTermJump != DefaultMaxTermJump {
		t.Fatalf("default MaxTermJump = %d, %v", got.MaxTermJump, err)
	}
	c.MaxTermJump = MaxTerm + 1
	if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxTermJump beyond MaxTerm: %v", err)
	}
}

// Snapshot streams are checked before raft installs them: another group's,
// one with a configuration raft cannot restore, or one whose stream does
// not decode are refused, and the member keeps running. Before, raft
// panicked on the configuration and the apply loop stopped the member on
// the stream.
func TestHostileSnapshotsRefused(t *testing.T) {
	n, err := Start(Config{
		ID: 1, Memory: NewMemoryStore(), Transport: loneTransport{}, TickInterval: time.Hour,
		Bootstrap: []Member{{ID: 1}, {ID: 2}, {ID: 3}},
	}, nopSM{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h := handler{n}
	ctx := context.Background()
	snapMsg := func(group uint64, cs *raftpb.ConfState) Message {
		m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(2)),
			Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2)), ConfState: cs}}}
		b, _ := proto.MarshalOptions{}.MarshalAppend(appendEnvelope(nil, group, 22), m)
		return Message{From: 2, To: 1, Kind: KindSnapshot, Payload: b}
	}
	good := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	header := encodeSnapshotHeader(replicated{members: []Member{{ID: 1}, {ID: 2}, {ID: 3}}, dedup: newDedupWindow(1), sess: newSessions()}, true)
	tests := []struct {
		name string
		msg  Message
		body []byte
	}{
		{"other group", snapMsg(9, good), header},
		{"voter and learner", snapMsg(0, &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{2}}), header},
		{"no voters", snapMsg(0, &raftpb.ConfState{Learners: []uint64{1}}), header},
		{"garbage stream", snapMsg(0, good), []byte("not a snapshot")},
	}
	for _, tt := range tests {
		if err := h.HandleSnapshot(ctx, tt.msg, bytes.NewReader(tt.body)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if got := n.Stats().MessagesRefused; got != uint64(len(tests)) {
		t.Errorf("MessagesRefused = %d, want %d", got, len(tests))
	}
	// A sound one is installed.
	if err := h.HandleSnapshot(ctx, snapMsg(0, good), bytes.NewReader(header)); err != nil {
		t.Fatalf("sound snapshot: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.WaitApplied(wctx, 10); err != nil {
		t.Fatalf("sound snapshot not installed: %v (node error %v)", err, n.Err())
	}
	if err := n.Err(); err != nil {
		t.Fatalf("node failed: %v", err)
	}
}

// FuzzValidConfState checks that a configuration validConfState accepts is
// one raft restores without panicking.
func FuzzValidConfState(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0, 0, 0})
	f.Add([]byte{1, 2, 0, 2, 0, 0})
	f.Add([]byte{1, 0, 2, 0, 1, 3, 0, 2, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Four 0-terminated lists of small ids, then the AutoLeave flag.
		var sets [4][]uint64
		i := 0
		for _, c := range b {
			if i == 4 {
				break
			}
			if c == 0 {
				i++
				continue
			}
			sets[i] = append(sets[i], uint64(c%8))
		}
		cs := &raftpb.ConfState{Voters: sets[0], Learners: sets[1], VotersOutgoing: sets[2], LearnersNext: sets[3],
			AutoLeave: new(len(b) > 0 && b[len(b)-1]%2 == 1)}
		if validConfState(cs, 10) != nil {
			return
		}
		ms := raft.NewMemoryStorage()
		if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(10)), Term: new(uint64(2)), ConfState: cs}}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("accepted %v, which raft cannot restore: %v", cs, r)
			}
		}()
		if _, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, MaxInflightMsgs: 16,
			Logger: raftLogger{slog.New(slog.DiscardHandler)}}); err != nil {
			t.Fatalf("accepted %v, which raft refuses: %v", cs, err)
		}
	})
}
