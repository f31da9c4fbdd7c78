package quorum

import (
	"context"
	"sync"
)

// MemReplica is an in-memory [Replica] and [Syncer]: a map of objects with
// per-partition Merkle roots kept up to date on every change. It is safe for
// concurrent use. It suits tests, caches and examples, and is the reference
// for implementations over durable storage.
type MemReplica[V any] struct {
	name string
	ring *Ring

	mu    sync.Mutex
	objs  map[string]Object[V]
	parts map[int]*memPart
}

type memPart struct {
	root uint64
	keys map[string]uint64 // key -> object digest
}

// NewMemReplica returns an empty replica for node name, partitioning keys as
// ring does. The name must be the node's name on the ring: it is the replica
// part of the dots this replica hands out in Update.
func NewMemReplica[V any](name string, ring *Ring) *MemReplica[V] {
	return &MemReplica[V]{name: name, ring: ring, objs: map[string]Object[V]{}, parts: map[int]*memPart{}}
}

// Name returns the node name the replica was made with.
func (m *MemReplica[V]) Name() string { return m.name }

// Get implements [Replica].
func (m *MemReplica[V]) Get(ctx context.Context, key string) (Object[V], error) {
	if err := ctx.Err(); err != nil {
		return Object[V]{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objs[key].Clone(), nil
}

// Put implements [Replica].
func (m *MemReplica[V]) Put(ctx context.Context, key string, obj Object[V]) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.storeLocked(key, m.objs[key].Merge(obj))
	return nil
}

// Update implements [Replica].
func (m *MemReplica[V]) Update(ctx context.Context, key string, w Write[V]) (Object[V], error) {
	if err := ctx.Err(); err != nil {
		return Object[V]{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	obj := m.objs[key].Update(m.name, w)
	m.storeLocked(key, obj)
	return obj.Clone(), nil
}

func (m *MemReplica[V]) storeLocked(key string, obj Object[V]) {
	if obj.IsZero() {
		return
	}
	p := m.ring.Partition(key)
	part := m.parts[p]
	if part == nil {
		part = &memPart{keys: map[string]uint64{}}
		m.parts[p] = part
	}
	if old, ok := part.keys[key]; ok {
		part.root = CombineDigest(part.root, -KeyDigest(key, old))
	}
	d := obj.Digest()
	part.keys[key] = d
	part.root = CombineDigest(part.root, KeyDigest(key, d))
	m.objs[key] = obj
}

// Digests implements [Syncer].
func (m *MemReplica[V]) Digests(ctx context.Context) (map[int]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int]uint64, len(m.parts))
	for p, part := range m.parts {
		out[p] = part.root
	}
	return out, nil
}

// Hashes implements [Syncer].
func (m *MemReplica[V]) Hashes(ctx context.Context, p int) (map[string]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	part := m.parts[p]
	if part == nil {
		return map[string]uint64{}, nil
	}
	out := make(map[string]uint64, len(part.keys))
	for k, d := range part.keys {
		out[k] = d
	}
	return out, nil
}

// Len returns the number of keys stored, tombstones included.
func (m *MemReplica[V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objs)
}

// Keys returns the stored keys, tombstones included, in no particular order.
func (m *MemReplica[V]) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.objs))
	for k := range m.objs {
		out = append(out, k)
	}
	return out
}
