// Package quorum replicates data without a leader: quorum calls that wait
// for k of n replicas, consistent placement of keys on nodes, and a
// Dynamo-style [Coordinator] that reads and writes versioned values at a
// consistency level chosen per request, stays available through
// partitions, and converges replicas afterwards.
//
// # Pieces
//
//   - [Call] runs a function against every replica concurrently and returns
//     as soon as `need` succeed, cancelling the rest; it fails as soon as
//     `need` successes have become impossible, with an [*Error] naming each
//     replica's failure.
//   - [Ring] places keys on nodes by rendezvous hashing over a fixed
//     partition table: max/mean load about 1.04 with 10 nodes, about 1/n of
//     keys moved by a join or leave, and the same answer in every process.
//   - [Object] is a key's replicated state, a dotted version vector set:
//     concurrent writes are kept as siblings, and a write made with the
//     causal context of a read replaces exactly what that read returned.
//     It has a deterministic, versioned binary encoding
//     ([Object.Encode], [DecodeObject]) given a codec for the values.
//   - [Coordinator] drives reads and writes over replicas you supply through
//     the [Replica] interface (see replica.go for its contract), or the
//     ready-made [MemReplica].
//
// # Minimal use
//
//	ring := quorum.NewRing()
//	ring.Add("n1", "n2", "n3")
//	co, err := quorum.NewCoordinator(quorum.Config[string]{
//		Ring:    ring,
//		Replica: func(node string) (quorum.Replica[string], error) { return replicas[node], nil },
//	})
//	if err != nil { ... }
//	defer co.Close()
//	v, err := co.Get(ctx, "cart")                  // v.Values: siblings, v.Context: causal context
//	_, err = co.Put(ctx, "cart", "eggs,milk", v.Context, quorum.WithLevel(quorum.All))
//
// # Consistency levels
//
// Each key lives on N nodes (Config.N, default 3). A read waits for R of
// them and a write for W, set per request with [WithLevel] or by default
// with Config.Read and Config.Write:
//
//	Level         | needed, N=3 | reads                         | writes
//	--------------+-------------+-------------------------------+-------------------------------
//	One           | 1           | fastest; may be stale         | lowest latency; 1 copy acked
//	Level(k), Two | k           | explicit R                    | explicit W
//	Quorum        | N/2+1 = 2   | overlaps every Quorum write   | survives a minority failing
//	All           | N = 3       | every replica; repairs all    | fails if any owner is down*
//
// (*) unless sloppy: a stand-in for a failed owner counts, see below.
//
// With R + W > N and a strict quorum ([WithStrict] or Config.Strict), a read
// returns every write acknowledged before it began, or a successor. The
// default sloppy quorum trades that for availability: when owners fail, the
// next healthy nodes of the key's preference list stand in, count towards W
// and keep the data until hinted handoff and anti-entropy return it to the
// owners. A write that fails its level may still be stored on some
// replicas; it then survives like any other version.
//
// # Causality and conflicts
//
// The replica that coordinates a write stamps it with a dot (its name and
// a counter, a [github.com/distkit/distkit/clock.Dot]); an object's context,
// a [github.com/distkit/distkit/clock.Vector], covers every
// dot it has seen. Reads return all surviving siblings with their merged
// context; passing that context to Put or Delete replaces them. Writes that
// did not see each other stay as siblings and are returned together, or are
// folded into one value by Config.Merge when values are CRDTs or otherwise
// mergeable. A delete is a tombstone sibling that replaces what its context
// covers; tombstones are kept, not collected.
//
// # Repair
//
//   - Read repair: a read merges what the replicas it asked returned and
//     writes the result back to those that were stale, in the background
//     (default; owned by the Coordinator and bounded by Config.Timeout and
//     Config.MaxBackground), synchronously, or not at all ([RepairMode]).
//   - Hinted handoff: writes owed to failed nodes are kept in the
//     Coordinator's memory (bounded by Config.MaxHints) and delivered every
//     Config.HintInterval, or on [Coordinator.DeliverHints].
//   - Anti-entropy: [Coordinator.AntiEntropy] compares per-partition Merkle
//     roots of the replicas that implement [Syncer], descends only into
//     partitions that differ, and writes merged objects to the owners that
//     lack them; Config.AntiEntropyInterval runs it periodically.
//   - Hedged reads: with a [HedgePolicy], a read that has not heard from its
//     replicas after a per-node latency percentile (median over the key's
//     nodes, clamped to a floor and a cap) asks one more replica.
//
// # Goroutines and shutdown
//
// [Call] starts one goroutine per replica and returns without waiting for
// stragglers: their context is cancelled and they exit once fn returns. A
// Coordinator owns every goroutine it starts (replica calls, background
// replication beyond W, read repair, the hint and anti-entropy loops); all
// are bounded by Config.Timeout and [Coordinator.Close] cancels them and
// waits for them. Time is read from Config.Clock, so tests can drive
// timeouts, hedging and handoff with [github.com/distkit/distkit/clock/clocktest.Fake].
//
// # What it does not do
//
// Membership and failure detection across processes are the caller's (add
// and remove ring nodes yourself; the Coordinator only avoids nodes that
// just failed). Hints are not persisted. There is no datacenter awareness
// (LOCAL_QUORUM), no garbage collection of tombstones, and no
// linearizability: use a consensus protocol for that.
package quorum
