package quorum

import (
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// Ring defaults.
const (
	// DefaultPartitions is the number of fixed partitions keys hash into.
	// At 10 nodes and 100,000 keys it gives a max/mean load near 1.04.
	DefaultPartitions = 16384
	// DefaultTableDepth is how many ranked nodes per partition the ring
	// precomputes; Lookup with n up to this many nodes is a table read.
	DefaultTableDepth = 8
	// MaxPartitions bounds WithPartitions.
	MaxPartitions = 1 << 20
)

// Ring places keys on nodes: consistent hashing by rendezvous (highest random
// weight) over a fixed partition table.
//
// A key hashes to one of a fixed number of partitions; each partition ranks
// every node by a hash of (node, partition) and the key's preference list is
// that ranking. Adding or removing a node changes only the entries that
// involve it, so about 1/n of keys move, and the placement depends on
// nothing but node names and the number of partitions: the same on every
// process, architecture and Go version, whatever the order of Add calls. The
// hash is FNV-1a (64-bit) finished with the SplitMix64 mixer; it is part of
// the placement contract and will not change within a major version.
//
// The zero value is not usable; call [NewRing]. A Ring is safe for concurrent
// use: lookups read an immutable snapshot and never wait for Add or Remove.
type Ring struct {
	mu    sync.Mutex // serialises writers
	parts int
	depth int
	state atomic.Pointer[ringState]
}

type ringState struct {
	nodes  []string // sorted
	hashes []uint64 // hashes[i] = nodeHash(nodes[i])
	depth  int      // min(Ring.depth, len(nodes))
	table  []int32  // parts*depth node indexes, best first
}

// RingOption configures a Ring.
type RingOption func(*Ring)

// WithPartitions sets the number of partitions (default
// [DefaultPartitions]). More partitions balance load more evenly at the cost
// of memory (4·depth bytes each) and rebuild time on membership changes.
// Keep at least a few thousand partitions per node for max/mean load within
// 10%: with 100,000 keys, 16,384 partitions give 1.04 at 10 nodes, 1.10 at
// 50 and 1.23 at 100; 65,536 give 1.12 at 100 nodes. The count is part of the
// placement: every process must use the same. Values below 1 keep the
// default; values above [MaxPartitions] are capped.
func WithPartitions(p int) RingOption {
	return func(r *Ring) {
		if p >= 1 {
			r.parts = min(p, MaxPartitions)
		}
	}
}

// WithTableDepth sets how many ranked nodes are precomputed per partition
// (default [DefaultTableDepth]). Lookups for more nodes than this rank the
// partition's nodes on the fly. Values below 1 keep the default; values above
// 64 are capped.
func WithTableDepth(d int) RingOption {
	return func(r *Ring) {
		if d >= 1 {
			r.depth = min(d, 64)
		}
	}
}

// NewRing returns an empty ring.
func NewRing(opts ...RingOption) *Ring {
	r := &Ring{parts: DefaultPartitions, depth: DefaultTableDepth}
	for _, o := range opts {
		if o != nil {
			o(r)
		}
	}
	r.state.Store(&ringState{})
	return r
}

// Add adds nodes to the ring. Names already present and empty names are
// ignored. Adding one node updates the partition table in place of a
// rebuild; adding several at once rebuilds it once.
func (r *Ring) Add(nodes ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.state.Load()
	next := slices.Clone(cur.nodes)
	for _, n := range nodes {
		if n == "" {
			continue
		}
		if _, found := slices.BinarySearch(next, n); !found {
			next = append(next, n)
			slices.Sort(next)
		}
	}
	switch {
	case len(next) == len(cur.nodes):
	case len(next) == len(cur.nodes)+1 && cur.depth == r.depth:
		r.state.Store(r.addOne(cur, next))
	default:
		r.state.Store(r.build(next))
	}
}

// addOne derives the state for nodes = cur.nodes plus one node from cur,
// when the table depth does not change: every partition keeps its ranking
// and the new node is inserted where its score places it, in O(partitions
// × depth) instead of a rebuild's O(partitions × nodes).
func (r *Ring) addOne(cur *ringState, nodes []string) *ringState {
	at := 0
	for at < len(cur.nodes) && cur.nodes[at] == nodes[at] {
		at++
	}
	s := &ringState{nodes: nodes, depth: cur.depth, hashes: make([]uint64, len(nodes)), table: make([]int32, len(cur.table))}
	copy(s.hashes, cur.hashes[:at])
	s.hashes[at] = hashKey(nodes[at])
	copy(s.hashes[at+1:], cur.hashes[at:])
	h := s.hashes[at]
	for p := range r.parts {
		old := cur.table[p*s.depth : (p+1)*s.depth]
		top := s.table[p*s.depth : (p+1)*s.depth]
		for i, x := range old {
			if int(x) >= at {
				x++ // indexes at or after the new node shift up
			}
			top[i] = x
		}
		sc := mix64(h ^ partSeed(p))
		last := top[len(top)-1]
		if !better(sc, nodes[at], mix64(s.hashes[last]^partSeed(p)), nodes[last]) {
			continue
		}
		j := len(top) - 1
		for j > 0 && better(sc, nodes[at], mix64(s.hashes[top[j-1]]^partSeed(p)), nodes[top[j-1]]) {
			top[j] = top[j-1]
			j--
		}
		top[j] = int32(at)
	}
	return s
}

// Remove removes a node from the ring. Removing an unknown node does nothing.
func (r *Ring) Remove(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.state.Load()
	i, found := slices.BinarySearch(cur.nodes, node)
	if !found {
		return
	}
	next := slices.Delete(slices.Clone(cur.nodes), i, i+1)
	r.state.Store(r.build(next))
}

// Lookup returns the first n nodes of key's preference list: n distinct
// nodes (all of them, when n exceeds the ring's size), in preference order.
// The result is deterministic and freshly allocated. An empty ring or n < 1
// returns nil.
func (r *Ring) Lookup(key string, n int) []string {
	return r.AppendLookup(nil, key, n)
}

// AppendLookup is [Ring.Lookup] appending to dst; with enough capacity in dst
// and n up to the table depth it does not allocate.
func (r *Ring) AppendLookup(dst []string, key string, n int) []string {
	return r.state.Load().appendPartition(dst, r.partition(hashKey(key)), n)
}

// Partition returns the partition key hashes to, in [0, Partitions()).
// Partitions are the unit of placement, hinted handoff and anti-entropy.
func (r *Ring) Partition(key string) int { return r.partition(hashKey(key)) }

// Partitions returns the number of partitions.
func (r *Ring) Partitions() int { return r.parts }

// LookupPartition returns the first n nodes of partition p's preference
// list, like [Ring.Lookup] for every key of that partition. A p out of range
// returns nil.
func (r *Ring) LookupPartition(p, n int) []string {
	if p < 0 || p >= r.parts {
		return nil
	}
	return r.state.Load().appendPartition(nil, p, n)
}

// Nodes returns the ring's nodes in sorted order.
func (r *Ring) Nodes() []string { return slices.Clone(r.state.Load().nodes) }

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.state.Load().nodes) }

// Has reports whether node is on the ring.
func (r *Ring) Has(node string) bool {
	_, ok := slices.BinarySearch(r.state.Load().nodes, node)
	return ok
}

func (r *Ring) partition(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(r.parts))
	return int(hi)
}

func (s *ringState) appendPartition(dst []string, p, n int) []string {
	if n < 1 || len(s.nodes) == 0 {
		return dst
	}
	n = min(n, len(s.nodes))
	if n <= s.depth {
		for _, i := range s.table[p*s.depth : p*s.depth+n] {
			dst = append(dst, s.nodes[i])
		}
		return dst
	}
	idx := rank(s.hashes, s.nodes, p, n)
	for _, i := range idx {
		dst = append(dst, s.nodes[i])
	}
	return dst
}

func (r *Ring) build(nodes []string) *ringState {
	s := &ringState{nodes: nodes, hashes: make([]uint64, len(nodes))}
	for i, n := range nodes {
		s.hashes[i] = hashKey(n)
	}
	s.depth = min(r.depth, len(nodes))
	if s.depth == 0 {
		return s
	}
	s.table = make([]int32, r.parts*s.depth)
	scores := make([]uint64, len(nodes))
	for p := range r.parts {
		top := s.table[p*s.depth : (p+1)*s.depth]
		ps := partSeed(p)
		for i, h := range s.hashes {
			scores[i] = mix64(h ^ ps)
		}
		selectTop(top, scores, nodes)
	}
	return s
}

// rank returns the indexes of the n best nodes for partition p.
func rank(hashes []uint64, nodes []string, p, n int) []int32 {
	scores := make([]uint64, len(hashes))
	ps := partSeed(p)
	for i, h := range hashes {
		scores[i] = mix64(h ^ ps)
	}
	top := make([]int32, n)
	selectTop(top, scores, nodes)
	return top
}

// selectTop fills top with the indexes of the len(top) highest scores,
// highest first; equal scores fall back to the node name so the order is
// total.
func selectTop(top []int32, scores []uint64, nodes []string) {
	k := 0
	for i, sc := range scores {
		// insertion into the sorted prefix top[:k]
		if k == len(top) && !better(sc, nodes[i], scores[top[k-1]], nodes[top[k-1]]) {
			continue
		}
		j := min(k, len(top)-1)
		for j > 0 && better(sc, nodes[i], scores[top[j-1]], nodes[top[j-1]]) {
			top[j] = top[j-1]
			j--
		}
		top[j] = int32(i)
		if k < len(top) {
			k++
		}
	}
}

func better(a uint64, an string, b uint64, bn string) bool {
	if a != b {
		return a > b
	}
	return an < bn
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashKey is FNV-1a 64 finished with the SplitMix64 mixer.
func hashKey(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

func partSeed(p int) uint64 { return mix64(uint64(p)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019) }

// mix64 is the SplitMix64 finaliser.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
