package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkAppend measures durable appends (real fdatasync in b.TempDir) of
// batches of 256-byte entries, beside the raw limit of the same disk: a
// 4 KiB pwrite+fdatasync loop on a preallocated zero-filled file, on a
// fallocated (not zero-filled) file, and on a growing file.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("wal/batch=%d/entry=256", batch), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, 256)
			es := make([]*raftpb.Entry, batch)
			next := uint64(1)
			b.ReportAllocs()
			b.SetBytes(int64(batch * len(data)))
			iters := 0
			for b.Loop() {
				for i := range es {
					es[i] = &raftpb.Entry{Index: ptr(next), Term: ptr(uint64(1)), Data: data}
					next++
				}
				if err := l.Append(es, hardState(1, 1, next-1)); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			s := l.Stats()
			b.ReportMetric(float64(iters*batch)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(s.Fsyncs)/b.Elapsed().Seconds(), "fsyncs/s")
		})
	}
	for _, mode := range []string{"prealloc-zeroed", "fallocate", "append"} {
		b.Run("raw-4KiB-pwrite-fdatasync/"+mode, func(b *testing.B) {
			const fileSize = 16 << 20
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			switch mode {
			case "prealloc-zeroed":
				if _, err := f.WriteAt(make([]byte, fileSize), 0); err != nil {
					b.Fatal(err)
				}
			case "fallocate":
				if err := preallocate(f, fileSize); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 4096)
			for i := range buf {
				buf[i] = byte(i)
			}
			var off int64
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			iters := 0
			for b.Loop() {
				if _, err := f.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if err := fdatasync(f); err != nil {
					b.Fatal(err)
				}
				off += int64(len(buf))
				if mode != "append" && off >= fileSize {
					off = 0
				}
				iters++
			}
			b.ReportMetric(float64(iters)/b.Elapsed().Seconds(), "fsyncs/s")
		})
	}
}

func ptr[T any](v T) *T { return &v }

// BenchmarkEntries measures reading 64 consecutive entries of 256 bytes from
// a 20,000-entry log, from the in-memory cache and from disk.
func BenchmarkEntries(b *testing.B) {
	for _, src := range []string{"cache", "disk"} {
		b.Run("from="+src+"/n=64/entry=256", func(b *testing.B) {
			opts := Options{NoSync: true, CacheBytes: 64 << 20}
			if src == "disk" {
				opts.CacheBytes = -1
			}
			l, err := Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			const total = 20000
			data := make([]byte, 256)
			for i := uint64(1); i <= total; i += 100 {
				var es []*raftpb.Entry
				for j := i; j < i+100; j++ {
					es = append(es, &raftpb.Entry{Index: ptr(j), Term: ptr(uint64(1)), Data: data})
				}
				if err := l.Append(es, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(64 * 256)
			lo := uint64(1)
			for b.Loop() {
				es, err := l.Entries(lo, lo+64, ^uint64(0))
				if err != nil || len(es) != 64 {
					b.Fatalf("Entries: %d, %v", len(es), err)
				}
				lo = (lo+7919)%(total-64) + 1
			}
		})
	}
}

// BenchmarkOpen measures replaying a log of 20,000 entries of 256 bytes in
// 4 MiB segments (index rebuild, checksum verification).
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	opts := Options{NoSync: true, SegmentBytes: 4 << 20}
	l, err := Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	const total = 20000
	data := make([]byte, 256)
	for i := uint64(1); i <= total; i += 100 {
		var es []*raftpb.Entry
		for j := i; j < i+100; j++ {
			es = append(es, &raftpb.Entry{Index: ptr(j), Term: ptr(uint64(1)), Data: data})
		}
		if err := l.Append(es, hardState(1, 1, i+99)); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.Run("entries=20000/entry=256", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := Open(dir, opts)
			if err != nil {
				b.Fatal(err)
			}
			if last, _ := l.LastIndex(); last != total {
				b.Fatalf("last index %d", last)
			}
			l.Close()
		}
		b.ReportMetric(float64(total*b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
