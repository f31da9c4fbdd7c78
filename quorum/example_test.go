package quorum_test

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

// Wait for two of three replicas; the third is cancelled.
func ExampleCall() {
	replicas := []string{"a", "b", "c"}
	got, err := quorum.Call(context.Background(), replicas, 2,
		func(ctx context.Context, r string) (string, error) {
			if r == "c" {
				<-ctx.Done() // a straggler: cancelled once two have answered
				return "", ctx.Err()
			}
			return "ack from " + r, nil
		})
	slices.Sort(got)
	fmt.Println(got, err)
	// Output: [ack from a ack from b] <nil>
}

// When too many replicas fail, the error says which and why.
func ExampleError() {
	_, err := quorum.Call(context.Background(), []int{0, 1, 2}, 2,
		func(ctx context.Context, r int) (int, error) {
			if r > 0 {
				return 0, fmt.Errorf("disk %d full", r)
			}
			return r, nil
		})
	var qe *quorum.Error
	fmt.Println(errors.Is(err, quorum.ErrNoQuorum), errors.As(err, &qe), qe.Need, len(qe.Failed))
	// Output: true true 2 2
}

func ExampleRing_Lookup() {
	r := quorum.NewRing()
	r.Add("node-a", "node-b", "node-c", "node-d")
	pref := r.Lookup("user:42", 3)
	fmt.Println(len(pref), pref[0] != pref[1])
	r.Remove("node-z") // unknown: no-op
	fmt.Println(slices.Equal(pref, r.Lookup("user:42", 3)))
	// Output:
	// 3 true
	// true
}

func ExampleLevel_Need() {
	for _, l := range []quorum.Level{quorum.One, quorum.Quorum, quorum.All, quorum.Level(2)} {
		n, _ := l.Need(5)
		fmt.Printf("%v of 5: %d\n", l, n)
	}
	// Output:
	// ONE of 5: 1
	// QUORUM of 5: 3
	// ALL of 5: 5
	// TWO of 5: 2
}

// Concurrent writes come back as siblings with one causal context; writing
// with that context replaces them.
func ExampleCoordinator() {
	ring := quorum.NewRing()
	replicas := map[string]*quorum.MemReplica[string]{}
	for _, n := range []string{"n1", "n2", "n3"} {
		ring.Add(n)
		replicas[n] = quorum.NewMemReplica[string](n, ring)
	}
	co, err := quorum.NewCoordinator(quorum.Config[string]{
		Ring:    ring,
		Replica: func(n string) (quorum.Replica[string], error) { return replicas[n], nil },
		Repair:  quorum.RepairSync,
	})
	if err != nil {
		panic(err)
	}
	defer co.Close()
	ctx := context.Background()

	co.Put(ctx, "cart", "milk", clock.Vector{}) // two clients, neither saw the other
	co.Put(ctx, "cart", "eggs", clock.Vector{})
	v, _ := co.Get(ctx, "cart")
	fmt.Println(slices.Sorted(slices.Values(v.Values)))

	co.Put(ctx, "cart", "eggs,milk", v.Context) // the client reconciles
	v, _ = co.Get(ctx, "cart", quorum.WithLevel(quorum.All))
	fmt.Println(v.Values)
	// Output:
	// [eggs milk]
	// [eggs,milk]
}

// A replica that missed writes is found by comparing Merkle roots and
// repaired.
func ExampleCoordinator_AntiEntropy() {
	ring := quorum.NewRing()
	ring.Add("n1", "n2", "n3")
	replicas := map[string]*quorum.MemReplica[string]{}
	for _, n := range ring.Nodes() {
		replicas[n] = quorum.NewMemReplica[string](n, ring)
	}
	co, _ := quorum.NewCoordinator(quorum.Config[string]{
		Ring:    ring,
		Replica: func(n string) (quorum.Replica[string], error) { return replicas[n], nil },
	})
	defer co.Close()
	ctx := context.Background()

	// n1 alone took these writes, as if n2 and n3 had been down.
	for _, k := range []string{"a", "b", "c"} {
		replicas["n1"].Update(ctx, k, quorum.Write[string]{Value: k})
	}
	res, err := co.AntiEntropy(ctx)
	fmt.Printf("%+v %v\n", res, err)
	fmt.Println(replicas["n2"].Len(), replicas["n3"].Len())
	// Output:
	// {Partitions:3 Differing:3 Repaired:6} <nil>
	// 3 3
}

// Values that merge, such as CRDTs, need no client-side reconciliation:
// Config.Merge folds concurrent siblings into one value on read.
func ExampleConfig_merge() {
	type set = []string // a grow-only set, kept sorted
	union := func(a, b set) set {
		return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a), b...))))
	}
	ring := quorum.NewRing()
	ring.Add("n1", "n2", "n3")
	replicas := map[string]*quorum.MemReplica[set]{}
	for _, n := range ring.Nodes() {
		replicas[n] = quorum.NewMemReplica[set](n, ring)
	}
	co, _ := quorum.NewCoordinator(quorum.Config[set]{
		Ring:    ring,
		Replica: func(n string) (quorum.Replica[set], error) { return replicas[n], nil },
		Merge:   union,
	})
	defer co.Close()
	ctx := context.Background()

	co.Put(ctx, "cart", set{"milk"}, clock.Vector{})
	co.Put(ctx, "cart", set{"eggs", "milk"}, clock.Vector{})
	v, _ := co.Get(ctx, "cart", quorum.WithLevel(quorum.All))
	fmt.Println(v.Values, len(v.Object.Siblings))
	// Output: [[eggs milk]] 2
}

func ExampleObject_Merge() {
	var o quorum.Object[string]
	a := o.Update("r1", quorum.Write[string]{Value: "a"}) // two writes that
	b := o.Update("r2", quorum.Write[string]{Value: "b"}) // did not see each other
	both := a.Merge(b)
	fmt.Println(both.Values(), both.Context)

	c := both.Update("r1", quorum.Write[string]{Context: both.Context, Value: "c"})
	fmt.Println(c.Merge(a).Merge(b).Values())
	// Output:
	// [a b] {"r1":1 "r2":1}
	// [c]
}
