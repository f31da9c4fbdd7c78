package wal

import (
	"testing"

	"pgregory.net/rapid"
)

// TestPropertyAgainstModel runs random Append/SetSnapshot/Compact/reopen
// sequences against the log and the in-memory model and compares them after
// every step, with small segments (rollover, deletion) and a small cache
// (disk reads).
func TestPropertyAgainstModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		opts := Options{
			NoSync:       true,
			SegmentBytes: int64(rapid.SampledFrom([]int{MinSegmentBytes, 4 << 10, 64 << 10}).Draw(rt, "segment")),
			CacheBytes:   int64(rapid.SampledFrom([]int{-1, 1 << 10, 1 << 20}).Draw(rt, "cache")),
		}
		l, err := Open(dir, opts)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { l.Close() }()
		m := newModel()
		choose := func(label string, lo, hi int) int { return rapid.IntRange(lo, hi).Draw(rt, label) }
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			o := nextOp(m, choose, true)
			if o.kind == opReopen {
				if err := l.Close(); err != nil {
					rt.Fatal(err)
				}
				if l, err = Open(dir, opts); err != nil {
					rt.Fatalf("reopen: %v", err)
				}
				m = m.reopened()
			} else if err := o.apply(l, m); err != nil {
				rt.Fatalf("op %+v: %v", o, err)
			}
			if d := m.diff(l); d != "" {
				rt.Fatalf("after op %v: %s", o.kind, d)
			}
		}
		if s := l.Stats(); s.Segments != len(segmentFiles(t, dir)) {
			rt.Fatalf("Stats().Segments = %d, %d files", s.Segments, len(segmentFiles(t, dir)))
		}
		l.Close()
		if l, err = Open(dir, opts); err != nil {
			rt.Fatalf("final reopen: %v", err)
		}
		if d := m.reopened().diff(l); d != "" {
			rt.Fatalf("after final reopen: %s", d)
		}
	})
}
