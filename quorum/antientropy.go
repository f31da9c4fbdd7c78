package quorum

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// AntiEntropyResult summarises one anti-entropy pass.
type AntiEntropyResult struct {
	Partitions int // partitions held by at least one replica
	Differing  int // partitions whose Merkle roots differed between replicas
	Repaired   int // objects written to replicas that lacked them
}

// AntiEntropy runs one full anti-entropy pass: it compares the Merkle trees
// ([Syncer]) of the replicas of every partition and, where they differ,
// merges the differing keys and writes the result to each of the
// partition's N nodes that lacks it. Data left on stand-in nodes by the
// sloppy quorum flows back to the owners the same way. Replicas that do not
// implement Syncer, or fail, are skipped; their errors are joined into the
// returned error while the rest of the pass goes on.
//
// Each replica call is bounded by Config.Timeout. Comparison costs one
// Digests call per node plus, for each differing
// partition only, one Hashes call per replica and one Get/Put per differing
// key. It runs in the background every Config.AntiEntropyInterval if set.
func (c *Coordinator[V]) AntiEntropy(ctx context.Context) (AntiEntropyResult, error) {
	var res AntiEntropyResult
	var errs []error
	type peer struct {
		r Replica[V]
		s Syncer
	}
	peers := map[string]peer{}
	roots := map[string]map[int]uint64{}
	parts := map[int]bool{}
	for _, node := range c.cfg.Ring.Nodes() {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		r, err := c.replica(node)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node, err))
			continue
		}
		s, ok := r.(Syncer)
		if !ok {
			continue
		}
		cctx, cancel := c.callContext(ctx)
		d, err := s.Digests(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node, err))
			continue
		}
		peers[node] = peer{r, s}
		roots[node] = d
		for p := range d {
			parts[p] = true
		}
	}
	res.Partitions = len(parts)
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		owners := c.cfg.Ring.LookupPartition(p, c.cfg.N)
		// Nodes to compare: the owners we reached and any other holder.
		var nodes []string
		isOwner := map[string]bool{}
		for _, o := range owners {
			isOwner[o] = true
			if _, ok := peers[o]; ok {
				nodes = append(nodes, o)
			}
		}
		for n, d := range roots {
			if _, ok := d[p]; ok && !isOwner[n] {
				nodes = append(nodes, n)
			}
		}
		if len(nodes) < 2 {
			continue
		}
		first := roots[nodes[0]][p]
		same := true
		for _, n := range nodes[1:] {
			if roots[n][p] != first {
				same = false
				break
			}
		}
		if same {
			continue
		}
		res.Differing++
		c.stats.aeDiff.Add(1)
		n, err := c.syncPartition(ctx, p, nodes, isOwner, func(n string) (Replica[V], Syncer) {
			return peers[n].r, peers[n].s
		})
		res.Repaired += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.stats.aeRounds.Add(1)
	return res, errors.Join(errs...)
}

// syncPartition descends into partition p: it compares key digests across
// nodes and writes merged objects to the owners that differ.
func (c *Coordinator[V]) syncPartition(ctx context.Context, p int, nodes []string, isOwner map[string]bool,
	peer func(string) (Replica[V], Syncer)) (int, error) {
	var errs []error
	hashes := map[string]map[string]uint64{}
	keys := map[string]bool{}
	for _, n := range nodes {
		_, s := peer(n)
		cctx, cancel := c.callContext(ctx)
		h, err := s.Hashes(cctx, p)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: partition %d: %w", n, p, err))
			continue
		}
		hashes[n] = h
		for k := range h {
			keys[k] = true
		}
	}
	repaired := 0
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		var first uint64
		same, seen := true, false
		for n, h := range hashes {
			d, ok := h[key]
			if !ok && !isOwner[n] {
				continue // a stand-in without this key has nothing to give
			}
			if !seen {
				first, seen = d, true
			} else if d != first {
				same = false
			}
		}
		if same {
			continue
		}
		merged := Object[V]{}
		for n, h := range hashes {
			if _, ok := h[key]; !ok {
				continue
			}
			r, _ := peer(n)
			cctx, cancel := c.callContext(ctx)
			obj, err := r.Get(cctx, key)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: %w", n, key, err))
				continue
			}
			merged = merged.Merge(obj)
		}
		want := merged.Digest()
		for n, h := range hashes {
			if !isOwner[n] || h[key] == want {
				continue
			}
			r, _ := peer(n)
			cctx, cancel := c.callContext(ctx)
			err := r.Put(cctx, key, merged)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q: %w", n, key, err))
				continue
			}
			repaired++
			c.stats.aeRepairs.Add(1)
		}
	}
	return repaired, errors.Join(errs...)
}
