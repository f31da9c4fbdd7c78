package crdt

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// crdtLike is the method set every type of the package shares.
type crdtLike[T any] interface {
	Merge(T)
	Clone() T
	Equal(T) bool
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// subject describes one CRDT type to the generic property tests.
type subject[T crdtLike[T]] struct {
	name  string
	new   func(replica string) T  // a writing replica
	empty func() T                // a fresh merge/decoding target
	op    func(t *rapid.T, x T) T // a random mutation; returns its delta
}

// tb is what the helpers need from *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

var replicaIDs = []string{"r0", "r1", "r2", "r3", "r4"}

func mustEncode[T crdtLike[T]](t tb, x T) []byte {
	t.Helper()
	b, err := x.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

// sameState fails unless a and b are Equal and encode to the same bytes.
func sameState[T crdtLike[T]](t tb, what string, a, b T) {
	t.Helper()
	if !a.Equal(b) {
		t.Fatalf("%s: states differ:\n%s\n%s", what, dump(t, a), dump(t, b))
	}
	if ab, bb := mustEncode(t, a), mustEncode(t, b); !bytes.Equal(ab, bb) {
		t.Fatalf("%s: Equal states encode differently:\n%x\n%x", what, ab, bb)
	}
}

func dump[T crdtLike[T]](t tb, x T) string {
	b, err := x.MarshalBinary()
	return fmt.Sprintf("%+v (%x, %v)", x, b, err)
}

func merged[T crdtLike[T]](a, b T) T {
	c := a.Clone()
	c.Merge(b)
	return c
}

// history runs random operations and merges on 3–5 replicas and returns
// the replicas' final states and every delta produced, in order.
func history[T crdtLike[T]](t *rapid.T, s subject[T]) (reps, deltas []T) {
	n := rapid.IntRange(3, 5).Draw(t, "replicas")
	for i := range n {
		reps = append(reps, s.new(replicaIDs[i]))
	}
	steps := rapid.IntRange(1, 80).Draw(t, "steps")
	for range steps {
		i := rapid.IntRange(0, n-1).Draw(t, "replica")
		switch rapid.IntRange(0, 4).Draw(t, "action") {
		case 0: // merge another replica's state
			reps[i].Merge(reps[rapid.IntRange(0, n-1).Draw(t, "from")].Clone())
		case 1: // merge an earlier delta
			if len(deltas) > 0 {
				reps[i].Merge(deltas[rapid.IntRange(0, len(deltas)-1).Draw(t, "delta")])
			}
		default:
			before := reps[i].Clone()
			d := s.op(t, reps[i])
			// op(X) == X ⊔ δ(X)
			sameState(t, "state after op vs state merged with its delta", reps[i], merged(before, d))
			deltas = append(deltas, d)
		}
	}
	return reps, deltas
}

// checkLaws: merge is commutative, associative and idempotent on states and
// deltas, and inflationary; encodings round-trip.
func checkLaws[T crdtLike[T]](t *testing.T, s subject[T]) {
	rapid.Check(t, func(t *rapid.T) {
		reps, deltas := history(t, s)
		pool := append(append([]T{}, reps...), deltas...)
		pick := func(label string) T { return pool[rapid.IntRange(0, len(pool)-1).Draw(t, label)] }
		for range 4 {
			a, b, c := pick("a"), pick("b"), pick("c")
			sameState(t, "commutative", merged(a, b), merged(b, a))
			sameState(t, "associative", merged(merged(a, b), c), merged(a, merged(b, c)))
			sameState(t, "idempotent", merged(a, a), a)
			ab := merged(a, b)
			sameState(t, "inflationary", merged(ab, a), ab)
			sameState(t, "merge into empty", merged(s.empty(), a), a)
			// Encoding round-trips and is deterministic.
			enc := mustEncode(t, a)
			back := s.empty()
			if err := back.UnmarshalBinary(enc); err != nil {
				t.Fatalf("UnmarshalBinary of own encoding %x: %v", enc, err)
			}
			sameState(t, "round trip", back, a)
		}
		// Merging every delta equals merging every final state when replicas
		// have merged everything: here, compare the join of the deltas with
		// the join of the replicas' states, which must include them.
		all := s.empty()
		for _, d := range deltas {
			all.Merge(d)
		}
		states := s.empty()
		for _, r := range reps {
			states.Merge(r)
		}
		sameState(t, "join of deltas vs join of states", all, states)
	})
}

// network delivers messages to replicas out of order, duplicated, delayed
// and (optionally) dropped.
type message[T any] struct {
	to int
	v  T
}

// checkConvergence runs random operations whose deltas travel through a
// shuffling, duplicating, delaying network, with occasional full-state
// gossip. With drops allowed, a final anti-entropy round of full states
// repairs what was lost. All replicas must end with equal states, equal
// encodings, and the join of all deltas. It returns the replicas and
// deltas for type-specific checks.
func checkConvergence[T crdtLike[T]](t *rapid.T, s subject[T]) (reps, deltas []T) {
	n := rapid.IntRange(3, 5).Draw(t, "replicas")
	for i := range n {
		reps = append(reps, s.new(replicaIDs[i]))
	}
	drops := rapid.Bool().Draw(t, "drops")
	var net []message[T]
	deliver := func(k int, dup bool) {
		m := net[k]
		reps[m.to].Merge(m.v)
		if !dup {
			net = append(net[:k], net[k+1:]...)
		}
	}
	steps := rapid.IntRange(1, 120).Draw(t, "steps")
	for range steps {
		switch a := rapid.IntRange(0, 9).Draw(t, "action"); {
		case a < 4: // local op, delta broadcast
			i := rapid.IntRange(0, n-1).Draw(t, "replica")
			d := s.op(t, reps[i])
			deltas = append(deltas, d)
			for j := range n {
				if j != i {
					net = append(net, message[T]{j, d})
				}
			}
		case a < 8 && len(net) > 0: // deliver any pending message, maybe keep a duplicate
			deliver(rapid.IntRange(0, len(net)-1).Draw(t, "msg"), rapid.IntRange(0, 3).Draw(t, "dup") == 0)
		case a == 8: // full-state gossip
			i, j := rapid.IntRange(0, n-1).Draw(t, "from"), rapid.IntRange(0, n-1).Draw(t, "to")
			net = append(net, message[T]{j, reps[i].Clone()})
		case drops && len(net) > 0:
			k := rapid.IntRange(0, len(net)-1).Draw(t, "drop")
			net = append(net[:k], net[k+1:]...)
		}
	}
	for len(net) > 0 {
		deliver(rapid.IntRange(0, len(net)-1).Draw(t, "drain"), rapid.IntRange(0, 5).Draw(t, "drain dup") == 0)
	}
	if drops {
		for i := range reps {
			reps[0].Merge(reps[i].Clone())
		}
		for i := range reps {
			reps[i].Merge(reps[0].Clone())
		}
	}
	all := s.empty()
	for _, d := range deltas {
		all.Merge(d)
	}
	for i := range reps {
		sameState(t, fmt.Sprintf("replica %d vs replica 0", i), reps[i], reps[0])
	}
	sameState(t, "replicas vs join of all deltas", reps[0], all)
	return reps, deltas
}
