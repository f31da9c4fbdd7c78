package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// skewClock is the real clock shifted by an adjustable offset.
type skewClock struct {
	clock.Clock
	skew atomic.Int64
}

func (c *skewClock) Now() time.Time                  { return c.Clock.Now().Add(time.Duration(c.skew.Load())) }
func (c *skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// stampRecord is a command as one member applied it.
type stampRecord struct {
	index uint64
	ts    clock.Timestamp
	phys  time.Time // the applying member's clock when it applied it
}

// stampKV is a KV that records the timestamps it is given.
type stampKV struct {
	*consensustest.KV
	clk *skewClock
	mu  sync.Mutex
	got []stampRecord
}

func (s *stampKV) Apply(cmds []consensus.Command) error {
	s.mu.Lock()
	for _, c := range cmds {
		s.got = append(s.got, stampRecord{c.Index, c.Timestamp, s.clk.Now()})
	}
	s.mu.Unlock()
	return s.KV.Apply(cmds)
}

func (s *stampKV) records() []stampRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stampRecord(nil), s.got...)
}

type stampCluster struct {
	*consensustest.Cluster
	clocks map[uint64]*skewClock
	sms    map[uint64]*stampKV
	mu     sync.Mutex
	events []consensus.Event
}

const testMaxOffset = 500 * time.Millisecond

func newStampCluster(t *testing.T, seed uint64) *stampCluster {
	sc := &stampCluster{clocks: map[uint64]*skewClock{}, sms: map[uint64]*stampKV{}}
	for id := uint64(1); id <= 3; id++ {
		sc.clocks[id] = &skewClock{Clock: clock.Real}
	}
	var smMu sync.Mutex
	sc.Cluster = newCluster(t, 3, consensustest.ClusterOptions{
		Seed: seed,
		NewStateMachine: func(id uint64) consensus.StateMachine {
			smMu.Lock()
			defer smMu.Unlock()
			sm := &stampKV{KV: consensustest.NewKV(), clk: sc.clocks[id]}
			sc.sms[id] = sm
			return sm
		},
		Configure: func(cfg *consensus.Config) {
			cfg.Timestamps = true
			cfg.MaxClockOffset = testMaxOffset
			cfg.Clock = sc.clocks[cfg.ID]
			id := cfg.ID
			cfg.OnEvent = func(e consensus.Event) {
				if e.Kind == consensus.EventClockOffset {
					sc.mu.Lock()
					e.Index = id // which member reported it
					sc.events = append(sc.events, e)
					sc.mu.Unlock()
				}
			}
		},
	})
	return sc
}

func (sc *stampCluster) sm(id uint64) *stampKV {
	return sc.StateMachine(id).(*stampKV)
}

func (sc *stampCluster) clockEvents() []consensus.Event {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return append([]consensus.Event(nil), sc.events...)
}

// propose writes n commands through member via, retrying commands that
// were dropped (safe) while leadership moves.
func (sc *stampCluster) propose(ctx context.Context, t *testing.T, via uint64, tag string, n int) uint64 {
	t.Helper()
	var last uint64
	for i := range n {
		for {
			a, err := sc.Node(via).Submit(ctx, consensustest.PutCommand(fmt.Sprint(tag, i), "v"))
			if err == nil {
				last = a.Index
				break
			}
			if !errors.Is(err, consensus.ErrDropped) || ctx.Err() != nil {
				t.Fatalf("propose %s%d via %d: %v", tag, i, via, err)
			}
		}
	}
	return last
}

// checkStamps checks the timestamps every member applied: all set,
// strictly increasing in log order, identical across members, and never
// ahead of the applying member's clock by more than the bound.
func checkStamps(t *testing.T, sc *stampCluster) {
	t.Helper()
	var ref map[uint64]clock.Timestamp
	for _, id := range sc.Running() {
		recs := sc.sm(id).records()
		byIndex := map[uint64]clock.Timestamp{}
		var prev stampRecord
		for i, r := range recs {
			if r.ts.IsZero() {
				t.Fatalf("member %d: command %d has no timestamp", id, r.index)
			}
			if i > 0 && !prev.ts.Less(r.ts) {
				t.Fatalf("member %d: timestamp of %d (%v) not after that of %d (%v)", id, r.index, r.ts, prev.index, prev.ts)
			}
			if ahead := r.ts.Time().Sub(r.phys); ahead > testMaxOffset {
				t.Fatalf("member %d: command %d stamped %v ahead of its clock", id, r.index, ahead)
			}
			byIndex[r.index] = r.ts
			prev = r
		}
		if ref == nil {
			ref = byIndex
			continue
		}
		for idx, ts := range byIndex {
			if want, ok := ref[idx]; ok && want != ts {
				t.Fatalf("member %d applied %d at %v, another member at %v", id, idx, ts, want)
			}
		}
	}
}

// Timestamps keep increasing when leadership moves from a member whose
// clock runs ahead to one whose clock runs behind (both within the bound),
// and across a restart.
func TestTimestampsMonotonicAcrossLeaderChange(t *testing.T) {
	sc := newStampCluster(t, 41)
	ctx := ctxT(t, 60*time.Second)
	sc.clocks[1].skew.Store(int64(300 * time.Millisecond))
	sc.clocks[2].skew.Store(int64(-150 * time.Millisecond))
	if _, err := sc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sc.Node(1).TransferLeadership(ctx, 1); err != nil {
		t.Fatal(err)
	}
	sc.propose(ctx, t, 3, "a", 30)
	// Member 2 is 450ms behind member 1: without a floor its stamps
	// would go back in time.
	if err := sc.Node(1).TransferLeadership(ctx, 2); err != nil {
		t.Fatal(err)
	}
	sc.propose(ctx, t, 2, "b", 30)
	sc.Restart(1)
	sc.Stop(2)
	if _, err := sc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	sc.Start(2)
	last := sc.propose(ctx, t, 3, "c", 30)
	if err := sc.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	checkStamps(t, sc)
	if ev := sc.clockEvents(); len(ev) != 0 {
		t.Fatalf("clock offset reported within the bound: %v", ev)
	}
}

// A leader whose clock runs a year ahead cannot commit a timestamp: the
// followers refuse its entries, report it, and elect another leader.
func TestTimestampsRefuseLeaderAhead(t *testing.T) {
	sc := newStampCluster(t, 42)
	ctx := ctxT(t, 60*time.Second)
	if _, err := sc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sc.Node(1).TransferLeadership(ctx, 3); err != nil {
		t.Fatal(err)
	}
	sc.propose(ctx, t, 1, "a", 5)
	sc.clocks[3].skew.Store(int64(365 * 24 * time.Hour))
	// Proposals through the skewed leader never commit there; they fail
	// (or apply later through the next leader).
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := sc.Node(3).Propose(pctx, consensustest.PutCommand("skewed", "v"))
	cancel()
	t.Logf("proposal through the skewed leader: %v", err)
	lead, err := pollValue(ctx, func() (uint64, bool) {
		l, ok := sc.Node(1).Leader()
		return l, ok && l != 3
	})
	if err != nil {
		t.Fatalf("member 3 still leads: %v", err)
	}
	last := sc.propose(ctx, t, 3, "b", 10)
	if err := sc.WaitApplied(ctx, last, 1, 2); err != nil {
		t.Fatal(err)
	}
	checkStamps(t, sc)
	var reported bool
	for _, e := range sc.clockEvents() {
		if e.Peer == 3 && e.Index != 3 && errors.Is(e.Err, consensus.ErrClockOffset) {
			reported = true
		}
	}
	if !reported {
		t.Fatalf("no follower reported leader 3's clock; events %v (new leader %d)", sc.clockEvents(), lead)
	}
}

// A leader whose clock is behind the replicated time by more than the
// bound refuses to stamp, reports it, and hands leadership over.
func TestTimestampsLeaderBehindStepsDown(t *testing.T) {
	sc := newStampCluster(t, 43)
	ctx := ctxT(t, 60*time.Second)
	if _, err := sc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sc.Node(1).TransferLeadership(ctx, 2); err != nil {
		t.Fatal(err)
	}
	last := sc.propose(ctx, t, 2, "a", 5)
	if err := sc.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	sc.clocks[2].skew.Store(int64(-2 * time.Second))
	_, err := sc.Node(2).Propose(ctx, consensustest.PutCommand("late", "v"))
	if !errors.Is(err, consensus.ErrClockOffset) || !errors.Is(err, consensus.ErrDropped) {
		t.Fatalf("proposal through the slow leader: %v, want ErrDropped and ErrClockOffset", err)
	}
	if _, err := pollValue(ctx, func() (uint64, bool) {
		l, ok := sc.Node(1).Leader()
		return l, ok && l != 2
	}); err != nil {
		t.Fatalf("the slow leader kept leading: %v", err)
	}
	var reported bool
	for _, e := range sc.clockEvents() {
		if e.Index == 2 && e.Peer == 0 && errors.Is(e.Err, consensus.ErrClockOffset) {
			reported = true
		}
	}
	if !reported {
		t.Fatalf("the slow leader did not report itself: %v", sc.clockEvents())
	}
	last = sc.propose(ctx, t, 1, "b", 5)
	if err := sc.WaitApplied(ctx, last, 1, 3); err != nil {
		t.Fatal(err)
	}
	if v, ok := sc.sm(1).Get("late"); ok {
		t.Fatalf("refused proposal applied: %q", v)
	}
}

// pollValue polls cond until it holds or ctx ends.
func pollValue(ctx context.Context, cond func() (uint64, bool)) (uint64, error) {
	for {
		if v, ok := cond(); ok {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
