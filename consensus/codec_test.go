package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

func TestEntryRoundTrip(t *testing.T) {
	tests := []struct {
		h    entryHeader
		body []byte
	}{
		{entryHeader{kind: entryCommand, epoch: 1, seq: 2}, []byte("cmd")},
		{entryHeader{kind: entryCommand, epoch: ^uint64(0), seq: 0, reqID: "r"}, nil},
		{entryHeader{kind: entryConfChange, epoch: 7, seq: 9}, encodeMembers(nil, []Member{{ID: 4, Addr: "a:1", Learner: true}})},
	}
	for _, tt := range tests {
		b := encodeEntry(tt.h, tt.body)
		h, body, err := decodeEntry(b)
		if err != nil || h != tt.h || !bytes.Equal(body, tt.body) {
			t.Fatalf("decode(encode(%+v)) = %+v %q %v", tt.h, h, body, err)
		}
	}
	for _, bad := range [][]byte{nil, {1}, make([]byte, 17), append([]byte{9, 0}, make([]byte, 16)...), append([]byte{1, 2}, make([]byte, 16)...), append([]byte{1, 1}, make([]byte, 16)...)} {
		if _, _, err := decodeEntry(bad); err == nil {
			t.Fatalf("decodeEntry(%x) accepted malformed input", bad)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(entryHeader{kind: entryCommand, epoch: 1, seq: 2, reqID: "id"}, []byte("x")))
	f.Add(encodeEntry(entryHeader{kind: entryConfChange, epoch: 3, seq: 4}, encodeMembers(nil, []Member{{ID: 1, Addr: "h"}})))
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := decodeEntry(data)
		if err != nil {
			return
		}
		if again := encodeEntry(h, body); !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs: %x vs %x", again, data)
		}
		if h.kind == entryConfChange {
			_, _ = decodeMembers(bytesReader(body))
		}
	})
}

func sampleReplicated() replicated {
	rs := replicated{members: []Member{{ID: 1, Addr: "a"}, {ID: 2, Learner: true}}, dedup: newDedupWindow(3), sess: newSessions()}
	rs.dedup.put("x", dedupResult{index: 5, result: []byte("r")})
	rs.dedup.put("y", dedupResult{index: 6, isErr: true, errMsg: "boom"})
	rs.sess.admit(9, 1)
	rs.sess.admit(9, 3)
	rs.incarnations = map[uint64]uint64{1: 11, 2: 22}
	return rs
}

// A version 1 header (no incarnations) still decodes, with an empty
// registry; version 2 round-trips the registry.
func TestSnapshotHeaderVersions(t *testing.T) {
	rs := sampleReplicated()
	got, _, err := decodeSnapshotHeader(bytesReader(encodeSnapshotHeader(rs, false)), 1<<20)
	if err != nil || len(got.incarnations) != 2 || got.incarnations[2] != 22 {
		t.Fatalf("v2: %v, %v", got.incarnations, err)
	}
	v1 := encodeSnapshotHeader(replicated{members: rs.members, dedup: rs.dedup, sess: rs.sess}, false)
	v1 = v1[:len(v1)-1] // drop the empty registry
	copy(v1, "dks1")
	got, _, err = decodeSnapshotHeader(bytesReader(v1), 1<<20)
	if err != nil || got.incarnations == nil || len(got.incarnations) != 0 || len(got.members) != 2 {
		t.Fatalf("v1: %+v, %v", got, err)
	}
}

func FuzzDecodeSnapshotHeader(f *testing.F) {
	f.Add(encodeSnapshotHeader(sampleReplicated(), false))
	f.Add(encodeSnapshotHeader(replicated{dedup: newDedupWindow(1), sess: newSessions()}, true))
	f.Add([]byte("dks1"))
	f.Add([]byte("dks1\x00\xff\xff\xff\xff\x0f"))
	f.Add([]byte("dks2\x00\x00\x00\x00\x00\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, noUser, err := decodeSnapshotHeader(bytesReader(data), 1<<20)
		if err != nil {
			return
		}
		rs.dedup.max = len(rs.dedup.order) + 1
		enc := encodeSnapshotHeader(rs, noUser)
		rs2, noUser2, err := decodeSnapshotHeader(bytesReader(enc), 1<<20)
		if err != nil || noUser2 != noUser {
			t.Fatalf("re-decode failed: %v", err)
		}
		rs2.dedup.max = rs.dedup.max
		if !bytes.Equal(encodeSnapshotHeader(rs2, noUser2), enc) {
			t.Fatal("header does not round-trip")
		}
	})
}

// envelope wraps a raft message as member inc of group 0 sends it.
func envelope(inc uint64, m *raftpb.Message) []byte {
	b, _ := proto.MarshalOptions{}.MarshalAppend(appendEnvelope(nil, 0, inc), m)
	return b
}

func FuzzDecodeInbound(f *testing.F) {
	m := &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(3)),
		Index: new(uint64(3)), LogTerm: new(uint64(2)),
		Entries: []*raftpb.Entry{{Index: new(uint64(4)), Term: new(uint64(3)), Data: []byte("d")}}}
	f.Add(envelope(7, m), uint64(2))
	f.Add(envelope(7, &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(^uint64(0)))}), uint64(2))
	f.Add(envelope(7, &raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(uint64(2)), To: new(uint64(1))}), uint64(2))
	snap, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgSnap.Enum(), From: new(uint64(2)), To: new(uint64(1))})
	f.Add(snap, uint64(2))
	f.Add([]byte{0xff, 0xff}, uint64(2))
	f.Fuzz(func(t *testing.T, payload []byte, from uint64) {
		in, err := decodeInbound(1, 0, Message{From: from, To: 1, Payload: payload})
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, ErrRefused) {
				t.Fatalf("error %v wraps neither errMalformed nor ErrRefused", err)
			}
			return
		}
		got := in.m
		if got.GetTo() != 1 || in.sender != from || (got.GetFrom() != from && got.GetType() != raftpb.MsgTransferLeader) ||
			got.GetType() == raftpb.MsgSnap || in.inc == 0 ||
			got.GetTerm() > MaxTerm || (got.GetTerm() == 0) != (got.GetType() == raftpb.MsgProp || got.GetType() == raftpb.MsgReadIndex) {
			t.Fatalf("accepted %v (incarnation %d)", got, in.inc)
		}
		if got.GetType() == raftpb.MsgApp {
			for i, e := range got.GetEntries() {
				if e.GetIndex() != got.GetIndex()+1+uint64(i) || e.GetTerm() > got.GetTerm() {
					t.Fatalf("accepted append with entry %d at %d/%d", i, e.GetIndex(), e.GetTerm())
				}
			}
		}
	})
}

func TestDecodeInboundRejects(t *testing.T) {
	mk := func(typ raftpb.MessageType, from, to, term uint64) []byte {
		return envelope(7, &raftpb.Message{Type: typ.Enum(), From: new(from), To: new(to), Term: new(term)})
	}
	bare, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(1))})
	foreign, _ := proto.MarshalOptions{}.MarshalAppend(appendEnvelope(nil, 9, 7),
		&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(1))})
	gap := envelope(7, &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(3)),
		Index: new(uint64(3)), LogTerm: new(uint64(2)),
		Entries: []*raftpb.Entry{{Index: new(uint64(4)), Term: new(uint64(3))}, {Index: new(uint64(6)), Term: new(uint64(3))}}})
	badConf := envelope(7, &raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(uint64(2)), To: new(uint64(1)),
		Entries: []*raftpb.Entry{{Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte{0xff}}}})
	tests := []struct {
		name    string
		payload []byte
		from    uint64
		ok      bool
	}{
		{"heartbeat", mk(raftpb.MsgHeartbeat, 2, 1, 1), 2, true},
		{"wrong recipient", mk(raftpb.MsgHeartbeat, 2, 3, 1), 2, false},
		{"spoofed sender", mk(raftpb.MsgHeartbeat, 3, 1, 1), 2, false},
		{"transfer naming the transferee", mk(raftpb.MsgTransferLeader, 3, 1, 1), 2, true},
		{"from self", mk(raftpb.MsgHeartbeat, 1, 1, 1), 1, false},
		{"local type", mk(raftpb.MsgHup, 2, 1, 1), 2, false},
		{"forget leader", mk(raftpb.MsgForgetLeader, 2, 1, 1), 2, false},
		{"snapshot outside stream", mk(raftpb.MsgSnap, 2, 1, 1), 2, false},
		{"no term", mk(raftpb.MsgHeartbeat, 2, 1, 0), 2, false},
		{"term beyond MaxTerm", mk(raftpb.MsgHeartbeat, 2, 1, ^uint64(0)), 2, false},
		{"proposal with a term", mk(raftpb.MsgProp, 2, 1, 5), 2, false},
		{"empty proposal", mk(raftpb.MsgProp, 2, 1, 0), 2, false},
		{"append with a gap", gap, 2, false},
		{"undecodable conf change", badConf, 2, false},
		{"bare protobuf", bare, 2, false},
		{"other group", foreign, 2, false},
		{"garbage", []byte{0xff, 0x01}, 2, false},
	}
	for _, tt := range tests {
		_, err := decodeInbound(1, 0, Message{From: tt.from, To: 1, Payload: tt.payload})
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	id := identity{group: 42, incarnation: 0xdeadbeef}
	got, err := decodeIdentity(encodeIdentity(id))
	if err != nil || got != id {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, id)
	}
	b := encodeIdentity(id)
	b[7] ^= 1
	if _, err := decodeIdentity(b); !errors.Is(err, errMalformed) {
		t.Fatalf("flipped bit: err = %v", err)
	}
}

func FuzzDecodeIdentity(f *testing.F) {
	f.Add(encodeIdentity(identity{group: 1, incarnation: 2}))
	f.Add([]byte("dkid"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodeIdentity(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeIdentity(id), b) {
			t.Fatalf("decoded %+v from %x, which re-encodes differently", id, b)
		}
	})
}

// The dedup window keeps exactly the newest max ids, in log order, and
// survives a snapshot round trip.
func TestDedupWindowProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		max := rapid.IntRange(1, 8).Draw(t, "max")
		ids := rapid.SliceOf(rapid.StringMatching(`[a-e]{1,2}`)).Draw(t, "ids")
		d := newDedupWindow(max)
		var model []string // ids in the window, oldest first
		for i, id := range ids {
			d.put(id, dedupResult{index: uint64(i + 1), result: []byte(id)})
			if !slices.Contains(model, id) {
				model = append(model, id)
				if len(model) > max {
					model = model[1:]
				}
			}
		}
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			_, ok := d.get(id)
			if ok != slices.Contains(model, id) {
				t.Fatalf("id %q present=%v, model %v", id, ok, model)
			}
		}
		if fmt.Sprint(d.order) != fmt.Sprint(model) {
			t.Fatalf("order %v, model %v", d.order, model)
		}
		d2, err := readDedupWindow(bytesReader(d.appendTo(nil)), 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(d2.order) != fmt.Sprint(d.order) {
			t.Fatalf("order %v != %v after round trip", d2.order, d.order)
		}
	})
}

// A proposal admitted once is refused afterwards, and a snapshot taken at
// any point leads to the same later decisions as the original.
func TestSessionsProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		type op struct{ epoch, seq uint64 }
		ops := rapid.SliceOf(rapid.Custom(func(t *rapid.T) op {
			return op{rapid.Uint64Range(1, 3).Draw(t, "epoch"), rapid.Uint64Range(1, 3*sessionWindow).Draw(t, "seq")}
		})).Draw(t, "ops")
		cut := rapid.IntRange(0, len(ops)).Draw(t, "cut")
		a := newSessions()
		admitted := map[op]bool{}
		for _, o := range ops[:cut] {
			got := a.admit(o.epoch, o.seq)
			if got && admitted[o] {
				t.Fatalf("%v admitted twice", o)
			}
			admitted[o] = admitted[o] || got
		}
		b, err := readSessions(bytesReader(a.appendTo(nil)))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ops[cut:] {
			x, y := a.admit(o.epoch, o.seq), b.admit(o.epoch, o.seq)
			if x != y {
				t.Fatalf("decision for %v differs after snapshot: %v vs %v", o, x, y)
			}
			if x && admitted[o] {
				t.Fatalf("%v admitted twice", o)
			}
			admitted[o] = admitted[o] || x
		}
	})
}

// refSession is the plain model of one session's window: a set of applied
// seqs above a floor that moves to seq-sessionWindow once a seq lands more
// than 2*sessionWindow above it.
type refSession struct {
	floor uint64
	seen  map[uint64]bool
}

func (r *refSession) admit(seq uint64) bool {
	if seq <= r.floor || r.seen[seq] {
		return false
	}
	r.seen[seq] = true
	if seq > r.floor+2*sessionWindow {
		r.floor = seq - sessionWindow
		for k := range r.seen {
			if k <= r.floor {
				delete(r.seen, k)
			}
		}
	}
	return true
}

// The bitmap window decides exactly as the plain model, including across
// floor moves by any distance, and survives a snapshot round trip.
func TestSessionMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newSessions()
		var ref *refSession
		seq := rapid.Uint64Range(1, 3*sessionWindow).Draw(t, "first")
		steps := rapid.IntRange(1, 300).Draw(t, "steps")
		for i := range steps {
			if ref == nil {
				ref = &refSession{seen: map[uint64]bool{}}
				if seq > sessionWindow {
					ref.floor = seq - sessionWindow
				}
			}
			if got, want := s.admit(1, seq), ref.admit(seq); got != want {
				t.Fatalf("step %d: admit(%d) = %v, model says %v (floor %d)", i, seq, got, want, ref.floor)
			}
			se := s.byEpoch[1]
			count := 0
			for _, v := range se.seen {
				count += bits.OnesCount64(v)
			}
			if se.floor != ref.floor || count != len(ref.seen) {
				t.Fatalf("step %d: floor %d with %d seqs, model %d with %d", i, se.floor, count, ref.floor, len(ref.seen))
			}
			for k := range ref.seen {
				if w, m := se.bit(k); se.seen[w]&m == 0 {
					t.Fatalf("step %d: seq %d forgotten", i, k)
				}
			}
			if rapid.IntRange(0, 20).Draw(t, "snapshot") == 0 {
				var err error
				if s, err = readSessions(bytesReader(s.appendTo(nil))); err != nil {
					t.Fatal(err)
				}
			}
			switch rapid.IntRange(0, 3).Draw(t, "move") {
			case 0: // a retry of a recent one
				seq -= min(seq-1, rapid.Uint64Range(0, 70).Draw(t, "back"))
			case 1: // a jump, possibly past the window
				seq += rapid.Uint64Range(1, 5*sessionWindow).Draw(t, "jump")
			default:
				seq += rapid.Uint64Range(1, 200).Draw(t, "next")
			}
		}
	})
}
