package crdt

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func TestDeltaLog(t *testing.T) {
	src := NewORSet[string]("src")
	l := NewDeltaLog[*ORSet[string]](4)
	if _, upTo, pending, full := l.Since("p"); !full || pending || upTo != 0 {
		t.Fatalf("unknown peer: full %v pending %v upTo %d, want full state", full, pending, upTo)
	}
	l.AddPeer("p", 0)
	l.AddPeer("q", 0)
	if _, _, pending, full := l.Since("p"); pending || full {
		t.Fatal("empty log reports something to send")
	}
	l.Append(src.Add("a"))
	l.Append(src.Add("b"))
	if seq := l.Append(src.Remove("a")); seq != 3 || l.Last() != 3 {
		t.Fatalf("Append = %d, Last = %d, want 3", seq, l.Last())
	}
	d, upTo, pending, full := l.Since("p")
	if !pending || full || upTo != 3 || !slices.Equal(d.Elements(), []string{"b"}) {
		t.Fatalf("Since = %v %d %v %v", d.Elements(), upTo, pending, full)
	}
	l.Ack("p", 3)
	l.Ack("p", 1) // late ack: ignored
	if l.Len() != 3 {
		t.Fatalf("Len = %d before q acked, want 3", l.Len())
	}
	l.Ack("q", 2)
	if l.Len() != 1 {
		t.Fatalf("Len = %d after both acked 2, want 1", l.Len())
	}
	if _, _, pending, _ := l.Since("p"); pending {
		t.Fatal("p has everything but Since reports pending deltas")
	}
	// Overflow: q falls behind what the log keeps and must get full state.
	for _, e := range []string{"c", "d", "e", "f", "g"} {
		l.Append(src.Add(e))
	}
	if _, upTo, _, full := l.Since("q"); !full || upTo != l.Last() {
		t.Fatalf("peer behind the log: full %v upTo %d, want full at %d", full, upTo, l.Last())
	}
	l.Ack("q", l.Last()) // after q confirmed the full state
	if _, _, pending, full := l.Since("q"); pending || full {
		t.Fatal("q up to date after full state")
	}
	l.RemovePeer("q")
	if _, _, _, full := l.Since("p"); !full {
		t.Fatal("p fell behind the log too but is not sent full state")
	}
	l.Ack("p", l.Last())
	if l.Len() != 0 {
		t.Fatalf("Len = %d after the only peer acked everything", l.Len())
	}
	d2 := src.Add("h")
	l.Append(d2)
	if d, _, pending, _ := l.Since("p"); !pending || !d.Equal(d2) || d == d2 {
		t.Fatal("Since of one delta must return a copy of it")
	}
	if NewDeltaLog[*GCounter](0).max != DefaultDeltaLogSize {
		t.Fatal("non-positive size does not mean the default")
	}
}

// TestDeltaLogConvergence ships deltas from a DeltaLog over a network that
// loses, duplicates and reorders both deltas and acknowledgements; peers
// must still end with the source's state, and the log must end empty once
// everyone has acknowledged everything.
func TestDeltaLogConvergence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		src := NewORSet[string]("src")
		peers := []*ORSet[string]{NewORSet[string]("p0"), NewORSet[string]("p1"), NewORSet[string]("p2")}
		l := NewDeltaLog[*ORSet[string]](rapid.IntRange(1, 8).Draw(t, "max"))
		type msg struct {
			to   int
			d    *ORSet[string]
			upTo uint64
		}
		var toPeers []msg
		var acks []msg
		send := func(i int) {
			d, upTo, pending, full := l.Since(replicaIDs[i])
			switch {
			case full:
				toPeers = append(toPeers, msg{i, src.Clone(), upTo})
			case pending:
				toPeers = append(toPeers, msg{i, d, upTo})
			}
		}
		for range rapid.IntRange(1, 100).Draw(t, "steps") {
			switch rapid.IntRange(0, 5).Draw(t, "action") {
			case 0, 1:
				l.Append(orsetOp(t, src))
			case 2:
				send(rapid.IntRange(0, 2).Draw(t, "peer"))
			case 3:
				if len(toPeers) > 0 {
					k := rapid.IntRange(0, len(toPeers)-1).Draw(t, "msg")
					m := toPeers[k]
					toPeers = slices.Delete(toPeers, k, k+1)
					if rapid.IntRange(0, 4).Draw(t, "lost") > 0 {
						peers[m.to].Merge(m.d)
						acks = append(acks, m)
					}
				}
			case 4:
				if len(acks) > 0 {
					k := rapid.IntRange(0, len(acks)-1).Draw(t, "ack")
					a := acks[k]
					if rapid.IntRange(0, 3).Draw(t, "dup ack") > 0 {
						acks = slices.Delete(acks, k, k+1)
					}
					l.Ack(replicaIDs[a.to], a.upTo)
				}
			case 5:
				if len(acks) > 0 { // lose an ack
					k := rapid.IntRange(0, len(acks)-1).Draw(t, "lose ack")
					acks = slices.Delete(acks, k, k+1)
				}
			}
		}
		// Quiesce over a reliable network.
		for round := 0; ; round++ {
			if round > 10 {
				t.Fatal("did not quiesce")
			}
			toPeers, acks = nil, nil
			for i := range peers {
				send(i)
			}
			if len(toPeers) == 0 {
				break
			}
			for _, m := range toPeers {
				peers[m.to].Merge(m.d)
				l.Ack(replicaIDs[m.to], m.upTo)
			}
		}
		for _, p := range peers {
			sameState(t, "peer vs source", p, src)
		}
		if l.Len() != 0 {
			t.Fatalf("log holds %d deltas after every peer acknowledged everything", l.Len())
		}
	})
}
