// Command clocks shows why distributed systems need logical time. Three
// nodes whose physical clocks disagree pass a message around; ordering the
// events by physical time gets causality wrong, hybrid logical clock
// timestamps get it right. Then two nodes write concurrently and version
// vectors detect the conflict that timestamps alone would hide.
//
//	go run ./examples/clocks
package main

import (
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/distkit/distkit/clock"
)

type node struct {
	name   string
	skew   time.Duration // how far this node's physical clock is off
	hlc    *clock.HLC
	vector clock.Vector
}

type event struct {
	what     string
	physical time.Time
	hlc      clock.Timestamp
}

func main() {
	start := time.Now()
	nodes := []*node{
		{name: "n1", skew: 0},
		{name: "n2", skew: -40 * time.Millisecond}, // runs behind
		{name: "n3", skew: +25 * time.Millisecond}, // runs ahead
	}
	for _, n := range nodes {
		n.hlc = clock.NewHLC(clock.WithPhysicalClock(func() int64 {
			return time.Now().Add(n.skew).UnixNano()
		}), clock.WithMaxOffset(time.Second))
	}
	physical := func(n *node) time.Time { return time.Now().Add(n.skew) }

	// A message travels n3 -> n1 -> n2; each hop happens after the last.
	var log []event
	send := func(from *node) (clock.Timestamp, event) {
		ts := from.hlc.Now()
		return ts, event{what: from.name + " sends", physical: physical(from), hlc: ts}
	}
	receive := func(to *node, msg clock.Timestamp) (clock.Timestamp, event) {
		ts, err := to.hlc.Update(msg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "clocks:", err)
			os.Exit(1)
		}
		return ts, event{what: to.name + " receives", physical: physical(to), hlc: ts}
	}
	m, e := send(nodes[2])
	log = append(log, e)
	_, e = receive(nodes[0], m)
	log = append(log, e)
	m, e = send(nodes[0])
	log = append(log, e)
	_, e = receive(nodes[1], m)
	log = append(log, e)

	fmt.Println("A message relayed n3 -> n1 -> n2, in the order it really happened:")
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  event\tphysical clock (ms)\tHLC timestamp")
	for _, ev := range log {
		fmt.Fprintf(w, "  %s\t%+.3f\t%.3f ms, logical %d\n", ev.what,
			ms(ev.physical.Sub(start)), ms(time.Unix(0, ev.hlc.Wall).Sub(start)), ev.hlc.Logical)
	}
	w.Flush()
	byPhysical := slices.IsSortedFunc(log, func(a, b event) int { return a.physical.Compare(b.physical) })
	byHLC := slices.IsSortedFunc(log, func(a, b event) int { return a.hlc.Compare(b.hlc) })
	fmt.Printf("Sorting by physical clock keeps causal order: %v\n", byPhysical)
	fmt.Printf("Sorting by HLC timestamp keeps causal order:  %v\n\n", byHLC)

	// Two nodes update the same key without hearing from each other.
	n1, n2 := nodes[0], nodes[1]
	n1.vector.Tick(n1.name) // both start from a shared version
	n2.vector.Merge(n1.vector)
	n1.vector.Tick(n1.name) // n1 writes "blue"
	n2.vector.Tick(n2.name) // n2 writes "green"
	fmt.Printf("n1 wrote with %v, n2 wrote with %v: %v\n", n1.vector, n2.vector, n1.vector.Compare(n2.vector))
	fmt.Println("Concurrent writes are a conflict to keep (as siblings) or merge, not to drop.")
	n1.vector.Merge(n2.vector)
	n1.vector.Tick(n1.name) // n1 resolves the conflict
	fmt.Printf("After n1 merges and resolves, %v is %v %v.\n", n1.vector, n1.vector.Compare(n2.vector), n2.vector)
	if !byHLC {
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
