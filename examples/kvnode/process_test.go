package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
)

// The porcupine model: a register per key with GET, SET and APPEND.
type kvIn struct {
	op    string // get, set, append
	key   string
	value string
}

type kvOut struct {
	value   string // get: value; append: new length
	missing bool   // get: no such key
	unknown bool   // the call failed: it may or may not have applied
}

var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvIn).key
			by[k] = append(by[k], op)
		}
		keys := make([]string, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "\x00" }, // "\x00": missing
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(kvIn), output.(kvOut)
		cur := s
		if s == "\x00" {
			cur = ""
		}
		switch in.op {
		case "get":
			if out.missing {
				return s == "\x00", s
			}
			return s != "\x00" && out.value == s, s
		case "set":
			return true, in.value
		default: // append
			nv := cur + in.value
			return out.unknown || out.value == fmt.Sprint(len(nv)), nv
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvIn), output.(kvOut)
		return fmt.Sprintf("%s(%s,%q) -> %+v", in.op, in.key, in.value, out)
	},
}

// history records operations from many goroutines.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// loadClient runs GET/SET/APPEND against the cluster, moving to another
// member after an error, until ctx ends. It returns the appends that were
// acknowledged.
func loadClient(ctx context.Context, id int, c *cluster, h *history, keys []string, acked *sync.Map, okOps *atomic.Int64) {
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	ids := c.memberIDs()
	node := ids[id%len(ids)]
	var cl *redis.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		if cl == nil {
			p := c.procOf(node)
			if p == nil { // removed from the cluster
				ids = c.memberIDs()
				node = ids[id%len(ids)]
				p = c.procOf(node)
			}
			cl = p.client()
		}
		key := keys[rng.IntN(len(keys))]
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		call := h.now()
		var err error
		switch r := rng.IntN(10); {
		case r < 5:
			v, gerr := cl.Get(rctx, key).Result()
			ret := h.now()
			err = gerr
			if gerr == nil || errors.Is(gerr, redis.Nil) {
				h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "get", key: key}, Call: call,
					Output: kvOut{value: v, missing: errors.Is(gerr, redis.Nil)}, Return: ret})
				err = nil
			}
		case r < 7:
			v := fmt.Sprintf("s%d.%d", id, seq)
			err = cl.Set(rctx, key, v, 0).Err()
			ret := h.now()
			out := kvOut{}
			if err != nil {
				out.unknown, ret = true, 1<<62
			}
			h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "set", key: key, value: v}, Call: call, Output: out, Return: ret})
		default:
			v := fmt.Sprintf("[%d.%d]", id, seq)
			n, aerr := cl.Append(rctx, key, v).Result()
			err = aerr
			ret := h.now()
			out := kvOut{value: fmt.Sprint(n)}
			if err != nil {
				out.unknown, ret = true, 1<<62
			} else {
				acked.Store(v, key)
			}
			h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "append", key: key, value: v}, Call: call, Output: out, Return: ret})
		}
		cancel()
		if err != nil {
			cl.Close()
			cl = nil
			node = ids[(indexOf(ids, node)+1)%len(ids)]
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		okOps.Add(1)
	}
}

func indexOf(ids []uint64, id uint64) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return 0
}

func (c *cluster) memberIDs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := range c.procs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (c *cluster) procOf(id uint64) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[id]
}

// forget drops member id from the cluster's list (after removing it).
func (c *cluster) forget(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.procs, id)
}

// checkHistory checks h with porcupine, and that every acknowledged
// append is in the final value of its key, read linearizably on every
// member.
func checkHistory(t *testing.T, c *cluster, h *history, keys []string, acked *sync.Map) {
	t.Helper()
	ids := c.memberIDs()
	final := readFinal(t, h, keys, ids, func(id uint64) *redis.Client { return c.procOf(id).client() }, 10*time.Second, 1)
	lostAppends(t, h, final, acked)
	res, info := porcupine.CheckOperationsVerbose(kvModel, h.ops, 60*time.Second)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("kvnode-%s.html", t.Name()))
		if err := porcupine.VisualizePath(kvModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatal("history is not linearizable")
	case porcupine.Unknown:
		t.Log("porcupine timed out; history not fully checked")
	}
}

// readFinal reads every key through the member ids (each client
// linearizable), records the reads in h and returns the values, failing
// the test when members disagree. A read that fails is tried again, up to
// tries times half a second apart: a member may still be catching up.
func readFinal(t *testing.T, h *history, keys []string, ids []uint64, client func(uint64) *redis.Client, timeout time.Duration, tries int) map[string]string {
	t.Helper()
	final := map[string]string{}
	for _, id := range ids {
		cl := client(id)
		for _, k := range keys {
			var v string
			var err error
			call := h.now()
			for try := 0; try < tries; try++ {
				if try > 0 {
					time.Sleep(500 * time.Millisecond)
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				v, err = cl.Get(ctx, k).Result()
				cancel()
				if err == nil || errors.Is(err, redis.Nil) {
					break
				}
			}
			if err != nil && !errors.Is(err, redis.Nil) {
				cl.Close()
				t.Fatalf("final GET %s on member %d: %v", k, id, err)
			}
			h.add(porcupine.Operation{ClientId: 1000 + int(id), Input: kvIn{op: "get", key: k}, Call: call,
				Output: kvOut{value: v, missing: errors.Is(err, redis.Nil)}, Return: h.now()})
			if prev, ok := final[k]; ok && prev != v {
				t.Errorf("members disagree on %s: %q vs %q", k, prev, v)
			}
			final[k] = v
		}
		cl.Close()
	}
	return final
}

// lostAppends reports, and counts, the acknowledged appends (acked: value
// to key) missing from the final values. An append survives until a later
// SET replaces the key, so only appends no SET may have followed must be
// present; porcupine checks the exact interleaving.
func lostAppends(t *testing.T, h *history, final map[string]string, acked *sync.Map) int {
	t.Helper()
	lost := 0
	acked.Range(func(v, k any) bool {
		fv := final[k.(string)]
		if !strings.Contains(fv, v.(string)) && !setAfter(h, k.(string), v.(string)) {
			lost++
			t.Errorf("acknowledged append %s to %s lost (final %q)", v, k, fv)
		}
		return true
	})
	return lost
}

// setAfter reports whether a SET of key may have been applied after the
// append of v (so v need not be in the final value): any SET that had not
// returned before the append was called may take effect after it, even one
// that returned before the append did.
func setAfter(h *history, key, v string) bool {
	var appendCall int64 = -1
	for _, op := range h.ops {
		in := op.Input.(kvIn)
		if in.key == key && in.op == "append" && in.value == v {
			appendCall = op.Call
		}
	}
	for _, op := range h.ops {
		in := op.Input.(kvIn)
		if in.key == key && in.op == "set" && op.Return > appendCall {
			return true
		}
	}
	return false
}

// TestLinearizableUnderKillsAndTransfers runs a real Redis client load
// against 3 kvnode processes while members are killed with SIGKILL and
// restarted and leadership is transferred; the history must be
// linearizable and no acknowledged write may be lost.
func TestLinearizableUnderKillsAndTransfers(t *testing.T) {
	c := newCluster(t, 3)
	keys := []string{"k0", "k1", "k2", "k3"}
	h := &history{start: time.Now()}
	var acked sync.Map
	var okOps atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { loadClient(ctx, i, c, h, keys, &acked, &okOps) })
	}
	defer func() { cancel(); wg.Wait() }()

	waitOps := func(n int64) {
		t.Helper()
		target := okOps.Load() + n
		deadline := time.Now().Add(30 * time.Second)
		for okOps.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("load made no progress: %d ops", okOps.Load())
			}
			time.Sleep(10 * time.Millisecond) // observing another goroutine's counter
		}
	}
	waitOps(200)
	// 1. kill -9 a follower, restart it.
	l := c.leader()
	var f *proc
	for _, id := range c.memberIDs() {
		if p := c.procOf(id); p != l {
			f = p
			break
		}
	}
	f.kill()
	waitOps(200)
	f.start()
	f.waitReady(30 * time.Second)
	waitOps(200)
	// 2. kill -9 the leader, restart it.
	l = c.leader()
	l.kill()
	waitOps(200)
	l.start()
	l.waitReady(30 * time.Second)
	waitOps(200)
	// 3. transfer leadership away, twice.
	for range 2 {
		l = c.leader()
		code, body, err := l.httpDo("POST", "/transfer-leader", nil)
		if err != nil || code != 200 {
			t.Fatalf("transfer-leader: %d %s %v", code, body, err)
		}
		waitOps(200)
	}
	cancel()
	wg.Wait()
	t.Logf("%d operations, %d succeeded", len(h.ops), okOps.Load())
	checkHistory(t, c, h, keys, &acked)
}

// TestNoFlagsDemo runs the binary as a newcomer does (with -ports 0 so a
// busy port cannot fail CI): it must print every member's addresses and
// "ready", serve SET/GET on every member, and exit 0 on SIGINT.
func TestNoFlagsDemo(t *testing.T) {
	p := &proc{t: t, id: 0, args: []string{"-ports", "0"}}
	p.start()
	t.Cleanup(p.kill)
	p.waitReady(60 * time.Second)
	var addrs []string
	for line := range strings.SplitSeq(p.out.String(), "\n") {
		var id int
		var redisAddr, httpAddr, raftAddr string
		if n, _ := fmt.Sscanf(line, "member %d: redis %s http %s raft %s", &id, &redisAddr, &httpAddr, &raftAddr); n == 4 {
			addrs = append(addrs, redisAddr)
		}
	}
	if len(addrs) != 3 {
		t.Fatalf("want 3 members' addresses, got %q in:\n%s", addrs, p.out)
	}
	for i, a := range addrs {
		cl := redis.NewClient(&redis.Options{Addr: a, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		key := fmt.Sprintf("demo%d", i)
		if err := cl.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("SET on %s: %v", a, err)
		}
		// Linearizable reads: every member sees every earlier write.
		for j := range i + 1 {
			if v, err := cl.Get(ctx, fmt.Sprintf("demo%d", j)).Result(); err != nil || v != "v" {
				t.Fatalf("GET demo%d on %s = %q, %v", j, a, v, err)
			}
		}
		cancel()
		cl.Close()
	}
	if err := p.signal(syscall.SIGINT); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, p.out)
	}
}
