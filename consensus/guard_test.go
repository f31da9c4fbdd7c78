package consensus

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

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
