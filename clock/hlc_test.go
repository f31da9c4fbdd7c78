package clock_test

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"pgregory.net/rapid"
)

// manualPhys is a settable physical clock for an HLC.
type manualPhys struct {
	mu sync.Mutex
	ns int64
}

func (p *manualPhys) now() int64   { p.mu.Lock(); defer p.mu.Unlock(); return p.ns }
func (p *manualPhys) set(ns int64) { p.mu.Lock(); p.ns = ns; p.mu.Unlock() }

func ts(wall int64, logical uint32) clock.Timestamp {
	return clock.Timestamp{Wall: wall, Logical: logical}
}

func TestHLCNow(t *testing.T) {
	p := &manualPhys{ns: 100}
	c := clock.NewHLC(clock.WithPhysicalClock(p.now))
	steps := []struct {
		phys int64
		want clock.Timestamp
	}{
		{100, ts(100, 0)}, // physical ahead of zero state
		{100, ts(100, 1)}, // physical stalls: logical counts
		{90, ts(100, 2)},  // physical goes back: still monotonic
		{101, ts(101, 0)}, // physical passes wall: logical resets
	}
	for _, s := range steps {
		p.set(s.phys)
		if got := c.Now(); got != s.want {
			t.Fatalf("phys %d: Now() = %v; want %v", s.phys, got, s.want)
		}
	}
	if got := c.Last(); got != ts(101, 0) {
		t.Fatalf("Last() = %v; want %v", got, ts(101, 0))
	}
}

func TestHLCUpdateRules(t *testing.T) {
	tests := []struct {
		name         string
		local        clock.Timestamp
		phys         int64
		remote, want clock.Timestamp
	}{
		{"physical newest", ts(10, 3), 20, ts(15, 9), ts(20, 0)},
		{"local newest", ts(30, 3), 20, ts(15, 9), ts(30, 4)},
		{"remote newest", ts(10, 3), 20, ts(25, 9), ts(25, 10)},
		{"local and remote tie", ts(30, 3), 20, ts(30, 9), ts(30, 10)},
		{"tie with larger local logical", ts(30, 12), 20, ts(30, 9), ts(30, 13)},
		{"all three tie", ts(30, 3), 30, ts(30, 1), ts(30, 4)},
		{"remote logical overflow carries", ts(10, 0), 5, ts(25, math.MaxUint32), ts(26, 0)},
		{"local logical overflow carries", ts(30, math.MaxUint32), 5, ts(2, 0), ts(31, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &manualPhys{ns: tt.phys}
			c := clock.NewHLC(clock.WithPhysicalClock(p.now), clock.WithFloor(tt.local))
			got, err := c.Update(tt.remote)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Update(%v) = %v; want %v", tt.remote, got, tt.want)
			}
		})
	}
}

func TestHLCMaxOffset(t *testing.T) {
	p := &manualPhys{ns: int64(time.Hour)}
	c := clock.NewHLC(clock.WithPhysicalClock(p.now), clock.WithMaxOffset(time.Second))
	before := c.Now()
	far := ts(int64(time.Hour+time.Second)+1, 0)
	if _, err := c.Update(far); !errors.Is(err, clock.ErrClockOffset) {
		t.Fatalf("Update %v ahead: err = %v; want ErrClockOffset", far.Wall-p.now(), err)
	}
	if got := c.Last(); got != before {
		t.Fatalf("rejected Update changed the clock: Last() = %v; want %v", got, before)
	}
	if got := c.Now(); got != before.Next() {
		t.Fatalf("Now() after rejected Update = %v; want %v", got, before.Next())
	}
	edge := ts(int64(time.Hour+time.Second), 7)
	got, err := c.Update(edge)
	if err != nil {
		t.Fatalf("Update exactly max offset ahead: %v", err)
	}
	if got != ts(edge.Wall, 8) {
		t.Fatalf("Update(%v) = %v", edge, got)
	}
	// Remote timestamps far behind are always fine.
	if _, err := c.Update(ts(0, 0)); err != nil {
		t.Fatalf("Update from the past: %v", err)
	}
}

func TestHLCDefaultPhysicalClockTracksTime(t *testing.T) {
	before := time.Now().UnixNano()
	got := clock.NewHLC().Now()
	after := time.Now().UnixNano()
	if got.Wall < before || got.Wall > after {
		t.Fatalf("Now().Wall = %d; want within [%d, %d]", got.Wall, before, after)
	}
	mono := clock.MonotonicWallClock()
	if d := mono() - time.Now().UnixNano(); d > int64(time.Second) || d < -int64(time.Second) {
		t.Fatalf("MonotonicWallClock is %v away from time.Now", time.Duration(d))
	}
}

func TestHLCConcurrentNowStrictlyIncreasing(t *testing.T) {
	c := clock.NewHLC()
	const goroutines, n = 4, 2000
	results := make([][]clock.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range n {
				if g%2 == 0 {
					results[g] = append(results[g], c.Now())
				} else {
					u, err := c.Update(ts(time.Now().UnixNano(), 0))
					if err != nil {
						t.Error(err)
						return
					}
					results[g] = append(results[g], u)
				}
			}
		})
	}
	wg.Wait()
	var all []clock.Timestamp
	for _, r := range results {
		for i := 1; i < len(r); i++ {
			if !r[i-1].Less(r[i]) {
				t.Fatalf("not increasing within a goroutine: %v then %v", r[i-1], r[i])
			}
		}
		all = append(all, r...)
	}
	slices.SortFunc(all, clock.Timestamp.Compare)
	for i := 1; i < len(all); i++ {
		if all[i-1] == all[i] {
			t.Fatalf("timestamp %v returned twice", all[i])
		}
	}
}

// TestHLCPropertiesUnderRandomClocksAndMessages simulates nodes with skewed,
// jumping physical clocks exchanging messages, and checks monotonicity,
// causality (send happens before receive), the Update contract and the
// distance bound to physical time.
func TestHLCPropertiesUnderRandomClocksAndMessages(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const maxOffset = 1000
		nodes := rapid.IntRange(2, 4).Draw(t, "nodes")
		phys := make([]*manualPhys, nodes)
		clocks := make([]*clock.HLC, nodes)
		last := make([]clock.Timestamp, nodes)
		for i := range nodes {
			phys[i] = &manualPhys{ns: rapid.Int64Range(0, 500).Draw(t, "start")}
			clocks[i] = clock.NewHLC(clock.WithPhysicalClock(phys[i].now), clock.WithMaxOffset(maxOffset))
		}
		type msg struct {
			to int
			ts clock.Timestamp
		}
		var inflight []msg
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			i := rapid.IntRange(0, nodes-1).Draw(t, "node")
			switch rapid.IntRange(0, 3).Draw(t, "action") {
			case 0: // physical clock moves, possibly backwards or stalling
				phys[i].set(phys[i].now() + rapid.Int64Range(-300, 600).Draw(t, "dt"))
			case 1: // local or send event
				got := clocks[i].Now()
				if !last[i].Less(got) {
					t.Fatalf("node %d: Now() = %v after %v", i, got, last[i])
				}
				last[i] = got
				inflight = append(inflight, msg{to: rapid.IntRange(0, nodes-1).Draw(t, "to"), ts: got})
			case 2: // deliver a random in-flight message
				if len(inflight) == 0 {
					continue
				}
				k := rapid.IntRange(0, len(inflight)-1).Draw(t, "msg")
				m := inflight[k]
				inflight = slices.Delete(inflight, k, k+1)
				before := clocks[m.to].Last()
				got, err := clocks[m.to].Update(m.ts)
				if err != nil {
					if !errors.Is(err, clock.ErrClockOffset) || m.ts.Wall-phys[m.to].now() <= maxOffset {
						t.Fatalf("unexpected Update error: %v", err)
					}
					if clocks[m.to].Last() != before {
						t.Fatalf("rejected Update changed state")
					}
					continue
				}
				if !m.ts.Less(got) || !last[m.to].Less(got) {
					t.Fatalf("Update(%v) = %v, not after remote and previous %v", m.ts, got, last[m.to])
				}
				last[m.to] = got
			case 3: // the wall part never falls behind physical time
				got := clocks[i].Now()
				if got.Wall < phys[i].now() {
					t.Fatalf("Now().Wall %d < physical %d", got.Wall, phys[i].now())
				}
				last[i] = got
			}
		}
	})
}

func TestTimestampEncodingOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		gen := rapid.Custom(func(t *rapid.T) clock.Timestamp {
			return ts(rapid.Int64().Draw(t, "wall"), rapid.Uint32().Draw(t, "logical"))
		})
		list := rapid.SliceOfN(gen, 2, 20).Draw(t, "ts")
		for _, x := range list {
			b, _ := x.MarshalBinary()
			if len(b) != clock.TimestampSize {
				t.Fatalf("encoding of %v has %d bytes", x, len(b))
			}
			var y clock.Timestamp
			if err := y.UnmarshalBinary(b); err != nil || y != x {
				t.Fatalf("round trip of %v: %v, %v", x, y, err)
			}
		}
		for i := 1; i < len(list); i++ {
			a, b := list[i-1], list[i]
			ea, _ := a.MarshalBinary()
			eb, _ := b.MarshalBinary()
			if got, want := bytes.Compare(ea, eb), a.Compare(b); got != want {
				t.Fatalf("byte order %d != time order %d for %v, %v", got, want, a, b)
			}
		}
	})
}

func TestTimestampBasics(t *testing.T) {
	if !(clock.Timestamp{}).IsZero() || ts(1, 0).IsZero() {
		t.Fatal("IsZero")
	}
	if got := ts(5, math.MaxUint32).Next(); got != ts(6, 0) {
		t.Fatalf("Next() carry = %v", got)
	}
	if got := ts(0, 3).String(); got != "1970-01-01T00:00:00Z,3" {
		t.Fatalf("String() = %q", got)
	}
	var x clock.Timestamp
	for _, n := range []int{0, 11, 13} {
		if err := x.UnmarshalBinary(make([]byte, n)); !errors.Is(err, clock.ErrMalformed) {
			t.Fatalf("UnmarshalBinary of %d bytes: %v", n, err)
		}
	}
}
