package crdt

import (
	"encoding/binary"
	"slices"
	"testing"
)

// naiveORSet is the reference design used by most Go CRDT libraries: an
// observed-remove set that tags every add with a unique id and remembers
// removed tags as tombstones forever. It is here only so benchmarks can show
// what the causal-context design saves.
type naiveORSet struct {
	replica string
	n       uint64
	adds    map[int]map[naiveTag]struct{}
	rems    map[int]map[naiveTag]struct{} // tombstones
}

type naiveTag struct {
	replica string
	n       uint64
}

func newNaiveORSet(replica string) *naiveORSet {
	return &naiveORSet{replica: replica, adds: map[int]map[naiveTag]struct{}{}, rems: map[int]map[naiveTag]struct{}{}}
}

func addTags(m map[int]map[naiveTag]struct{}, e int, tags ...naiveTag) {
	s := m[e]
	if s == nil {
		s = map[naiveTag]struct{}{}
		m[e] = s
	}
	for _, t := range tags {
		s[t] = struct{}{}
	}
}

func (s *naiveORSet) Add(e int) *naiveORSet {
	s.n++
	t := naiveTag{s.replica, s.n}
	addTags(s.adds, e, t)
	d := newNaiveORSet("")
	addTags(d.adds, e, t)
	return d
}

func (s *naiveORSet) Remove(e int) *naiveORSet {
	d := newNaiveORSet("")
	for t := range s.adds[e] {
		if _, gone := s.rems[e][t]; !gone {
			addTags(s.rems, e, t)
			addTags(d.rems, e, t)
		}
	}
	return d
}

func (s *naiveORSet) Contains(e int) bool {
	for t := range s.adds[e] {
		if _, gone := s.rems[e][t]; !gone {
			return true
		}
	}
	return false
}

func (s *naiveORSet) Merge(o *naiveORSet) {
	for e, ts := range o.adds {
		for t := range ts {
			addTags(s.adds, e, t)
		}
	}
	for e, ts := range o.rems {
		for t := range ts {
			addTags(s.rems, e, t)
		}
	}
}

// MarshalBinary encodes deterministically, in the same varint style as the
// package's own encodings, so byte counts compare like for like.
func (s *naiveORSet) MarshalBinary() ([]byte, error) {
	b := []byte{1}
	for _, m := range []map[int]map[naiveTag]struct{}{s.adds, s.rems} {
		es := make([]int, 0, len(m))
		for e := range m {
			es = append(es, e)
		}
		slices.Sort(es)
		b = binary.AppendUvarint(b, uint64(len(es)))
		for _, e := range es {
			b = binary.AppendVarint(b, int64(e))
			ts := make([]naiveTag, 0, len(m[e]))
			for t := range m[e] {
				ts = append(ts, t)
			}
			slices.SortFunc(ts, func(a, b naiveTag) int {
				if a.replica != b.replica {
					if a.replica < b.replica {
						return -1
					}
					return 1
				}
				return int(a.n) - int(b.n)
			})
			b = binary.AppendUvarint(b, uint64(len(ts)))
			for _, t := range ts {
				b = appendString(b, t.replica)
				b = binary.AppendUvarint(b, t.n)
			}
		}
	}
	return b, nil
}

// TestNaiveORSet checks that the baseline is a correct add-wins set, so the
// benchmarks compare like with like.
func TestNaiveORSet(t *testing.T) {
	a, b := newNaiveORSet("a"), newNaiveORSet("b")
	b.Merge(a.Add(1))
	rm := a.Remove(1)
	add := b.Add(1)
	a.Merge(add)
	b.Merge(rm)
	if !a.Contains(1) || !b.Contains(1) {
		t.Fatal("naive set: concurrent add lost")
	}
	a.Merge(b)
	b.Merge(a.Remove(1))
	if a.Contains(1) || b.Contains(1) {
		t.Fatal("naive set: observed remove kept the element")
	}
}
