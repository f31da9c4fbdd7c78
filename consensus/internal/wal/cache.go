package wal

import "go.etcd.io/raft/v3/raftpb"

// entryOverhead approximates the memory an entry costs beyond its data.
const entryOverhead = 96

// entryCache holds the most recent entries, a contiguous run ending at the
// last index, within a byte budget. Entries are shared, never modified.
type entryCache struct {
	max   int64
	first uint64 // index of ents[0]
	ents  []*raftpb.Entry
	bytes int64
}

func entryCost(e *raftpb.Entry) int64 { return int64(len(e.Data)) + entryOverhead }

func (c *entryCache) get(i uint64) *raftpb.Entry {
	if len(c.ents) == 0 || i < c.first || i >= c.first+uint64(len(c.ents)) {
		return nil
	}
	return c.ents[i-c.first]
}

func (c *entryCache) reset() {
	c.ents, c.bytes, c.first = nil, 0, 0
}

// put adds consecutive entries that were just appended to the log,
// replacing any cached entries at or after the first of them.
func (c *entryCache) put(ents []*raftpb.Entry) {
	if c.max <= 0 || len(ents) == 0 {
		return
	}
	start := ents[0].GetIndex()
	switch {
	case len(c.ents) == 0 || start < c.first || start > c.first+uint64(len(c.ents)):
		c.reset()
		c.first = start
	case start < c.first+uint64(len(c.ents)):
		for _, e := range c.ents[start-c.first:] {
			c.bytes -= entryCost(e)
		}
		clear(c.ents[start-c.first:])
		c.ents = c.ents[:start-c.first]
	}
	for _, e := range ents {
		c.ents = append(c.ents, e)
		c.bytes += entryCost(e)
	}
	c.evict()
}

// compact drops cached entries at or below index.
func (c *entryCache) compact(index uint64) {
	if len(c.ents) == 0 || index < c.first {
		return
	}
	n := min(index-c.first+1, uint64(len(c.ents)))
	c.drop(int(n))
}

func (c *entryCache) evict() {
	n := 0
	for n < len(c.ents) && c.bytes > c.max {
		c.bytes -= entryCost(c.ents[n])
		n++
	}
	if n > 0 {
		// Only the byte count was updated so far; drop recomputes it.
		for _, e := range c.ents[:n] {
			c.bytes += entryCost(e)
		}
		c.drop(n)
	}
}

// drop removes the first n entries, reallocating when the backing array
// has become mostly garbage.
func (c *entryCache) drop(n int) {
	for _, e := range c.ents[:n] {
		c.bytes -= entryCost(e)
	}
	clear(c.ents[:n])
	c.ents = c.ents[n:]
	c.first += uint64(n)
	if len(c.ents) == 0 {
		c.reset()
		return
	}
	if cap(c.ents) > 2*len(c.ents)+64 {
		c.ents = append(make([]*raftpb.Entry, 0, len(c.ents)+len(c.ents)/4), c.ents...)
	}
}
