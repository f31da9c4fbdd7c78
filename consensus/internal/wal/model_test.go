package wal

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// model is the reference the log is checked against: raft.MemoryStorage's
// semantics plus the WAL's own rules (snapshot keep/discard, reopen starts
// after the snapshot).
type model struct {
	dummyIndex, dummyTerm uint64
	ents                  []*raftpb.Entry
	hs                    *raftpb.HardState
	snap                  *raftpb.SnapshotMetadata
}

func newModel() *model {
	return &model{hs: &raftpb.HardState{}, snap: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}}
}

func (m *model) clone() *model {
	c := *m
	c.ents = slices.Clone(m.ents)
	return &c
}

func (m *model) last() uint64 { return m.dummyIndex + uint64(len(m.ents)) }

func (m *model) term(i uint64) (uint64, bool) {
	switch {
	case i == m.dummyIndex:
		return m.dummyTerm, true
	case i < m.dummyIndex || i > m.last():
		return 0, false
	}
	return m.ents[i-m.dummyIndex-1].GetTerm(), true
}

func (m *model) append(es []*raftpb.Entry, hs *raftpb.HardState) {
	for len(es) > 0 && es[0].GetIndex() <= m.dummyIndex {
		es = es[1:]
	}
	if len(es) > 0 {
		m.ents = append(m.ents[:es[0].GetIndex()-m.dummyIndex-1:es[0].GetIndex()-m.dummyIndex-1], es...)
	}
	if hs != nil && !isEmpty(hs) {
		m.hs = hs
	}
}

func (m *model) setSnapshot(meta *raftpb.SnapshotMetadata) {
	if t, ok := m.term(meta.GetIndex()); !ok || t != meta.GetTerm() {
		m.ents = nil
		m.dummyIndex, m.dummyTerm = meta.GetIndex(), meta.GetTerm()
	}
	m.snap = meta
}

func (m *model) compact(i uint64) {
	m.dummyTerm, _ = m.term(i)
	m.ents = slices.Clone(m.ents[i-m.dummyIndex:])
	m.dummyIndex = i
}

// reopened is the state Open presents: the log starts after the snapshot.
func (m *model) reopened() *model {
	c := m.clone()
	if s := m.snap.GetIndex(); s > c.dummyIndex {
		c.compact(s)
	}
	return c
}

// diff describes how l differs from m, or returns "".
func (m *model) diff(l *Log) string {
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	if first != m.dummyIndex+1 || last != m.last() {
		return fmt.Sprintf("log spans [%d, %d], model [%d, %d]", first, last, m.dummyIndex+1, m.last())
	}
	if t, err := l.Term(m.dummyIndex); err != nil || t != m.dummyTerm {
		return fmt.Sprintf("Term(%d) = %d, %v; model %d", m.dummyIndex, t, err, m.dummyTerm)
	}
	got, err := l.Entries(first, last+1, ^uint64(0))
	if err != nil {
		return fmt.Sprintf("Entries: %v", err)
	}
	if len(got) != len(m.ents) {
		return fmt.Sprintf("%d entries, model %d", len(got), len(m.ents))
	}
	for i := range got {
		if !proto.Equal(got[i], m.ents[i]) {
			return fmt.Sprintf("entry %d = %v, model %v", first+uint64(i), got[i], m.ents[i])
		}
	}
	hs, cs, err := l.InitialState()
	if err != nil {
		return fmt.Sprintf("InitialState: %v", err)
	}
	if hs.GetTerm() != m.hs.GetTerm() || hs.GetVote() != m.hs.GetVote() || hs.GetCommit() != m.hs.GetCommit() {
		return fmt.Sprintf("hard state %v, model %v", hs, m.hs)
	}
	if !proto.Equal(cs, m.snap.GetConfState()) {
		return fmt.Sprintf("conf state %v, model %v", cs, m.snap.GetConfState())
	}
	sm := l.SnapshotMetadata()
	if sm.GetIndex() != m.snap.GetIndex() || sm.GetTerm() != m.snap.GetTerm() {
		return fmt.Sprintf("snapshot %v, model %v", sm, m.snap)
	}
	return ""
}
