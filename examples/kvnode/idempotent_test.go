package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
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
		if code, s := put(p, "h", "first"); code != 200 {
			t.Fatalf("PUT retry on %d: %s", id, s)
		}
		if code, s := put(p, "h", "second"); code != http.StatusUnprocessableEntity {
			t.Fatalf("PUT on %d with the key and another body: %s; want 422", id, s)
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

// TestInfoMetricsStaleReadsAndShutdown covers INFO's role line, the
// HTTP key-value and metrics endpoints, READONLY, the connection limit
// and a graceful SIGTERM.
func TestInfoMetricsStaleReadsAndShutdown(t *testing.T) {
	c := newCluster(t, 3, "-max-conns", "8")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.leader()
	for _, id := range c.memberIDs() {
		p := c.procOf(id)
		pc := p.client()
		info, err := pc.Info(ctx).Result()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		wantRole := "role:follower"
		if p == l {
			wantRole = "role:leader"
		}
		if !strings.Contains(info, wantRole+"\r\n") || !strings.Contains(info, fmt.Sprintf("leader_id:%d\r\n", l.id)) {
			t.Fatalf("INFO of member %d lacks %s / leader_id:%d:\n%s", id, wantRole, l.id, info)
		}
	}
	var f *proc
	for _, id := range c.memberIDs() {
		if p := c.procOf(id); p != l {
			f = p
			break
		}
	}
	// Expiry: TTL counts down against the replicated clock.
	lc := l.client()
	if err := lc.Set(ctx, "session", "x", 100*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if ttl, err := lc.Do(ctx, "TTL", "session").Int64(); err != nil || ttl < 98 || ttl > 100 {
		t.Fatalf("TTL = %d, %v", ttl, err)
	}
	if ttl, err := lc.Do(ctx, "TTL", "nothing").Int64(); err != nil || ttl != -2 {
		t.Fatalf("TTL of a missing key = %d, %v", ttl, err)
	}
	if err := lc.Set(ctx, "short", "x", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	gone := time.Now().Add(10 * time.Second)
	fc0 := f.client()
	defer fc0.Close()
	for {
		// The leader advances the replicated clock every second.
		n, err := fc0.Exists(ctx, "short").Result()
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(gone) {
			t.Fatalf("key with PX 300 still exists on member %d after 10s: %d %v", f.id, n, err)
		}
		time.Sleep(100 * time.Millisecond) // waiting for the other processes' replicated clock
	}
	lc.Close()
	if code, body, err := f.httpDo("PUT", "/kv/a/b", []byte("v1")); err != nil || code != 200 {
		t.Fatalf("PUT: %d %s %v", code, body, err)
	}
	if code, body, err := l.httpDo("GET", "/kv/a/b", nil); err != nil || code != 200 || string(body) != "v1" {
		t.Fatalf("GET: %d %q %v", code, body, err)
	}
	if code, _, _ := l.httpDo("GET", "/kv/missing", nil); code != 404 {
		t.Fatalf("GET of a missing key: %d", code)
	}
	code, body, err := f.httpDo("GET", "/metrics", nil)
	if err != nil || code != 200 || !strings.Contains(string(body), `kvnode_commands_total{command="info"}`) ||
		!strings.Contains(string(body), "kvnode_raft_applied_index") {
		t.Fatalf("metrics: %d %v\n%s", code, err, body)
	}

	// READONLY: the follower answers from its own state.
	fc := f.client()
	conn := fc.Conn()
	if err := conn.ReadOnly(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := conn.Get(ctx, "a/b").Result()
		if err == nil && v == "v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale read never caught up: %q %v", v, err)
		}
	}
	conn.Close()
	fc.Close()

	// The connection limit: beyond -max-conns, an error and a close.
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	refused := false
	for range 12 {
		cn, err := net.Dial("tcp", f.redis)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, cn)
		cn.Write([]byte("PING\r\n"))
		cn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		n, _ := cn.Read(buf)
		if strings.HasPrefix(string(buf[:n]), "-ERR max number of clients") {
			refused = true
			break
		}
		if string(buf[:n]) != "+PONG\r\n" {
			t.Fatalf("PING on connection %d: %q", len(open), buf[:n])
		}
	}
	if !refused {
		t.Fatal("no connection refused beyond -max-conns 8")
	}

	// SIGTERM stops every member gracefully.
	for _, id := range c.memberIDs() {
		if err := c.procOf(id).signal(syscall.SIGTERM); err != nil {
			t.Fatalf("member %d after SIGTERM: %v", id, err)
		}
	}
}
