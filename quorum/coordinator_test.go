package quorum_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

var bg = context.Background()

func TestPutGetSiblingsAndSupersede(t *testing.T) {
	c := newCluster(5)
	co := c.coordinator(t, nil)

	if v, err := co.Get(bg, "k"); err != nil || v.Found() {
		t.Fatalf("empty Get = %+v, %v", v, err)
	}
	// Two blind writes are concurrent: both survive as siblings.
	if _, err := co.Put(bg, "k", "a", clock.Vector{}); err != nil {
		t.Fatal(err)
	}
	if _, err := co.Put(bg, "k", "b", clock.Vector{}); err != nil {
		t.Fatal(err)
	}
	v, err := co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(v.Values))
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("siblings = %v, want [a b]", got)
	}
	// A write with the read's context replaces both.
	ctx2, err := co.Put(bg, "k", "c", v.Context)
	if err != nil {
		t.Fatal(err)
	}
	v, err = co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if err != nil || !slices.Equal(v.Values, []string{"c"}) {
		t.Fatalf("after supersede: %v, %v", v.Values, err)
	}
	// The context Put returned supersedes exactly that write.
	if _, err := co.Put(bg, "k", "d", ctx2); err != nil {
		t.Fatal(err)
	}
	v, _ = co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if !slices.Equal(v.Values, []string{"d"}) {
		t.Fatalf("after read-your-write supersede: %v", v.Values)
	}
	// Delete with the context: gone, but a context is still returned.
	if _, err := co.Delete(bg, "k", v.Context); err != nil {
		t.Fatal(err)
	}
	v, err = co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if err != nil || v.Found() || !v.Object.Deleted() || v.Context.Len() == 0 {
		t.Fatalf("after delete: %+v, %v", v, err)
	}
	// A write concurrent with the delete survives it.
	if _, err := co.Put(bg, "k", "e", clock.Vector{}); err != nil {
		t.Fatal(err)
	}
	v, _ = co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if !slices.Equal(v.Values, []string{"e"}) || len(v.Object.Siblings) != 2 {
		t.Fatalf("write concurrent with delete: values %v, siblings %+v", v.Values, v.Object.Siblings)
	}
}

func TestMergeFuncResolvesSiblings(t *testing.T) {
	c := newCluster(3)
	co := c.coordinator(t, func(cfg *quorum.Config[string]) {
		cfg.Merge = func(a, b string) string { return max(a, b) } // a max-register
	})
	for _, s := range []string{"x", "z", "y"} {
		if _, err := co.Put(bg, "k", s, clock.Vector{}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := co.Get(bg, "k", quorum.WithLevel(quorum.All))
	if err != nil || !slices.Equal(v.Values, []string{"z"}) || len(v.Object.Siblings) != 3 {
		t.Fatalf("merged read = %v (siblings %d), %v", v.Values, len(v.Object.Siblings), err)
	}
}

func TestStrictQuorumFailsWithPerReplicaErrors(t *testing.T) {
	c := newCluster(5)
	co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.Strict = true })
	owners := c.ring.Lookup("k", 3)
	c.reps[owners[0]].setDown(true)
	c.reps[owners[1]].setDown(true)

	_, err := co.Put(bg, "k", "v", clock.Vector{})
	var qe *quorum.Error
	if !errors.As(err, &qe) || !errors.Is(err, quorum.ErrNoQuorum) || !errors.Is(err, errDown) {
		t.Fatalf("Put err = %v, want ErrNoQuorum wrapping errDown", err)
	}
	nodes := []string{}
	for _, f := range qe.Failed {
		nodes = append(nodes, f.Node)
	}
	slices.Sort(nodes)
	if want := slices.Sorted(slices.Values(owners[:2])); !slices.Equal(nodes, want) {
		t.Fatalf("failed nodes %v, want %v", nodes, want)
	}
	if _, err := co.Get(bg, "k"); !errors.Is(err, quorum.ErrNoQuorum) {
		t.Fatalf("Get err = %v, want ErrNoQuorum", err)
	}
	// One is enough at level One.
	if _, err := co.Put(bg, "k", "v", clock.Vector{}, quorum.WithLevel(quorum.One)); err != nil {
		t.Fatalf("Put ONE: %v", err)
	}
	if s := co.Stats(); s.HintsStored != 0 {
		t.Fatalf("strict mode stored %d hints", s.HintsStored)
	}
}

func TestSloppyQuorumHintedHandoff(t *testing.T) {
	c := newCluster(5)
	co := c.coordinator(t, nil)
	pref := c.ring.Lookup("k", 5)
	owner := pref[0]
	c.reps[owner].setDown(true)
	// The first write fails on the owner, which is then avoided: the
	// coordinator falls over to the next node and the write is hinted.
	if _, err := co.Put(bg, "k", "v1", clock.Vector{}, quorum.WithLevel(quorum.All)); err != nil {
		t.Fatalf("Put ALL with a failed owner under sloppy quorum: %v", err)
	}
	if got := c.stored(t, pref[3], "k"); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("stand-in %s holds %v, want [v1]", pref[3], got)
	}
	if got := c.stored(t, owner, "k"); len(got) != 0 {
		t.Fatalf("down owner holds %v", got)
	}
	if co.Stats().HintsPending == 0 {
		t.Fatal("no hint pending for the failed owner")
	}
	// Delivery fails while the owner is down, then succeeds.
	if n := co.DeliverHints(bg); n != 0 {
		t.Fatalf("delivered %d hints to a down node", n)
	}
	c.reps[owner].setDown(false)
	if n := co.DeliverHints(bg); n != 1 {
		t.Fatalf("delivered %d hints, want 1", n)
	}
	if got := c.stored(t, owner, "k"); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("recovered owner holds %v, want [v1]", got)
	}
	if s := co.Stats(); s.HintsPending != 0 || s.HintsDelivered != 1 {
		t.Fatalf("stats after delivery: %+v", s)
	}
}

func TestHintsDeliveredInBackgroundOnClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(4)
		co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.HintInterval = time.Second })
		owner := c.ring.Lookup("k", 1)[0]
		c.reps[owner].setDown(true)
		if _, err := co.Put(bg, "k", "v", clock.Vector{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if co.Stats().HintsPending != 1 {
			t.Fatalf("stats %+v, want one pending hint", co.Stats())
		}
		c.clk.Advance(time.Second) // delivery while the owner is down fails
		synctest.Wait()
		if co.Stats().HintsDelivered != 0 {
			t.Fatal("hint delivered to a down node")
		}
		c.reps[owner].setDown(false)
		c.clk.Advance(time.Second)
		synctest.Wait()
		if s := co.Stats(); s.HintsDelivered != 1 || s.HintsPending != 0 {
			t.Fatalf("stats after recovery %+v", s)
		}
		if got := c.stored(t, owner, "k"); !slices.Equal(got, []string{"v"}) {
			t.Fatalf("owner holds %v after background handoff", got)
		}
	})
}

func TestFailingReplicaReadsFallThrough(t *testing.T) {
	c := newCluster(3)
	co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.Strict = true })
	if _, err := co.Put(bg, "k", "v", clock.Vector{}, quorum.WithLevel(quorum.All)); err != nil {
		t.Fatal(err)
	}
	c.reps[c.ring.Lookup("k", 1)[0]].setDown(true)
	v, err := co.Get(bg, "k") // QUORUM: first asked fails, third is asked
	if err != nil || !slices.Equal(v.Values, []string{"v"}) {
		t.Fatalf("Get with one failing replica = %v, %v", v.Values, err)
	}
}

func TestReadRepairSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(3)
		co := c.coordinator(t, nil)
		stale := c.ring.Lookup("k", 3)[2]
		c.reps[stale].setDown(true)
		if _, err := co.Put(bg, "k", "v", clock.Vector{}, quorum.WithStrict()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the write's failed replication to stale has settled
		c.reps[stale].setDown(false)
		c.clk.Advance(2 * quorum.DefaultHintInterval) // stop avoiding the node
		if got := c.stored(t, stale, "k"); len(got) != 0 {
			t.Fatalf("stale replica already has %v", got)
		}
		if _, err := co.Get(bg, "k", quorum.WithLevel(quorum.All)); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.nodes {
			if got := c.stored(t, n, "k"); !slices.Equal(got, []string{"v"}) {
				t.Fatalf("after read repair %s holds %v", n, got)
			}
		}
		if co.Stats().Repairs != 1 {
			t.Fatalf("Repairs = %d, want 1", co.Stats().Repairs)
		}
	})
}

func TestReadRepairAsyncOwnedByCoordinator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(3)
		co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.Repair = quorum.RepairAsync })
		owners := c.ring.Lookup("k", 3)
		if _, err := c.reps[owners[0]].MemReplica.Update(bg, "k", quorum.Write[string]{Value: "v"}); err != nil {
			t.Fatal(err)
		}
		if _, err := co.Get(bg, "k", quorum.WithLevel(quorum.All)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the background repair has run
		for _, n := range owners {
			if got := c.stored(t, n, "k"); !slices.Equal(got, []string{"v"}) {
				t.Fatalf("after async repair %s holds %v", n, got)
			}
		}
		if got := co.Stats().Repairs; got != 2 {
			t.Fatalf("Repairs = %d, want 2", got)
		}
		co.Close()
		if _, err := co.Get(bg, "k"); !errors.Is(err, quorum.ErrClosed) {
			t.Fatalf("Get after Close: %v, want ErrClosed", err)
		}
	})
}

func TestSlowReplicaHedgedRead(t *testing.T) {
	c := newCluster(3)
	co := c.coordinator(t, func(cfg *quorum.Config[string]) {
		cfg.Hedge = quorum.HedgePolicy{Percentile: 0.9, Floor: 10 * time.Millisecond}
		cfg.Read = quorum.One
		cfg.Repair = quorum.RepairOff
	})
	if _, err := co.Put(bg, "k", "v", clock.Vector{}, quorum.WithLevel(quorum.All)); err != nil {
		t.Fatal(err)
	}
	slow := make(chan struct{})
	defer close(slow)
	c.reps[c.ring.Lookup("k", 1)[0]].setSlow(slow)

	done := make(chan error, 1)
	go func() {
		v, err := co.Get(bg, "k")
		if err == nil && !slices.Equal(v.Values, []string{"v"}) {
			err = errors.New("wrong value")
		}
		done <- err
	}()
	// Timers now pending: hint loop, request timeout, hedge.
	if err := c.clk.BlockUntil(bg, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("read returned before the hedge: %v", err)
	default:
	}
	c.clk.Advance(10 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("hedged read: %v", err)
	}
	if s := co.Stats(); s.Hedges != 1 || s.HedgeWins != 1 {
		t.Fatalf("stats %+v, want one hedge that won", s)
	}

	// Without hedging the read waits for the slow replica until the timeout.
	go func() {
		_, err := co.Get(bg, "k", quorum.WithoutHedge())
		done <- err
	}()
	if err := c.clk.BlockUntil(bg, 2); err != nil {
		t.Fatal(err)
	}
	c.clk.Advance(quorum.DefaultTimeout)
	if err := <-done; !errors.Is(err, quorum.ErrTimeout) || !errors.Is(err, quorum.ErrNoQuorum) {
		t.Fatalf("unhedged read of a stuck replica: %v, want ErrTimeout", err)
	}
}

func TestGetHonoursCallerContext(t *testing.T) {
	c := newCluster(3)
	co := c.coordinator(t, nil)
	slow := make(chan struct{})
	defer close(slow)
	for _, r := range c.reps {
		r.setSlow(slow)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { _, err := co.Get(ctx, "k"); done <- err }()
	if err := c.clk.BlockUntil(bg, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-done
	var qe *quorum.Error
	if !errors.As(err, &qe) || qe.Cause != context.Canceled {
		t.Fatalf("err = %v, want an *Error caused by context.Canceled", err)
	}
}

func TestAntiEntropyRepairsMissedWrites(t *testing.T) {
	c := newCluster(5)
	co := c.coordinator(t, func(cfg *quorum.Config[string]) { cfg.Repair = quorum.RepairOff })
	keys := keyNames(200)
	// Each key written on its first owner only, as if the others missed it.
	for _, k := range keys {
		if _, err := c.reps[c.ring.Lookup(k, 1)[0]].MemReplica.Update(bg, k, quorum.Write[string]{Value: k}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := co.AntiEntropy(bg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Repaired != 2*len(keys) {
		t.Fatalf("repaired %d objects, want %d (%+v)", res.Repaired, 2*len(keys), res)
	}
	for _, k := range keys {
		owners := c.ring.Lookup(k, 3)
		for _, n := range owners {
			if c.digest(n, k) != c.digest(owners[0], k) {
				t.Fatalf("key %s differs on %s after anti-entropy", k, n)
			}
		}
	}
	// A second pass finds nothing to do.
	res, err = co.AntiEntropy(bg)
	if err != nil || res.Differing != 0 || res.Repaired != 0 {
		t.Fatalf("second pass %+v, %v", res, err)
	}
	// Unreachable replicas are reported but do not stop the pass.
	c.reps["n0"].setDown(true)
	if _, err := co.AntiEntropy(bg); !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want errDown", err)
	}
}

func TestNewCoordinatorValidates(t *testing.T) {
	c := newCluster(3)
	for _, tc := range []struct {
		name string
		mod  func(*quorum.Config[string])
	}{
		{"nil ring", func(cfg *quorum.Config[string]) { cfg.Ring = nil }},
		{"nil replica", func(cfg *quorum.Config[string]) { cfg.Replica = nil }},
		{"negative N", func(cfg *quorum.Config[string]) { cfg.N = -1 }},
		{"R above N", func(cfg *quorum.Config[string]) { cfg.Read = quorum.Level(4) }},
		{"bad W level", func(cfg *quorum.Config[string]) { cfg.Write = quorum.Level(-7) }},
		{"percentile 1", func(cfg *quorum.Config[string]) { cfg.Hedge.Percentile = 1 }},
		{"max below floor", func(cfg *quorum.Config[string]) {
			cfg.Hedge = quorum.HedgePolicy{Percentile: .9, Floor: time.Second, Max: time.Millisecond}
		}},
		{"negative timeout", func(cfg *quorum.Config[string]) { cfg.Timeout = -1 }},
		{"unknown repair", func(cfg *quorum.Config[string]) { cfg.Repair = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := c.config()
			tc.mod(&cfg)
			co, err := quorum.NewCoordinator(cfg)
			if !errors.Is(err, quorum.ErrInvalidConfig) || co != nil {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestLevelNeed(t *testing.T) {
	for _, tc := range []struct {
		l       quorum.Level
		n, want int
		err     bool
	}{
		{quorum.One, 3, 1, false}, {quorum.Quorum, 3, 2, false}, {quorum.Quorum, 4, 3, false},
		{quorum.Quorum, 5, 3, false}, {quorum.All, 3, 3, false}, {quorum.Level(2), 3, 2, false},
		{quorum.Level(4), 3, 0, true}, {quorum.Default, 3, 0, true}, {quorum.Level(-3), 3, 0, true},
		{quorum.One, 0, 0, true},
	} {
		got, err := tc.l.Need(tc.n)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%v.Need(%d) = %d, %v", tc.l, tc.n, got, err)
		}
		if err != nil && !errors.Is(err, quorum.ErrNeed) {
			t.Errorf("%v.Need(%d) err %v is not ErrNeed", tc.l, tc.n, err)
		}
	}
	for _, s := range []string{"one", "QUORUM", "all", "2"} {
		l, err := quorum.ParseLevel(s)
		if err != nil {
			t.Fatalf("ParseLevel(%q): %v", s, err)
		}
		if back, _ := quorum.ParseLevel(l.String()); back != l {
			t.Fatalf("round trip of %q: %v", s, back)
		}
	}
	if _, err := quorum.ParseLevel("-1"); err == nil {
		t.Fatal(`ParseLevel("-1") succeeded`)
	}
}
