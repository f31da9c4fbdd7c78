package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func memberIDs(ms []consensus.Member) (voters, learners []uint64) {
	for _, m := range ms {
		if m.Learner {
			learners = append(learners, m.ID)
		} else {
			voters = append(voters, m.ID)
		}
	}
	return voters, learners
}

// onLeader runs f on the current leader, again if leadership moved.
func onLeader(ctx context.Context, c *consensustest.Cluster, f func(*consensus.Node) error, among ...uint64) error {
	for {
		lead, err := c.WaitLeader(ctx, among...)
		if err != nil {
			return err
		}
		err = f(c.Node(lead))
		if !errors.Is(err, consensus.ErrNotLeader) {
			return err
		}
	}
}

func TestMembershipAddPromoteRemove(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 7})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	// A learner joins through a follower and catches up.
	c.Start(4)
	follower := c.Running()[0]
	if follower == lead {
		follower = c.Running()[1]
	}
	if err := c.Node(follower).AddLearner(ctx, 4, "addr-4"); err != nil {
		t.Fatalf("AddLearner: %v", err)
	}
	voters, learners := memberIDs(c.Node(follower).Members())
	if !slices.Equal(voters, []uint64{1, 2, 3}) || !slices.Equal(learners, []uint64{4}) {
		t.Fatalf("after AddLearner: voters %v learners %v", voters, learners)
	}
	// Promotion is judged on the leader.
	if err := c.Node(follower).PromoteLearner(ctx, 4); !errors.Is(err, consensus.ErrNotLeader) {
		t.Fatalf("PromoteLearner on follower = %v, want ErrNotLeader", err)
	}
	if err := onLeader(ctx, c, func(n *consensus.Node) error { return n.PromoteLearner(ctx, 4) }); err != nil {
		t.Fatalf("PromoteLearner: %v", err)
	}
	if err := c.Node(4).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.KV(4).Len(); got != 20 {
		t.Fatalf("new member has %d keys, want 20", got)
	}
	voters, _ = memberIDs(c.Node(4).Members())
	if !slices.Equal(voters, []uint64{1, 2, 3, 4}) {
		t.Fatalf("voters after promote: %v", voters)
	}
	// The promotion names no address; every member keeps the learner's.
	for _, id := range c.Running() {
		for _, m := range c.Node(id).Members() {
			if m.ID == 4 && m.Addr != "addr-4" {
				t.Fatalf("member %d sees member 4 at %q, want addr-4", id, m.Addr)
			}
		}
	}

	// Remove the leader: leadership moves first, and the group carries on.
	var removed uint64
	if err := onLeader(ctx, c, func(n *consensus.Node) error {
		removed = n.ID()
		return n.RemoveMember(ctx, n.ID())
	}); err != nil {
		t.Fatalf("RemoveMember(leader %d): %v", removed, err)
	}
	// The removed member refuses further work.
	if _, err := c.Node(removed).Propose(ctx, consensustest.PutCommand("x", "y")); !errors.Is(err, consensus.ErrRemoved) {
		t.Fatalf("Propose on removed member = %v, want ErrRemoved", err)
	}
	c.Stop(removed)
	lead, err = c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lead == removed {
		t.Fatal("removed member still leads")
	}
	if err := c.Node(lead).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	voters, _ = memberIDs(c.Node(lead).Members())
	if len(voters) != 3 || slices.Contains(voters, removed) {
		t.Fatalf("voters after removing %d: %v", removed, voters)
	}
	if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("after", "remove")); err != nil {
		t.Fatal(err)
	}
	// AddVoter: learner first, promoted once caught up.
	c.Start(5)
	voters, _ = memberIDs(c.Node(lead).Members())
	if err := onLeader(ctx, c, func(n *consensus.Node) error { return n.AddVoter(ctx, 5, "addr-5") }, voters...); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	if err := c.Node(5).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	voters, learners = memberIDs(c.Node(5).Members())
	if !slices.Contains(voters, 5) || len(learners) != 0 {
		t.Fatalf("after AddVoter(5): voters %v learners %v", voters, learners)
	}
	// Errors callers can act on.
	if err := c.Node(lead).PromoteLearner(ctx, 99); !errors.Is(err, consensus.ErrUnknownMember) {
		t.Fatalf("PromoteLearner(99) = %v", err)
	}
	if err := c.Node(lead).TransferLeadership(ctx, 99); !errors.Is(err, consensus.ErrTransferFailed) {
		t.Fatalf("TransferLeadership(99) = %v", err)
	}
	if err := c.Node(lead).RemoveMember(ctx, 99); err != nil {
		t.Fatalf("RemoveMember(non-member) = %v", err)
	}
}

func TestLeaderTransfer(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 8})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []uint64{lead%3 + 1, (lead+1)%3 + 1} {
		// Ask a member that is neither the leader nor the target.
		var via uint64
		for _, id := range c.Running() {
			if id != to && id != lead {
				via = id
			}
		}
		if err := c.Node(via).TransferLeadership(ctx, to); err != nil {
			t.Fatalf("transfer %d->%d via %d: %v", lead, to, via, err)
		}
		got, err := c.WaitLeader(ctx)
		if err != nil || got != to {
			t.Fatalf("leader after transfer = %d, %v; want %d", got, err, to)
		}
		if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand("k", fmt.Sprint(to))); err != nil {
			t.Fatal(err)
		}
		lead = to
	}
}

func TestSnapshotInstallToLaggingAndNewMember(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 9, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 20
		cfg.TrailingEntries = 5
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lagging := lead%3 + 1
	c.Stop(lagging)
	for i := range 100 {
		if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Snapshots are written off the apply path: wait for the first.
	for c.Node(lead).Stats().SnapshotsTaken == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("no snapshot taken after 100 entries with SnapshotEntries=20")
		case <-time.After(5 * time.Millisecond):
		}
	}
	c.Start(lagging)
	if err := c.Node(lagging).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.KV(lagging).Len(); got != 100 {
		t.Fatalf("lagging member has %d keys, want 100", got)
	}
	if c.Node(lagging).Stats().SnapshotsReceived == 0 {
		t.Fatal("lagging member caught up without a snapshot")
	}
	// A brand-new member also starts from a snapshot.
	c.Start(4)
	if err := c.Node(lead).AddLearner(ctx, 4, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(4).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.KV(4).Len(); got != 100 {
		t.Fatalf("new member has %d keys, want 100", got)
	}
	if c.Node(4).Stats().SnapshotsReceived == 0 {
		t.Fatal("new member caught up without a snapshot")
	}
	// Restarting from a snapshot plus log keeps the data.
	c.Restart(4)
	if err := c.Node(4).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.KV(4).Get("k99"); v != "99" {
		t.Fatalf("restarted learner k99=%q", v)
	}
}

// A member that catches up by installing a snapshot wakes the callers
// already waiting for an index the snapshot covers, even when no entry
// follows it.
func TestWaitAppliedWakesOnSnapshotInstall(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 11, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 10
		cfg.TrailingEntries = 2
	}})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := c.Node(lead).Propose(ctx, consensustest.PutCommand(fmt.Sprint("k", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(4)
	// Wait for index 1 before the learner has applied anything: the
	// snapshot it will install covers it.
	waited := make(chan error, 1)
	go func() { waited <- c.Node(4).WaitApplied(ctx, 1) }()
	if c.Node(4).Stats().MessagesReceived > 0 {
		t.Fatal("learner heard from the group before it was added")
	}
	if err := c.Node(lead).AddLearner(ctx, 4, ""); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-wctx.Done():
		t.Fatalf("WaitApplied(1) still waiting with index %d applied from a snapshot (%d received)",
			c.Node(4).AppliedIndex(), c.Node(4).Stats().SnapshotsReceived)
	}
}

func TestRestartAllMembers(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 10, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 15
		cfg.TrailingEntries = 3
	}})
	ctx := ctxT(t, 60*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last consensus.Applied
	for i := range 40 {
		last, err = c.Node(lead).Submit(ctx, consensustest.PutCommand(fmt.Sprint("k", i), fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uint64{1, 2, 3} {
		c.Stop(id)
	}
	for _, id := range []uint64{1, 2, 3} {
		c.Start(id)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// Read-your-writes with the index token, on every member.
	for _, id := range c.Running() {
		if err := c.Node(id).WaitApplied(ctx, last.Index); err != nil {
			t.Fatal(err)
		}
		if got := c.KV(id).Len(); got != 40 {
			t.Fatalf("member %d has %d keys after full restart", id, got)
		}
	}
	if _, err := c.Node(2).Propose(ctx, consensustest.PutCommand("new", "1")); err != nil {
		t.Fatal(err)
	}
}

// addrRecorder records the addresses a member's node gives its transport.
type addrRecorder struct {
	consensus.Transport
	mu    *sync.Mutex
	calls *[]string
	self  uint64
}

func (r addrRecorder) AddPeer(id uint64, addr string) {
	r.mu.Lock()
	*r.calls = append(*r.calls, fmt.Sprintf("%d:%d=%q", r.self, id, addr))
	r.mu.Unlock()
	r.Transport.AddPeer(id, addr)
}

func TestPromotionKeepsTransportAddress(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 11, Configure: func(cfg *consensus.Config) {
		cfg.Transport = addrRecorder{Transport: cfg.Transport, mu: &mu, calls: &calls, self: cfg.ID}
	}})
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	c.Start(4)
	if err := onLeader(ctx, c, func(n *consensus.Node) error { return n.AddVoter(ctx, 4, "addr-4") }, 1, 2, 3); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	for _, id := range c.Running() {
		if err := c.Node(id).ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	told := 0
	for _, call := range calls {
		if strings.Contains(call, `:4=`) {
			told++
			if !strings.HasSuffix(call, `="addr-4"`) {
				t.Errorf("transport told %s after promotion; want addr-4", call)
			}
		}
	}
	if told == 0 {
		t.Fatalf("no member told its transport about member 4: %v", calls)
	}
}
