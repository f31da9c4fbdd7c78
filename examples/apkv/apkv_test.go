package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/quorum"
)

type testCluster struct {
	nodes []*Node
	clk   *clocktest.Fake
	byNm  map[string]*Node
}

func startTestCluster(t *testing.T) *testCluster {
	t.Helper()
	clk := clocktest.NewFake(clocktest.Epoch)
	nodes, err := StartCluster(5, 0, NodeConfig{Clock: clk, HintInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("close %s: %v", n.Name(), err)
			}
		}
	})
	c := &testCluster{nodes: nodes, clk: clk, byNm: map[string]*Node{}}
	for _, n := range nodes {
		c.byNm[n.Name()] = n
	}
	return c
}

func (c *testCluster) partition(a, b []string) {
	for _, x := range a {
		c.byNm[x].Block(b...)
	}
	for _, x := range b {
		c.byNm[x].Block(a...)
	}
}

func (c *testCluster) heal() {
	for _, n := range c.nodes {
		n.Heal()
	}
	c.clk.Advance(time.Minute) // failed nodes are no longer avoided
}

func do(t *testing.T, method, url, causal, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if causal != "" {
		req.Header.Set(ContextHeader, causal)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (c *testCluster) put(t *testing.T, node, key, val, level, causal string) int {
	t.Helper()
	st, _, _ := do(t, http.MethodPut, fmt.Sprintf("http://%s/kv/%s?level=%s", c.byNm[node].Addr(), key, level), causal, val)
	return st
}

func (c *testCluster) get(t *testing.T, node, key, query string) (int, getResponse, string) {
	t.Helper()
	st, h, b := do(t, http.MethodGet, fmt.Sprintf("http://%s/kv/%s?%s", c.byNm[node].Addr(), key, query), "", "")
	var g getResponse
	if st == http.StatusOK || st == http.StatusNotFound {
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("GET %s: %v: %s", key, err, b)
		}
	}
	return st, g, h.Get(ContextHeader)
}

// converged fails unless every owner of key holds the same object.
func (c *testCluster) converged(t *testing.T, key string) {
	t.Helper()
	owners := c.nodes[0].ring.Lookup(key, quorum.DefaultN)
	var first uint64
	for i, o := range owners {
		obj, _ := c.byNm[o].local.Get(context.Background(), key)
		if i == 0 {
			first = obj.Digest()
		} else if obj.Digest() != first {
			t.Fatalf("key %s: owner %s differs from %s", key, o, owners[0])
		}
	}
}

func TestPartitionedWritesSurviveHealAndConverge(t *testing.T) {
	c := startTestCluster(t)
	left, right := []string{"n1", "n2"}, []string{"n3", "n4", "n5"}
	c.partition(left, right)

	const keys = 12
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		if st := c.put(t, "n1", k, "left-"+k, "one", ""); st != http.StatusNoContent {
			t.Fatalf("PUT %s on the minority side at ONE: status %d", k, st)
		}
		if st := c.put(t, "n3", k, "right-"+k, "quorum", ""); st != http.StatusNoContent {
			t.Fatalf("PUT %s on the majority side at QUORUM: status %d", k, st)
		}
	}
	// The minority side cannot write at ALL: three nodes are needed and only
	// two are reachable.
	if st := c.put(t, "n2", "k0", "never-acked", "all", ""); st != http.StatusServiceUnavailable {
		t.Fatalf("PUT at ALL on the minority side: status %d, want 503", st)
	}

	c.heal()
	for _, n := range c.nodes {
		if _, _, err := n.Sync(context.Background()); err != nil {
			t.Fatalf("sync %s: %v", n.Name(), err)
		}
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		c.converged(t, k)
		st, g, causal := c.get(t, "n5", k, "level=all")
		if st != http.StatusOK || causal == "" {
			t.Fatalf("GET %s: status %d, context %q", k, st, causal)
		}
		vals := slices.DeleteFunc(slices.Clone(g.Values), func(s string) bool { return s == "never-acked" })
		slices.Sort(vals)
		if want := []string{"left-" + k, "right-" + k}; !slices.Equal(vals, want) {
			t.Fatalf("GET %s after heal = %v, want both writes %v as siblings", k, g.Values, want)
		}
		// The client resolves the siblings with the context it read.
		if st := c.put(t, "n4", k, "merged-"+k, "all", causal); st != http.StatusNoContent {
			t.Fatalf("resolving PUT %s: status %d", k, st)
		}
		if _, g, _ := c.get(t, "n1", k, "level=all"); !slices.Equal(g.Values, []string{"merged-" + k}) {
			t.Fatalf("GET %s after resolve = %v", k, g.Values)
		}
		c.converged(t, k)
	}
}

func TestReadRepairConvergesStaleReplicas(t *testing.T) {
	c := startTestCluster(t)
	key := "stale"
	owners := c.nodes[0].ring.Lookup(key, quorum.DefaultN)
	// Only the first owner has the write, as if the others missed it.
	if _, err := c.byNm[owners[0]].local.Update(context.Background(), key, quorum.Write[string]{Value: "v"}); err != nil {
		t.Fatal(err)
	}
	st, g, _ := c.get(t, owners[1], key, "level=all&repair=sync")
	if st != http.StatusOK || !slices.Equal(g.Values, []string{"v"}) {
		t.Fatalf("GET = %d %v", st, g.Values)
	}
	c.converged(t, key)
}

func TestDeleteAndNotFound(t *testing.T) {
	c := startTestCluster(t)
	if st, g, _ := c.get(t, "n1", "nope", ""); st != http.StatusNotFound || len(g.Values) != 0 {
		t.Fatalf("GET absent = %d %+v", st, g)
	}
	if st := c.put(t, "n1", "d", "x", "quorum", ""); st != http.StatusNoContent {
		t.Fatal(st)
	}
	_, _, causal := c.get(t, "n2", "d", "level=quorum")
	st, _, _ := do(t, http.MethodDelete, fmt.Sprintf("http://%s/kv/d?level=all", c.byNm["n3"].Addr()), causal, "")
	if st != http.StatusNoContent {
		t.Fatalf("DELETE = %d", st)
	}
	if st, g, _ := c.get(t, "n4", "d", "level=all"); st != http.StatusNotFound || !g.Deleted {
		t.Fatalf("GET deleted = %d %+v", st, g)
	}
	// Bad input is refused, not crashed on.
	if st, _, _ := do(t, http.MethodPut, fmt.Sprintf("http://%s/kv/d", c.byNm["n1"].Addr()), "%%%", "x"); st != http.StatusBadRequest {
		t.Fatalf("PUT with a garbage context = %d, want 400", st)
	}
	if st := c.put(t, "n1", "d", "x", "seven", ""); st != http.StatusBadRequest {
		t.Fatalf("PUT with level=seven = %d, want 400", st)
	}
	if st := c.put(t, "n1", "d", "x", "9", ""); st != http.StatusBadRequest {
		t.Fatalf("PUT with level=9 > N = %d, want 400", st)
	}
}
