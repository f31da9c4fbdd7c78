package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// joinProc starts member id as a new process that joins through via's
// HTTP address.
func (c *cluster) joinProc(id uint64, via *proc, scheme string, extra ...string) *proc {
	c.t.Helper()
	ports := freePorts(c.t, 3)
	args := append([]string{"-join", scheme + via.http}, c.extra...)
	p := c.newProc(id, ports, append(args, extra...))
	p.start()
	return p
}

// voters returns the voters and learners in member p's /status.
func voters(t *testing.T, p *proc) (vs, ls []uint64) {
	t.Helper()
	s, err := p.status()
	if err != nil {
		t.Fatalf("status of %d: %v", p.id, err)
	}
	for _, m := range s.Members {
		if m.Learner {
			ls = append(ls, m.ID)
		} else {
			vs = append(vs, m.ID)
		}
	}
	return vs, ls
}

// TestJoinAndRemoveUnderLoad grows a 3-member cluster to 5 with -join
// while clients write, then removes two members (one of them the leader),
// and checks the history.
func TestJoinAndRemoveUnderLoad(t *testing.T) {
	c := newCluster(t, 3)
	keys := []string{"j0", "j1", "j2"}
	h := &history{start: time.Now()}
	var acked sync.Map
	var okOps atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { loadClient(ctx, i, c, h, keys, &acked, &okOps) })
	}
	defer func() { cancel(); wg.Wait() }()
	progress := func() {
		t.Helper()
		target := okOps.Load() + 100
		deadline := time.Now().Add(30 * time.Second)
		for okOps.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("load made no progress: %d ops", okOps.Load())
			}
			time.Sleep(10 * time.Millisecond) // observing the load goroutines' counter
		}
	}
	progress()
	for _, id := range []uint64{4, 5} {
		p := c.joinProc(id, c.procOf(uint64(id-3)), "http://")
		p.waitReady(60 * time.Second)
		// -join adds it as a learner and promotes it once caught up.
		deadline := time.Now().Add(30 * time.Second)
		for {
			vs, _ := voters(t, c.leader())
			if fmt.Sprint(vs) == fmt.Sprint(c.memberIDs()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d not a voter: voters %v", id, vs)
			}
			time.Sleep(50 * time.Millisecond) // polling another process
		}
		progress()
	}
	if vs, _ := voters(t, c.procOf(1)); len(vs) != 5 {
		t.Fatalf("voters after joins: %v", vs)
	}
	// The joined member serves linearizable reads of earlier writes.
	cl := c.procOf(5).client()
	if err := cl.Set(ctx, "joined", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// Remove member 4 and then the leader, through a member that is
	// neither (the request is redirected to the leader).
	leader := c.leader()
	for _, victim := range []uint64{4, leader.id} {
		var via *proc
		for _, id := range c.memberIDs() {
			if id != victim && id != leader.id {
				via = c.procOf(id)
				break
			}
		}
		code, body, err := via.httpDo("DELETE", fmt.Sprintf("/members/%d", victim), nil)
		if err != nil || code != 200 {
			t.Fatalf("remove %d via %d: %d %s %v", victim, via.id, code, body, err)
		}
		c.forget(victim)
		progress()
	}
	cancel()
	wg.Wait()
	for _, id := range c.memberIDs() {
		vs, ls := voters(t, c.procOf(id))
		if len(vs) != 3 || len(ls) != 0 {
			t.Fatalf("member %d sees voters %v learners %v, want 3 voters", id, vs, ls)
		}
		if slices.Contains(vs, leader.id) {
			t.Fatalf("removed leader %d still listed", leader.id)
		}
	}
	t.Logf("%d operations, %d succeeded", len(h.ops), okOps.Load())
	checkHistory(t, c, h, keys, &acked)
}
