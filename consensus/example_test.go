package consensus_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// Three members on an in-memory network replicate a key-value store; a
// write through any member is readable linearizably on every member.
func ExampleStart() {
	net := consensustest.NewNetwork(1)
	boot := []consensus.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	var nodes []*consensus.Node
	var kvs []*consensustest.KV
	for id := uint64(1); id <= 3; id++ {
		kv := consensustest.NewKV()
		n, err := consensus.Start(consensus.Config{
			ID:           id,
			Memory:       consensus.NewMemoryStore(),
			Bootstrap:    boot,
			Transport:    net.Transport(id),
			TickInterval: 10 * time.Millisecond,
		}, kv)
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
		kvs = append(kvs, kv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Propose through member 3, whoever leads.
	res, err := nodes[2].Propose(ctx, consensustest.PutCommand("greeting", "hello"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("applied: %s\n", res)

	// A linearizable read on member 1.
	if err := nodes[0].ReadBarrier(ctx); err != nil {
		panic(err)
	}
	v, _ := kvs[0].Get("greeting")
	fmt.Println("member 1 reads:", v)
	// Output:
	// applied: hello
	// member 1 reads: hello
}

// A retry with the same request id applies once and returns the first
// result, even through another member.
func ExampleWithRequestID() {
	net := consensustest.NewNetwork(2)
	boot := []consensus.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	var nodes []*consensus.Node
	for id := uint64(1); id <= 3; id++ {
		n, err := consensus.Start(consensus.Config{
			ID: id, Memory: consensus.NewMemoryStore(), Bootstrap: boot,
			Transport: net.Transport(id), TickInterval: 10 * time.Millisecond,
		}, consensustest.NewKV())
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cmd := consensustest.AppendCommand("log", "+1")
	first, _ := nodes[0].Propose(ctx, cmd, consensus.WithRequestID("order-17"))
	retry, _ := nodes[1].Propose(ctx, cmd, consensus.WithRequestID("order-17"))
	fmt.Printf("first=%s retry=%s\n", first, retry)
	// Output:
	// first=+1 retry=+1
}

// Submit returns the write's log index; WaitApplied on another member then
// gives read-your-writes without a round trip to the leader.
func ExampleNode_WaitApplied() {
	net := consensustest.NewNetwork(3)
	boot := []consensus.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	var nodes []*consensus.Node
	var kvs []*consensustest.KV
	for id := uint64(1); id <= 3; id++ {
		kv := consensustest.NewKV()
		n, err := consensus.Start(consensus.Config{
			ID: id, Memory: consensus.NewMemoryStore(), Bootstrap: boot,
			Transport: net.Transport(id), TickInterval: 10 * time.Millisecond,
		}, kv)
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes, kvs = append(nodes, n), append(kvs, kv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	w, err := nodes[0].Submit(ctx, consensustest.PutCommand("x", "42"))
	if err != nil {
		panic(err)
	}
	if err := nodes[2].WaitApplied(ctx, w.Index); err != nil {
		panic(err)
	}
	v, _ := kvs[2].Get("x")
	fmt.Println(v)
	// Output: 42
}
