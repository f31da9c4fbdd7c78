package wal

import (
	"bytes"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// chooser returns an int in [lo, hi]; backed by math/rand or rapid.
type chooser func(label string, lo, hi int) int

type opKind int

const (
	opAppend opKind = iota
	opSnapshot
	opCompact
	opReopen
)

// op is one valid operation for the log in the state m.
type op struct {
	kind    opKind
	ents    []*raftpb.Entry
	hs      *raftpb.HardState
	snap    *raftpb.SnapshotMetadata
	compact uint64
	nosync  bool // Save with sync false (a deferred commit index)
}

// nextOp draws an operation that is valid for the state m, the way raft
// would issue it: appends never rewrite committed entries, commit never
// passes the last index, snapshots only move forward.
func nextOp(m *model, choose chooser, allowReopen bool) op {
	hi := 9
	if !allowReopen {
		hi = 8
	}
	k := choose("op", 0, hi)
	switch {
	case k <= 5:
		lo := max(m.hs.GetCommit()+1, m.dummyIndex+1)
		start := uint64(choose("start", int(lo), int(m.last()+1)))
		n := uint64(choose("n", 0, 8))
		term := m.hs.GetTerm()
		if t, ok := m.term(m.last()); ok {
			term = max(term, t)
		}
		if start <= m.last() || choose("newterm", 0, 3) == 0 {
			term++
		}
		var es []*raftpb.Entry
		for i := range n {
			e := ent(start+i, term)
			size := choose("size", 0, 300)
			e.Data = bytes.Repeat([]byte{byte(start + i), 0x5a}, size/2+1)
			if choose("nodata", 0, 9) == 0 {
				e.Data = nil
			}
			es = append(es, e)
		}
		newLast := m.last()
		if n > 0 {
			newLast = start + n - 1
		}
		var hs *raftpb.HardState
		if choose("hs", 0, 2) > 0 || n == 0 {
			commit := uint64(choose("commit", int(m.hs.GetCommit()), int(max(newLast, m.hs.GetCommit()))))
			hs = hardState(max(term, m.hs.GetTerm()), uint64(choose("vote", 0, 3)), commit)
		}
		// Without reopen there is no clean Close to write a deferred commit
		// index, and crash images would not hold it: sync everything then.
		nosync := allowReopen && choose("nosync", 0, 3) == 0
		return op{kind: opAppend, ents: es, hs: hs, nosync: nosync}
	case k == 6:
		cur := m.snap.GetIndex()
		if choose("received", 0, 2) == 0 {
			idx := max(m.last(), cur, m.hs.GetCommit()) + uint64(choose("ahead", 1, 20))
			term := max(m.hs.GetTerm(), 1) + uint64(choose("snapterm", 0, 1))
			return op{kind: opSnapshot, snap: meta(idx, term, uint64(choose("voter", 1, 5)))}
		}
		lo, top := max(cur+1, m.dummyIndex), min(m.hs.GetCommit(), m.last())
		if lo > top {
			return op{kind: opAppend}
		}
		idx := uint64(choose("snapidx", int(lo), int(top)))
		t, _ := m.term(idx)
		return op{kind: opSnapshot, snap: meta(idx, t, 1, 2, 3)}
	case k <= 8:
		if m.snap.GetIndex() <= m.dummyIndex {
			return op{kind: opAppend}
		}
		return op{kind: opCompact, compact: uint64(choose("compact", int(m.dummyIndex+1), int(m.snap.GetIndex())))}
	default:
		return op{kind: opReopen}
	}
}

// apply runs o on l and, if it succeeds, on m.
func (o op) apply(l *Log, m *model) error {
	var err error
	switch o.kind {
	case opAppend:
		err = l.Save(o.ents, o.hs, !o.nosync)
	case opSnapshot:
		err = l.SetSnapshot(o.snap)
	case opCompact:
		err = l.Compact(o.compact)
	}
	if err == nil {
		o.applyModel(m)
	}
	return err
}

// applyModel applies o to m only.
func (o op) applyModel(m *model) {
	switch o.kind {
	case opAppend:
		m.append(o.ents, o.hs)
	case opSnapshot:
		m.setSnapshot(proto.Clone(o.snap).(*raftpb.SnapshotMetadata))
	case opCompact:
		m.compact(o.compact)
	}
}
