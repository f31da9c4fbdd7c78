package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rawExchange writes req on a fresh connection to addr and returns what
// comes back until the server closes the connection or goes quiet.
func rawExchange(t *testing.T, addr string, req []byte) (reply string, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(req)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var buf bytes.Buffer
	_, err = io.Copy(&buf, c)
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	return buf.String(), !timedOut
}

// TestBadInput sends malformed RESP, oversized values, unknown commands
// and garbage on the raft port; each gets an error or a closed connection,
// every member keeps serving and no write is lost.
func TestBadInput(t *testing.T) {
	c := newCluster(t, 3, "-max-value", "1024", "-max-request", "65536")
	p := c.procOf(1)
	cl := p.client()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Set(ctx, "keep", "safe", 0).Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("malformed RESP", func(t *testing.T) {
		for _, req := range []string{
			"*2\r\n$3\r\nGET\r\n$-7\r\n",
			"*x\r\n",
			"*2\r\n$3\r\nGET\r\n:5\r\n",
			"\"unbalanced\r\n",
		} {
			reply, closed := rawExchange(t, p.redis, []byte(req))
			if !strings.HasPrefix(reply, "-ERR") && !closed {
				t.Errorf("%q: reply %q, connection open", req, reply)
			}
		}
	})
	t.Run("oversized values", func(t *testing.T) {
		big := strings.Repeat("x", 2048)
		if err := cl.Set(ctx, "big", big, 0).Err(); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
			t.Errorf("SET of 2 KiB with -max-value 1024: %v", err)
		}
		if err := cl.Append(ctx, "big", big).Err(); err == nil {
			t.Error("APPEND of 2 KiB accepted")
		}
		if err := cl.MSet(ctx, "a", "1", "big", big).Err(); err == nil {
			t.Error("MSET with a 2 KiB value accepted")
		}
		// A command far beyond the request limit gets an error and a
		// closed connection, without the server buffering all of it.
		huge := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n" + strings.Repeat("y", 64<<10)
		reply, closed := rawExchange(t, p.redis, []byte(huge+strings.Repeat("y", 192<<10)))
		if !closed || reply != "-ERR Protocol error: invalid bulk length\r\n" {
			t.Errorf("bulk longer than a request: reply %q, closed %v", reply, closed)
		}
		// Bulks that each fit but together exceed the request limit.
		over := "*4\r\n$3\r\nSET\r\n$40000\r\n" + strings.Repeat("k", 40000) + "\r\n$40000\r\n" + strings.Repeat("y", 40000)
		reply, closed = rawExchange(t, p.redis, []byte(over))
		if !closed || !strings.HasPrefix(reply, "-ERR request exceeds") {
			t.Errorf("oversized request: reply %q, closed %v", reply, closed)
		}
		if err := cl.Ping(ctx).Err(); err != nil {
			t.Errorf("after oversized input: %v", err)
		}
	})
	t.Run("unknown and unsupported commands keep the connection", func(t *testing.T) {
		conn := cl.Conn()
		defer conn.Close()
		for _, args := range [][]any{{"FOO"}, {"HELLO", "3"}, {"CLIENT", "SETINFO", "lib-name", "x"}, {"CONFIG", "GET", "save"},
			{"GET"}, {"SET", "k"}, {"SET", "k", "v", "EX", "-1"}, {"SET", "k", "v", "NX", "XX"}, {"INCRBY", "k", "x"},
			{"IDEMPOTENT", "id", "GET", "k"}} {
			err := conn.Do(ctx, args...).Err()
			if err == nil || !strings.HasPrefix(err.Error(), "ERR") {
				t.Errorf("%v: got %v, want an ERR reply", args, err)
			}
		}
		if v, err := conn.Get(ctx, "keep").Result(); err != nil || v != "safe" {
			t.Errorf("same connection afterwards: %q, %v", v, err)
		}
	})
	t.Run("pipelined commands are answered in order", func(t *testing.T) {
		pipe := cl.Pipeline()
		set := pipe.Set(ctx, "p", "1", 0)
		app := pipe.Append(ctx, "p", "2")
		get := pipe.Get(ctx, "p")
		bad := pipe.Do(ctx, "NOPE")
		incr := pipe.Incr(ctx, "p")
		pipe.Exec(ctx)
		if set.Err() != nil || app.Val() != 2 || get.Val() != "12" || bad.Err() == nil || incr.Val() != 13 {
			t.Errorf("pipeline: %v %v %v %v %v", set.Err(), app.Val(), get.Val(), bad.Err(), incr.Val())
		}
		// Writes in one pipeline are replicated together, in order, and
		// a refused one in the middle gets its own error.
		pipe = cl.Pipeline()
		var apps []*redis.IntCmd
		var big *redis.StatusCmd
		var incr3 *redis.IntCmd
		for i := range 20 {
			apps = append(apps, pipe.Append(ctx, "w", "ab"))
			if i == 10 {
				big = pipe.Set(ctx, "w2", strings.Repeat("z", 2048), 0) // over -max-value
				incr3 = pipe.Incr(ctx, "w3")
			}
		}
		pipe.Exec(ctx)
		if big.Err() == nil || incr3.Val() != 1 {
			t.Fatalf("pipelined SET over the limit: %v; INCR after it: %d, %v", big.Err(), incr3.Val(), incr3.Err())
		}
		for i, a := range apps {
			if a.Err() != nil || a.Val() != int64(2*(i+1)) {
				t.Fatalf("pipelined APPEND %d: %d, %v", i, a.Val(), a.Err())
			}
		}
		// Reads in one pipeline share one read barrier.
		reads := func() int {
			info, err := cl.Info(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			for line := range strings.SplitSeq(info, "\r\n") {
				if v, ok := strings.CutPrefix(line, "reads:"); ok {
					n, _ := strconv.Atoi(v)
					return n
				}
			}
			t.Fatal("INFO has no reads counter")
			return 0
		}
		before := reads()
		pipe = cl.Pipeline()
		var gets []*redis.StringCmd
		for range 50 {
			gets = append(gets, pipe.Get(ctx, "p"))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, g := range gets {
			if g.Val() != "13" {
				t.Fatalf("pipelined GET = %q", g.Val())
			}
		}
		if d := reads() - before; d < 1 || d > 3 {
			t.Errorf("50 pipelined GETs took %d read barriers, want 1 (a few if the pipeline was split)", d)
		}
	})
	t.Run("garbage on the raft port", func(t *testing.T) {
		huge := binary.BigEndian.AppendUint32(nil, 0xffffffff)
		for name, req := range map[string][]byte{
			"http":       []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5\r\n\r\n"),
			"huge frame": append(huge, make([]byte, 64)...),
			"zeros":      make([]byte, 4096),
			"text":       []byte(strings.Repeat("garbage\n", 100)),
		} {
			if reply, closed := rawExchange(t, p.raft, req); !closed {
				t.Errorf("%s: connection left open (reply %q)", name, reply)
			}
		}
	})

	// Every member still serves, and nothing was lost.
	for _, id := range c.memberIDs() {
		q := c.procOf(id)
		select {
		case <-q.exited:
			t.Fatalf("member %d exited: %v", id, q.exitErr())
		default:
		}
		qc := q.client()
		v, err := qc.Get(ctx, "keep").Result()
		qc.Close()
		if err != nil || v != "safe" {
			t.Fatalf("member %d: keep = %q, %v", id, v, err)
		}
	}
	if err := cl.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatalf("write after bad input: %v", err)
	}
}
