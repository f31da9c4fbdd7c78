package clock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
)

var (
	sinkOrder clock.Order
	sinkTS    clock.Timestamp
	sinkInt   int64
	sinkU64   uint64
)

// mapVector is the common map-based vector clock (GoVector's design), kept
// here as the baseline the sorted-slice Vector is measured against.
type mapVector map[string]uint64

func (a mapVector) compare(b mapVector) clock.Order {
	less, greater := false, false
	for id, n := range a {
		if m := b[id]; n < m {
			less = true
		} else if n > m {
			greater = true
		}
	}
	for id, m := range b {
		if _, ok := a[id]; !ok && m > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return clock.Concurrent
	case less:
		return clock.Before
	case greater:
		return clock.After
	}
	return clock.Equal
}

func (a mapVector) merge(b mapVector) {
	for id, n := range b {
		if n > a[id] {
			a[id] = n
		}
	}
}

// vectorPair returns two n-entry vectors over the same ids where b has seen
// one more event than a (the worst case: Compare must walk every entry).
func vectorPair(n int) (a, b clock.Vector, ma, mb mapVector) {
	ma, mb = mapVector{}, mapVector{}
	for i := range n {
		id := fmt.Sprintf("replica-%03d", i)
		a.Set(id, uint64(i+1))
		b.Set(id, uint64(i+1))
		ma[id], mb[id] = uint64(i+1), uint64(i+1)
	}
	b.Tick("replica-000")
	mb["replica-000"]++
	return a, b, ma, mb
}

func BenchmarkVectorCompare(b *testing.B) {
	for _, n := range []int{3, 16, 128} {
		va, vb, ma, mb := vectorPair(n)
		b.Run(fmt.Sprintf("impl=sorted/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkOrder = va.Compare(vb)
			}
		})
		b.Run(fmt.Sprintf("impl=map/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkOrder = ma.compare(mb)
			}
		})
	}
}

func BenchmarkVectorMerge(b *testing.B) {
	for _, n := range []int{3, 16, 128} {
		va, vb, ma, mb := vectorPair(n)
		b.Run(fmt.Sprintf("impl=sorted/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			dst := va.Clone()
			for b.Loop() {
				dst.Merge(vb)
			}
		})
		b.Run(fmt.Sprintf("impl=map/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ma.merge(mb)
			}
		})
	}
}

func BenchmarkVectorMarshalBinary(b *testing.B) {
	v, _, _, _ := vectorPair(16)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = v.AppendBinary(buf[:0])
	}
}

func BenchmarkLamportTick(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		var l clock.Lamport
		b.ReportAllocs()
		for b.Loop() {
			sinkU64 = l.Tick()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var l clock.Lamport
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var n uint64
			for pb.Next() {
				n = l.Tick()
			}
			sinkU64 = n
		})
	})
}

func BenchmarkHLCNow(b *testing.B) {
	b.Run("baseline=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkInt = time.Now().UnixNano()
		}
	})
	clocks := []struct {
		name string
		hlc  *clock.HLC
	}{
		{"phys=time.Now", clock.NewHLC()},
		{"phys=monotonic", clock.NewHLC(clock.WithPhysicalClock(clock.MonotonicWallClock()))},
	}
	for _, c := range clocks {
		b.Run(c.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkTS = c.hlc.Now()
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var t clock.Timestamp
				for pb.Next() {
					t = c.hlc.Now()
				}
				sinkTS = t
			})
		})
	}
}

func BenchmarkHLCUpdate(b *testing.B) {
	c := clock.NewHLC()
	remote := c.Now()
	b.ReportAllocs()
	for b.Loop() {
		remote, _ = c.Update(remote)
	}
}
