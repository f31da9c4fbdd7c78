package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

func TestPartitionMinorityCannotCommit(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 4})
	ctx := ctxT(t, 30*time.Second)
	old, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rest []uint64
	for _, id := range c.Running() {
		if id != old {
			rest = append(rest, id)
		}
	}
	c.Net.Partition([]uint64{old}, rest)

	// The isolated leader cannot commit: its proposal waits. Once the
	// partition heals, the new leader's log overwrites the entry, and the
	// member proposes the command again: it applies, once.
	minority := make(chan error, 1)
	go func() {
		_, err := c.Node(old).Propose(ctx, consensustest.AppendCommand("y", "[minority]"))
		minority <- err
	}()

	// The majority elects a new leader and keeps committing.
	lead, err := c.WaitLeader(ctx, rest...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Node(rest[i%2]).Propose(ctx, consensustest.PutCommand("x", fmt.Sprint("majority", i))); err != nil {
			t.Fatalf("majority propose: %v", err)
		}
	}
	select {
	case err := <-minority:
		t.Fatalf("minority proposal finished while partitioned: %v", err)
	default:
	}
	if v, _ := c.KV(old).Get("y"); v != "" {
		t.Fatalf("minority applied y=%q while partitioned", v)
	}

	c.Net.Heal()
	if err := <-minority; err != nil {
		t.Fatalf("minority proposal after heal: %v, want it applied", err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(old).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.Running() {
		if err := c.Node(id).ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := c.KV(id).Get("x"); v != "majority4" {
			t.Fatalf("member %d: x=%q after heal (leader %d)", id, v, lead)
		}
		if v, _ := c.KV(id).Get("y"); v != "[minority]" {
			t.Fatalf("member %d: y=%q after heal, want the minority's append once", id, v)
		}
	}
}

func TestMessageLossDuplicationReorder(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 5})
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	c.Net.SetFaults(consensustest.Faults{Drop: 0.15, Duplicate: 0.2, Reorder: 0.3, MaxDelay: 15 * time.Millisecond})
	const keys = 30
	var wg sync.WaitGroup
	errs := make(chan error, keys)
	for k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := c.Running()[k%3]
			reqID := fmt.Sprint("req-", k)
			// Retry until applied; the request id makes retries safe.
			for {
				actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				_, err := c.Node(id).Propose(actx, consensustest.AppendCommand(fmt.Sprint("k", k), "x"), consensus.WithRequestID(reqID))
				cancel()
				if err == nil {
					return
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("key %d: %w", k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.Net.SetFaults(consensustest.Faults{})
	st := c.Net.Stats()
	if st.Dropped == 0 || st.Duplicated == 0 || st.Delayed == 0 {
		t.Fatalf("faults not exercised: %+v", st)
	}
	for _, id := range c.Running() {
		if err := c.Node(id).ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		kv := c.KV(id)
		for k := range keys {
			// Exactly one append per key despite duplicates and retries.
			if v, _ := kv.Get(fmt.Sprint("k", k)); v != "x" {
				t.Fatalf("member %d: k%d = %q, want exactly one append", id, k, v)
			}
		}
	}
}

func TestRequestIDReturnsFirstResult(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 6})
	ctx := ctxT(t, 20*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Node(lead).Propose(ctx, consensustest.AppendCommand("k", "a"), consensus.WithRequestID("r1"))
	if err != nil {
		t.Fatal(err)
	}
	// Fail over, then retry through another member.
	c.Stop(lead)
	var other uint64
	for _, id := range c.Running() {
		other = id
	}
	again, err := c.Node(other).Propose(ctx, consensustest.AppendCommand("k", "a"), consensus.WithRequestID("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != "a" || string(again) != "a" {
		t.Fatalf("first=%q retry=%q, want both \"a\"", first, again)
	}
	if err := c.Node(other).ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.KV(other).Get("k"); v != "a" {
		t.Fatalf("k=%q after retry, want a single append", v)
	}
	// Different id: applies again.
	if v, err := c.Node(other).Propose(ctx, consensustest.AppendCommand("k", "b"), consensus.WithRequestID("r2")); err != nil || string(v) != "ab" {
		t.Fatalf("second request = %q, %v", v, err)
	}
	// Application errors come back to the proposer, and again on retry.
	_, err = c.Node(other).Propose(ctx, []byte("garbage"), consensus.WithRequestID("r3"))
	if !errors.Is(err, consensustest.ErrBadCommand) {
		t.Fatalf("bad command error = %v", err)
	}
	_, err = c.Node(other).Propose(ctx, []byte("garbage"), consensus.WithRequestID("r3"))
	var ce *consensus.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "bad KV command") {
		t.Fatalf("retried bad command error = %v", err)
	}
}

// A leader over its uncommitted-bytes limit refuses proposals, and the
// proposer hears ErrDropped at once rather than waiting out its context.
func TestUncommittedLimitDropsProposals(t *testing.T) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: 12, Configure: func(cfg *consensus.Config) {
		cfg.MaxUncommittedBytes = 2048
		cfg.DisableCheckQuorum = true // the isolated leader stays leader
	}})
	ctx := ctxT(t, 30*time.Second)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Net.Isolate(lead)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := consensustest.PutCommand("k", strings.Repeat("v", 1500))
	first := make(chan error, 1)
	go func() {
		_, err := c.Node(lead).Propose(pctx, cmd)
		first <- err
	}()
	// The first proposal fills the limit; a later one is refused.
	for c.Node(lead).Stats().Proposals == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("first proposal never handed to raft")
		case <-time.After(time.Millisecond):
		}
	}
	start := time.Now()
	var dropped error
	for dropped == nil && time.Since(start) < 5*time.Second {
		octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Node(lead).Propose(octx, cmd)
		ocancel()
		switch {
		case errors.Is(err, consensus.ErrDropped):
			dropped = err
		case err == nil:
			t.Fatal("an isolated leader committed a proposal")
		}
	}
	if dropped == nil {
		t.Fatal("no proposal refused over the uncommitted limit")
	}
	if errors.Is(dropped, context.DeadlineExceeded) {
		t.Fatalf("proposal waited out its context (%v), want the leader's refusal", dropped)
	}
	c.Net.Heal()
	if err := <-first; err != nil {
		t.Fatalf("first proposal after heal: %v", err)
	}
}
