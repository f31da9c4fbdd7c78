package clock_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
)

// Two processes exchange a message; the receiver's clock moves past the
// sender's, so the receive event is ordered after the send.
func ExampleLamport() {
	var alice, bob clock.Lamport
	alice.Tick()         // 1: a local event
	sent := alice.Tick() // 2: stamp the message
	bob.Tick()           // 1: something unrelated on bob
	got := bob.Witness(sent)
	fmt.Println("sent at", sent, "received at", got)
	// Output: sent at 2 received at 3
}

// Version vectors detect concurrent updates that a single counter would
// silently order.
func ExampleVector() {
	var a, b clock.Vector
	a.Tick("node-a")
	b.Merge(a) // b has seen a's write
	fmt.Println("after sync:", a.Compare(b))

	a.Tick("node-a") // both write without talking to each other
	b.Tick("node-b")
	fmt.Println("after independent writes:", a.Compare(b))

	a.Merge(b)
	fmt.Println("merged:", a, "is after b:", a.Compare(b) == clock.After)
	// Output:
	// after sync: Equal
	// after independent writes: Concurrent
	// merged: {"node-a":2 "node-b":1} is after b: true
}

func ExampleVector_MarshalBinary() {
	var v clock.Vector
	v.Tick("b")
	v.Tick("a")
	data, _ := v.MarshalBinary()
	var w clock.Vector
	if err := w.UnmarshalBinary(data); err != nil {
		panic(err)
	}
	fmt.Printf("%x %v\n", data, w)
	// Output: 0102016101016201 {"a":1 "b":1}
}

// An HLC timestamp for a received message is greater than the sender's, even
// when the sender's physical clock runs ahead of the receiver's.
func ExampleHLC() {
	fast := clock.NewHLC(clock.WithPhysicalClock(func() int64 { return 2_000 }))
	slow := clock.NewHLC(
		clock.WithPhysicalClock(func() int64 { return 1_000 }),
		clock.WithMaxOffset(time.Microsecond),
	)
	msg := fast.Now()
	got, err := slow.Update(msg)
	fmt.Println(msg.Wall, msg.Logical, "->", got.Wall, got.Logical, err)

	// A peer whose clock is further ahead than the maximum offset is refused.
	_, err = slow.Update(clock.Timestamp{Wall: 5_000})
	fmt.Println(err != nil)
	// Output:
	// 2000 0 -> 2000 1 <nil>
	// true
}

// Encoded timestamps sort in time order, so they work as ordered keys.
func ExampleTimestamp_MarshalBinary() {
	early, _ := clock.Timestamp{Wall: -5, Logical: 9}.MarshalBinary()
	late, _ := clock.Timestamp{Wall: 3}.MarshalBinary()
	fmt.Printf("%x\n%x\n", early, late)
	// Output:
	// 7ffffffffffffffb00000009
	// 800000000000000300000000
}

// A causal context accepts dots out of order and compacts them once the gap
// fills.
func ExampleCausalContext() {
	var cc clock.CausalContext
	cc.Add(clock.Dot{Replica: "a", Counter: 2}) // arrived before a:1
	fmt.Println(cc)
	cc.Add(clock.Dot{Replica: "a", Counter: 1})
	fmt.Println(cc)
	fmt.Println("next:", cc.Next("a"))
	// Output:
	// {}+["a":2]
	// {"a":2}
	// next: "a":3
}

// Code that waits takes a clock.Clock; tests drive it with a fake.
func ExampleSleep() {
	fake := clocktest.NewFake(time.Time{})
	done := make(chan error)
	go func() { done <- clock.Sleep(context.Background(), fake, time.Minute) }()
	_ = fake.BlockUntil(context.Background(), 1) // the sleeper is waiting
	fake.Advance(time.Minute)
	fmt.Println(<-done)
	// Output: <nil>
}
