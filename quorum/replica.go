package quorum

import "context"

// Replica is one node's store of objects, as the [Coordinator] reaches it:
// in process, or a client for a remote node. Users implement it; [MemReplica]
// is a complete in-memory implementation to copy or wrap.
//
// # Contract
//
// All methods may be called concurrently, for the same key too. Each must
// honour ctx: return promptly (with ctx.Err() or a wrapping error) once ctx
// is done. An error means the call may or may not have taken effect; the
// Coordinator treats the replica as failed for that request and relies on
// merges being idempotent to retry safely.
//
//   - Get returns the object stored under key; a key never written is the
//     zero Object and a nil error (there is no not-found error).
//   - Put merges obj into the stored object: stored = stored.Merge(obj). It is
//     how writes, read repair, hinted handoff and anti-entropy spread
//     versions, so it must be atomic per key with respect to Put and Update.
//   - Update coordinates a new write: stored = stored.Update(name, w), where
//     name is this replica's node name as the ring knows it, and returns the
//     new stored object. Updates of one key must be serialised (a per-key
//     lock or a single writer): the object's context is the source of the
//     dots the replica hands out, so a lost or reordered update could reuse a
//     dot. A replica that loses its stored data must come back under a new
//     name, or its reused dots may hide writes.
//
// A Replica stores what it is given: the Coordinator sends objects merged
// from several replicas, and the replica never needs to understand V.
// Deleted keys are kept as tombstone siblings (see [Object.Deleted]) so that
// a delete wins over the versions it saw on every replica; they are not
// garbage-collected.
//
// Package [github.com/distkit/distkit/quorum/quorumtest] checks an
// implementation against this contract.
type Replica[V any] interface {
	Get(ctx context.Context, key string) (Object[V], error)
	Put(ctx context.Context, key string, obj Object[V]) error
	Update(ctx context.Context, key string, w Write[V]) (Object[V], error)
}

// Syncer is the optional capability of a [Replica] that anti-entropy needs:
// Merkle digests of what the replica holds, partition by partition of the
// [Ring]. Replicas that do not implement it are skipped by
// [Coordinator.AntiEntropy].
//
// The tree has three levels. The root of partition p is the
// order-independent combination ([CombineDigest]) of one leaf per key held
// in p, the leaf being KeyDigest(key, obj.Digest()). Digests returns the
// partition roots; Hashes returns the leaves of one partition. Two replicas
// whose roots agree hold equal objects for every key of the partition, and
// only partitions whose roots differ are descended into. Both methods follow
// the concurrency and ctx rules of [Replica].
type Syncer interface {
	// Digests returns the root of every partition in which the replica holds
	// at least one key. Partitions absent from the map are empty.
	Digests(ctx context.Context) (map[int]uint64, error)
	// Hashes returns, for every key the replica holds in partition p, the
	// digest of its object ([Object.Digest]).
	Hashes(ctx context.Context, p int) (map[string]uint64, error)
}

// KeyDigest is the Merkle leaf of one key: a hash of the key and of its
// object's digest.
func KeyDigest(key string, objDigest uint64) uint64 { return mix64(hashKey(key) ^ mix64(objDigest)) }

// CombineDigest folds a leaf into a partition root. Combination is
// commutative and invertible (CombineDigest(CombineDigest(r, l), -l) == r, in
// two's complement), so a replica can keep roots up to date as objects
// change, without rescanning.
func CombineDigest(root, leaf uint64) uint64 { return root + leaf }
