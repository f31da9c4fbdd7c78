package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIdempotentWritesAcrossFailover: a write retried under the same
// idempotency key, on another member after the leader was killed and
// restarted and leadership moved, applies once and returns the first
// reply; the record survives snapshots (taken every 20 entries here).
func TestIdempotentWritesAcrossFailover(t *testing.T) {
	c := newCluster(t, 3, "-snapshot-entries", "20")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.leader()
	cl := l.client()
	first, err := cl.Do(ctx, "IDEMPOTENT", "op-1", "INCRBY", "ctr", "5").Int64()
	if err != nil || first != 5 {
		t.Fatalf("first IDEMPOTENT INCRBY: %d, %v", first, err)
	}
	if n, err := cl.Do(ctx, "IDEMPOTENT", "op-1", "INCRBY", "ctr", "5").Int64(); err != nil || n != 5 {
		t.Fatalf("immediate retry: %d, %v", n, err)
	}
	put := func(p *proc, key, val string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, p.url("/kv/"+key), strings.NewReader(val))
		req.Header.Set(idempotencyHeader, "put-1")
		resp, err := p.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		fmt.Fprint(&b, resp.Status)
		return resp.StatusCode, b.String()
	}
	if code, s := put(l, "h", "first"); code != 200 {
		t.Fatalf("PUT: %s", s)
	}
	// Enough writes for several snapshots and log compaction.
	for i := range 100 {
		if err := cl.Set(ctx, fmt.Sprintf("fill%d", i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	l.kill()
	l.start()
	l.waitReady(30 * time.Second)
	nl := c.leader()
	if code, body, err := nl.httpDo("POST", "/transfer-leader", nil); err != nil || code != 200 {
		t.Fatalf("transfer: %d %s %v", code, body, err)
	}
	for _, id := range c.memberIDs() {
		p := c.procOf(id)
		pc := p.client()
		n, err := pc.Do(ctx, "IDEMPOTENT", "op-1", "INCRBY", "ctr", "5").Int64()
		if err != nil || n != 5 {
			t.Fatalf("retry on member %d: %d, %v (want the first reply, 5)", id, n, err)
		}
		if v, err := pc.Get(ctx, "ctr").Result(); err != nil || v != "5" {
			t.Fatalf("ctr on member %d = %q, %v; want applied once", id, v, err)
		}
		if code, s := put(p, "h", "second"); code != 200 {
			t.Fatalf("PUT retry on %d: %s", id, s)
		}
		if v, err := pc.Get(ctx, "h").Result(); err != nil || v != "first" {
			t.Fatalf("h on member %d = %q, %v; want the first PUT only", id, v, err)
		}
		// A new key is a new write.
		if n, err := pc.Do(ctx, "IDEMPOTENT", fmt.Sprintf("op-%d", id+1), "INCRBY", "ctr2", "1").Int64(); err != nil || n != int64(id) {
			t.Fatalf("new key on member %d: %d, %v", id, n, err)
		}
		pc.Close()
	}
}
