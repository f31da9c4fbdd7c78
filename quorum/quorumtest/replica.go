// Package quorumtest checks that an implementation of [quorum.Replica]
// keeps its contract, so that a Coordinator over it keeps every write.
//
// Call [TestReplica] from a test with a constructor for fresh, empty
// replicas:
//
//	func TestMyReplica(t *testing.T) {
//		quorumtest.TestReplica(t, func(t *testing.T, name string, ring *quorum.Ring) quorum.Replica[string] {
//			return mystore.Open(t.TempDir(), name, ring)
//		})
//	}
package quorumtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/distkit/distkit/quorum"
)

// NewReplica returns a fresh, empty replica of values of type string for
// the node called name, partitioning keys as ring does. It may register
// cleanups on t.
type NewReplica func(t *testing.T, name string, ring *quorum.Ring) quorum.Replica[string]

// TestReplica runs the conformance checks as subtests of t. Replicas that
// also implement [quorum.Syncer] get its checks too.
func TestReplica(t *testing.T, newReplica NewReplica) {
	ctx := context.Background()
	ring := quorum.NewRing(quorum.WithPartitions(64))
	ring.Add("r1", "r2", "r3")

	t.Run("missing key is the zero object", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		o, err := r.Get(ctx, "absent")
		if err != nil || !o.IsZero() {
			t.Fatalf("Get(absent) = %+v, %v; want the zero Object and no error", o, err)
		}
	})

	t.Run("update stamps dots of the replica's own name", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		if _, err := r.Update(ctx, "k", quorum.Write[string]{Value: "a"}); err != nil {
			t.Fatal(err)
		}
		b, err := r.Update(ctx, "k", quorum.Write[string]{Value: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Values(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("two blind updates: values %v, want siblings [a b]", got)
		}
		for _, s := range b.Siblings {
			if s.Dot.Replica != "r1" {
				t.Fatalf("dot %v not stamped with the replica's name r1", s.Dot)
			}
		}
		c, err := r.Update(ctx, "k", quorum.Write[string]{Context: b.Context, Value: "c"})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Values(); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("update with the read context: %v, want [c]", got)
		}
		stored, err := r.Get(ctx, "k")
		if err != nil || stored.Digest() != c.Digest() {
			t.Fatalf("Get after Update = %+v, %v; want the object Update returned", stored, err)
		}
	})

	t.Run("put merges instead of overwriting", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		mine, err := r.Update(ctx, "k", quorum.Write[string]{Value: "mine"})
		if err != nil {
			t.Fatal(err)
		}
		theirs := quorum.Object[string]{}.Update("r2", quorum.Write[string]{Value: "theirs"})
		if err := r.Put(ctx, "k", theirs); err != nil {
			t.Fatal(err)
		}
		got, err := r.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if want := mine.Merge(theirs); got.Digest() != want.Digest() {
			t.Fatalf("after Put: %+v, want the merge %+v", got, want)
		}
		// A stale object changes nothing.
		if err := r.Put(ctx, "k", mine); err != nil {
			t.Fatal(err)
		}
		again, _ := r.Get(ctx, "k")
		if again.Digest() != got.Digest() {
			t.Fatal("Put of an older object changed the stored one")
		}
	})

	t.Run("concurrent updates never reuse a dot", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		const n = 32
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if _, err := r.Update(ctx, "k", quorum.Write[string]{Value: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		o, err := r.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Values()) != n {
			t.Fatalf("%d concurrent blind updates left %d siblings", n, len(o.Values()))
		}
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("deletes are kept as tombstones", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		o, err := r.Update(ctx, "k", quorum.Write[string]{Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Update(ctx, "k", quorum.Write[string]{Context: o.Context, Delete: true}); err != nil {
			t.Fatal(err)
		}
		// The deleted version arriving late must not come back.
		if err := r.Put(ctx, "k", o); err != nil {
			t.Fatal(err)
		}
		got, _ := r.Get(ctx, "k")
		if !got.Deleted() || len(got.Values()) != 0 {
			t.Fatalf("after delete and a late copy of the old version: %+v", got)
		}
	})

	t.Run("a done context never fakes success", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := r.Update(done, "k", quorum.Write[string]{Value: "v"}); err == nil {
			if o, _ := r.Get(ctx, "k"); o.IsZero() {
				t.Fatal("Update with a done context reported success but stored nothing")
			}
		}
	})

	t.Run("syncer digests match the objects", func(t *testing.T) {
		r := newReplica(t, "r1", ring)
		s, ok := r.(quorum.Syncer)
		if !ok {
			t.Skip("replica does not implement quorum.Syncer")
		}
		want := map[int]uint64{}
		keys := map[int]map[string]uint64{}
		for i := range 40 {
			k := fmt.Sprintf("key-%d", i)
			o, err := r.Update(ctx, k, quorum.Write[string]{Value: k})
			if err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 { // change some objects after their first write
				if o, err = r.Update(ctx, k, quorum.Write[string]{Context: o.Context, Value: k + "'"}); err != nil {
					t.Fatal(err)
				}
			}
			p := ring.Partition(k)
			want[p] = quorum.CombineDigest(want[p], quorum.KeyDigest(k, o.Digest()))
			if keys[p] == nil {
				keys[p] = map[string]uint64{}
			}
			keys[p][k] = o.Digest()
		}
		got, err := s.Digests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Digests has %d partitions, want %d", len(got), len(want))
		}
		for p, d := range want {
			if got[p] != d {
				t.Fatalf("partition %d root %x, want %x", p, got[p], d)
			}
			h, err := s.Hashes(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != len(keys[p]) {
				t.Fatalf("partition %d: Hashes has %d keys, want %d", p, len(h), len(keys[p]))
			}
			for k, d := range keys[p] {
				if h[k] != d {
					t.Fatalf("partition %d key %s: hash %x, want %x", p, k, h[k], d)
				}
			}
		}
	})
}
