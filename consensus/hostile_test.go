package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// events records the events of every member of a cluster.
type events struct {
	mu  sync.Mutex
	evs map[uint64][]consensus.Event
}

func (e *events) configure(cfg *consensus.Config) {
	id := cfg.ID
	cfg.OnEvent = func(ev consensus.Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.evs == nil {
			e.evs = map[uint64][]consensus.Event{}
		}
		e.evs[id] = append(e.evs[id], ev)
	}
}

// refused returns the EventMessageRefused events member id reported.
func (e *events) refused(id uint64) []consensus.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []consensus.Event
	for _, ev := range e.evs[id] {
		if ev.Kind == consensus.EventMessageRefused {
			out = append(out, ev)
		}
	}
	return out
}

// nopHandler drops whatever reaches the forger's own endpoint.
type nopHandler struct{}

func (nopHandler) HandleMessages([]consensus.Message) {}
func (nopHandler) HandleSnapshot(context.Context, consensus.Message, io.Reader) error {
	return errors.New("not taking snapshots")
}
func (nopHandler) Unreachable(uint64) {}

// forger returns a transport on c's network from which a test sends
// forged messages.
func forger(t *testing.T, c *consensustest.Cluster, id uint64) consensus.Transport {
	tr := c.Net.Transport(id)
	if err := tr.Start(nopHandler{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// forge builds a raft message as member from (incarnation inc) sends it.
func forge(inc uint64, m *raftpb.Message) consensus.Message {
	return consensus.Message{From: m.GetFrom(), To: m.GetTo(), Kind: consensus.KindHeartbeat, Payload: consensus.EncodeMessage(0, inc, m)}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitRegistered waits until every member has applied the incarnations of
// all of ids.
func waitRegistered(ctx context.Context, t *testing.T, c *consensustest.Cluster, ids ...uint64) {
	t.Helper()
	waitFor(ctx, t, "incarnations recorded", func() bool {
		for _, id := range c.Running() {
			st := c.Node(id).Status()
			for _, m := range ids {
				if st.Incarnations[m] == 0 {
					return false
				}
			}
		}
		return true
	})
}

// A heartbeat with an impossible term, sent as a real member with its real
// incarnation (as a sniffer could), must not reach raft: before these
// checks, term 2^64-1 was adopted and persisted, and the next election
// overflowed it: every member stopped ("term should be set") and could not
// restart.
func TestForgedTermRefused(t *testing.T) {
	var ev events
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 31, Configure: ev.configure})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("a", "1")); err != nil {
		t.Fatal(err)
	}
	term := c.Node(lead).Status().Term
	tr := forger(t, c, 99)
	var msgs []consensus.Message
	for _, to := range c.Running() {
		from := to%3 + 1 // another member, impersonated
		inc := c.Node(from).Status().Incarnation
		for _, ft := range []uint64{math.MaxUint64, consensus.MaxTerm + 1, term + consensus.DefaultMaxTermJump + 1} {
			msgs = append(msgs, forge(inc, &raftpb.Message{
				Type: raftpb.MsgHeartbeat.Enum(), From: new(from), To: new(to), Term: new(ft),
			}))
		}
	}
	tr.Send(msgs)
	for _, id := range c.Running() {
		waitFor(ctx, t, fmt.Sprint("member ", id, " to refuse 3 messages"), func() bool {
			return c.Node(id).Stats().MessagesRefused >= 3 && len(ev.refused(id)) >= 3
		})
		for _, e := range ev.refused(id) {
			if !errors.Is(e.Err, consensus.ErrRefused) || e.Peer != id%3+1 || e.Term <= term {
				t.Fatalf("member %d: refusal event %+v", id, e)
			}
		}
	}
	// The group never noticed: same leader, same term, still committing.
	if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("a", "2")); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		st := c.Node(id).Status()
		if st.Term != term || st.Leader != lead || c.Node(id).Err() != nil {
			t.Fatalf("member %d: term %d leader %d err %v; want term %d leader %d", id, st.Term, st.Leader, c.Node(id).Err(), term, lead)
		}
	}
	// Nothing was persisted: every member restarts, and the group resumes
	// in a term near the old one.
	for _, id := range c.Running() {
		c.Stop(id)
	}
	for id := uint64(1); id <= 3; id++ {
		c.Start(id)
	}
	lead, err = c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Node(lead).Status(); st.Term > term+consensus.DefaultElectionTicks {
		t.Fatalf("term after restart = %d, was %d", st.Term, term)
	}
	if err := c.Node(lead).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.KV(lead).Get("a"); v != "2" {
		t.Fatalf("a = %q after restart", v)
	}
}

// Messages from an id that is not a member are refused, even with a
// plausible term: before, a heartbeat from a stranger one term ahead made
// the member follow the stranger, and the real leader step down.
func TestUnknownSenderRefused(t *testing.T) {
	var ev events
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 32, Configure: ev.configure})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Node(lead).Status()
	tr := forger(t, c, 99)
	var msgs []consensus.Message
	for _, to := range c.Running() {
		for _, typ := range []raftpb.MessageType{raftpb.MsgHeartbeat, raftpb.MsgApp, raftpb.MsgVote, raftpb.MsgTimeoutNow} {
			msgs = append(msgs, forge(12345, &raftpb.Message{
				Type: typ.Enum(), From: new(uint64(99)), To: new(to), Term: new(st.Term + 1),
				Index: new(st.Commit), LogTerm: new(st.Term), Commit: new(st.Commit),
			}))
		}
	}
	tr.Send(msgs)
	for _, id := range c.Running() {
		waitFor(ctx, t, fmt.Sprint("member ", id, " to refuse 4 messages"), func() bool {
			return len(ev.refused(id)) >= 4
		})
		for _, e := range ev.refused(id) {
			if e.Peer != 99 || !errors.Is(e.Err, consensus.ErrRefused) {
				t.Fatalf("member %d: refusal event %+v", id, e)
			}
		}
	}
	if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("a", "1")); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		if got := c.Node(id).Status(); got.Term != st.Term || got.Leader != lead {
			t.Fatalf("member %d: term %d leader %d, want %d and %d", id, got.Term, got.Leader, st.Term, lead)
		}
	}
}

// A member that is not the leader cannot speak for it: before, a heartbeat
// at the current term from a follower's id made the receiver follow that
// id, and one committing beyond the receiver's log made raft panic.
func TestImpostorLeaderRefused(t *testing.T) {
	var ev events
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 35, Configure: ev.configure})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Node(lead).Status()
	var followers []uint64
	for _, id := range c.Running() {
		if id != lead {
			followers = append(followers, id)
		}
	}
	from, to := followers[0], followers[1]
	tr := forger(t, c, 99)
	inc := c.Node(from).Status().Incarnation
	tr.Send([]consensus.Message{
		forge(inc, &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(from), To: new(to), Term: new(st.Term), Commit: new(uint64(1 << 40))}),
		forge(inc, &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: new(from), To: new(to), Term: new(st.Term),
			Index: new(st.Commit), LogTerm: new(st.Term), Commit: new(st.Commit + 1),
			Entries: []*raftpb.Entry{{Index: new(st.Commit + 1), Term: new(st.Term), Data: []byte("forged")}}}),
	})
	waitFor(ctx, t, "two refusals", func() bool { return len(ev.refused(to)) >= 2 })
	if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("a", "1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(to).Err(); err != nil {
		t.Fatalf("member %d failed: %v", to, err)
	}
	if got := c.Node(to).Status(); got.Leader != lead || got.Term != st.Term {
		t.Fatalf("member %d: leader %d term %d, want %d and %d", to, got.Leader, got.Term, lead, st.Term)
	}
}

// A member whose state was wiped restarts empty under its old id. Before,
// the first leader that had not seen it acknowledge anything sent it a
// snapshot and counted it again, its forgotten votes and log included.
// Now the group refuses it by incarnation whatever the leader history, and
// an empty member never votes.
func TestWipedMemberRefused(t *testing.T) {
	for _, changes := range []int{1, 4} {
		t.Run(fmt.Sprint(changes, " leader changes"), func(t *testing.T) {
			var ev events
			c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 33, Configure: ev.configure})
			ctx := ctxT(t, 60*time.Second)
			lead, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			waitRegistered(ctx, t, c, 1, 2, 3)
			for i := range 10 {
				if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
					t.Fatal(err)
				}
			}
			wiped := lead%3 + 1
			var healthy []uint64
			for _, id := range c.Running() {
				if id != wiped {
					healthy = append(healthy, id)
				}
			}
			if err := c.WaitApplied(ctx, c.Node(lead).Status().Commit, wiped); err != nil {
				t.Fatal(err)
			}
			c.Wipe(wiped)
			// Leadership moves while the member is away, so the leader it
			// comes back to has no record of what it acknowledged.
			transfer := func() {
				t.Helper()
				lead, err := c.WaitLeader(ctx, healthy...)
				if err != nil {
					t.Fatal(err)
				}
				to := healthy[0]
				if to == lead {
					to = healthy[1]
				}
				if err := c.Node(lead).TransferLeadership(ctx, to); err != nil {
					t.Fatalf("transfer %d -> %d: %v", lead, to, err)
				}
			}
			transfer()
			w := c.Start(wiped)
			check := func() {
				t.Helper()
				st := w.Status()
				if st.Vote != 0 || st.Applied != 0 {
					t.Fatalf("wiped member: vote %d applied %d, want neither", st.Vote, st.Applied)
				}
				if err := w.Err(); err != nil && !errors.Is(err, consensus.ErrDataLoss) {
					t.Fatalf("wiped member failed with %v", err)
				}
			}
			for i := range changes {
				if i > 0 {
					transfer()
				}
				if _, err := onLeaderPropose(ctx, c, healthy, fmt.Sprint("after", i)); err != nil {
					t.Fatal(err)
				}
				check()
			}
			// Give it time (100 ticks) to be taken back in, if it could be.
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				if _, err := onLeaderPropose(ctx, c, healthy, "more"); err != nil {
					t.Fatal(err)
				}
				check()
			}
			lead, err = c.WaitLeader(ctx, healthy...)
			if err != nil {
				t.Fatal(err)
			}
			if p := c.Node(lead).Status().Progress[wiped]; p.Match != 0 {
				t.Fatalf("leader counts the wiped member's log to %d", p.Match)
			}
			// The group reports the member: refused for its lost state.
			waitFor(ctx, t, "a lost-state refusal", func() bool {
				for _, id := range healthy {
					for _, e := range ev.refused(id) {
						if e.Peer == wiped && errors.Is(e.Err, consensus.ErrMemberLostState) {
							return true
						}
					}
				}
				return false
			})
		})
	}
}

func onLeaderPropose(ctx context.Context, c *consensustest.Cluster, among []uint64, key string) ([]byte, error) {
	var res []byte
	err := onLeader(ctx, c, func(n *consensus.Node) error {
		var err error
		res, err = n.Propose(ctx, consensustest.PutCommand(key, "v"))
		return err
	}, among...)
	return res, err
}

// An old copy of a member's directory (a restored backup) has a log that
// ends before entries the member acknowledged. Before, raft panicked on the
// leader's commit index at every start; now the member stops with
// ErrDataLoss, and the group carries on.
func TestStaleCopyStopsWithDataLoss(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 34, Dir: t.TempDir(), Configure: func(cfg *consensus.Config) {
		cfg.UnsafeNoSync = true
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stale := lead%3 + 1
	put := func(n int, prefix string) {
		t.Helper()
		for i := range n {
			if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint(prefix, i), "v")); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(5, "old")
	if err := c.WaitApplied(ctx, c.Node(lead).Status().Commit, stale); err != nil {
		t.Fatal(err)
	}
	c.Stop(stale)
	restore := c.Backup(stale)
	c.Start(stale)
	put(20, "new")
	if err := c.WaitApplied(ctx, c.Node(lead).Status().Commit, stale); err != nil {
		t.Fatal(err)
	}
	c.Stop(stale)
	restore()
	for round := range 2 {
		n, err := c.TryStart(stale)
		if err != nil {
			t.Fatalf("round %d: start: %v", round, err)
		}
		select {
		case <-n.Done():
		case <-ctx.Done():
			t.Fatalf("round %d: the stale copy kept running: %+v", round, n.Status())
		}
		if err := n.Err(); !errors.Is(err, consensus.ErrDataLoss) {
			t.Fatalf("round %d: stale copy stopped with %v, want ErrDataLoss", round, err)
		}
		if st := n.Status(); st.Vote != 0 && st.Vote != lead {
			t.Fatalf("round %d: stale copy voted for %d", round, st.Vote)
		}
		c.Stop(stale)
		if l, _ := c.Node(lead).Leader(); l != lead {
			t.Fatalf("leader changed to %d", l)
		}
		put(3, fmt.Sprint("after", round))
	}
}

// State of another group is refused at Start.
func TestForeignGroupRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	net := consensustest.NewNetwork(1)
	start := func(group uint64) (*consensus.Node, error) {
		return consensus.Start(consensus.Config{
			ID: 1, GroupID: group, Dir: dir, Transport: net.Transport(1), UnsafeNoSync: true,
			TickInterval: 10 * time.Millisecond, Bootstrap: []consensus.Member{{ID: 1}}, StorageMode: storageMode,
		}, consensustest.NewKV())
	}
	n, err := start(7)
	if err != nil {
		t.Fatal(err)
	}
	inc := n.Status().Incarnation
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := start(8); !errors.Is(err, consensus.ErrWrongGroup) {
		t.Fatalf("start as group 8 on group 7's directory: %v, want ErrWrongGroup", err)
	}
	n, err = start(7)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.Status().Incarnation; got != inc || inc == 0 {
		t.Fatalf("incarnation after restart = %d, want %d", got, inc)
	}

	mem := consensus.NewMemoryStore()
	m, err := consensus.Start(consensus.Config{ID: 2, GroupID: 1, Memory: mem, Transport: net.Transport(2)}, consensustest.NewKV())
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := consensus.Start(consensus.Config{ID: 2, GroupID: 2, Memory: mem, Transport: net.Transport(2)}, consensustest.NewKV()); !errors.Is(err, consensus.ErrWrongGroup) {
		t.Fatalf("MemoryStore of group 1 started as group 2: %v", err)
	}
}

// A member that was away while the group went through more elections than
// Config.MaxTermJump refuses the group's messages (and so stays out) until
// the bound is raised; within the bound it rejoins as usual.
func TestMemberFarBehindAndMaxTermJump(t *testing.T) {
	var ev events
	jump := uint64(2)
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 36, Configure: func(cfg *consensus.Config) {
		ev.configure(cfg)
		cfg.MaxTermJump = jump
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	away := lead%3 + 1
	old := c.Node(away).Status().Term
	c.Stop(away)
	var rest []uint64
	for id := uint64(1); id <= 3; id++ {
		if id != away {
			rest = append(rest, id)
		}
	}
	for c.Node(rest[0]).Status().Term <= old+jump+1 {
		lead, err := c.WaitLeader(ctx, rest...)
		if err != nil {
			t.Fatal(err)
		}
		to := rest[0]
		if to == lead {
			to = rest[1]
		}
		if err := c.Node(lead).TransferLeadership(ctx, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := onLeaderPropose(ctx, c, rest, "k"); err != nil {
		t.Fatal(err)
	}
	n := c.Start(away)
	waitFor(ctx, t, "the returning member to refuse the leader's term", func() bool {
		return len(ev.refused(away)) > 0
	})
	if st := n.Status(); st.Term > old+jump || st.Applied >= c.Node(rest[0]).Status().Applied {
		t.Fatalf("member %d followed a term jump beyond MaxTermJump: %+v", away, st)
	}
	// With the bound raised it catches up.
	jump = consensus.DefaultMaxTermJump
	c.Restart(away)
	if err := c.Node(away).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.KV(away).Get("k"); v != "v" {
		t.Fatalf("k = %q on the returning member", v)
	}
}

// A follower asked to transfer leadership forwards the request to the
// leader in a message that names the transferee as its sender; it is
// checked against the member that sent it, so the transfer works once the
// group knows every member's incarnation.
func TestTransferThroughFollowerWithIncarnations(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 37})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitRegistered(ctx, t, c, 1, 2, 3)
	to, via := lead%3+1, (lead+1)%3+1
	if err := c.Node(via).TransferLeadership(ctx, to); err != nil {
		t.Fatalf("transfer %d->%d via %d: %v", lead, to, via, err)
	}
	if got, err := c.WaitLeader(ctx); err != nil || got != to {
		t.Fatalf("leader = %d, %v; want %d", got, err, to)
	}
	for _, id := range c.Running() {
		if n := c.Node(id).Stats().MessagesRefused; n != 0 {
			t.Fatalf("member %d refused %d messages", id, n)
		}
	}
}

// A wiped member restarted with its Bootstrap list bootstraps a fresh
// one-entry log and knows the members; the group refuses it all the same,
// and it never catches up under its old id.
func TestWipedMemberRebootstrappedRefused(t *testing.T) {
	var ev events
	var wiped uint64
	boot := []consensus.Member{{ID: 1}, {ID: 2}, {ID: 3}}
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 38, Configure: func(cfg *consensus.Config) {
		ev.configure(cfg)
		if cfg.ID == wiped {
			cfg.Bootstrap = boot
		}
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitRegistered(ctx, t, c, 1, 2, 3)
	for i := range 10 {
		if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	wiped = lead%3 + 1
	healthy := []uint64{lead, (lead+1)%3 + 1}
	if err := c.WaitApplied(ctx, c.Node(lead).Status().Commit, wiped); err != nil {
		t.Fatal(err)
	}
	c.Wipe(wiped)
	if err := c.Node(lead).TransferLeadership(ctx, healthy[1]); err != nil {
		t.Fatal(err)
	}
	w := c.Start(wiped)
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if _, err := onLeaderPropose(ctx, c, healthy, "more"); err != nil {
			t.Fatal(err)
		}
		if st := w.Status(); st.Applied > 1 {
			t.Fatalf("re-bootstrapped member applied %d", st.Applied)
		}
		if err := w.Err(); err != nil && !errors.Is(err, consensus.ErrDataLoss) {
			t.Fatalf("re-bootstrapped member failed with %v", err)
		}
	}
	l, err := c.WaitLeader(ctx, healthy...)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Node(l).Status().Progress[wiped]; p.Match > 1 {
		t.Fatalf("leader counts the re-bootstrapped member's log to %d", p.Match)
	}
	waitFor(ctx, t, "a lost-state refusal", func() bool {
		for _, id := range healthy {
			for _, e := range ev.refused(id) {
				if e.Peer == wiped && errors.Is(e.Err, consensus.ErrMemberLostState) {
					return true
				}
			}
		}
		return false
	})
}
