package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestJoinNeedsAnAdmin runs kvnode processes with -requirepass: a member
// joins with credentials in its -join URL; one without them is refused
// and the cluster does not change. The audit log records both.
func TestJoinNeedsAnAdmin(t *testing.T) {
	c := newCluster(t, 1, "-requirepass", "pw")
	p1 := c.procOf(1)
	members := func() ([]memberJSON, error) {
		req, _ := http.NewRequest("GET", p1.url("/status"), nil)
		req.SetBasicAuth("default", "pw")
		resp, err := p1.httpc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var s statusJSON
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			return nil, err
		}
		return s.Members, nil
	}

	rogue := c.joinProc(3, p1, "http://")
	select {
	case <-rogue.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("member without credentials still running after 60s")
	}
	if rogue.exitErr() == nil || !strings.Contains(rogue.out.String(), "401") {
		t.Fatalf("join without credentials: exit %v, output:\n%s", rogue.exitErr(), rogue.out)
	}
	c.forget(3)
	if ms, err := members(); err != nil || len(ms) != 1 {
		t.Fatalf("members after a refused join: %v, %v", ms, err)
	}

	p2 := c.joinProc(2, p1, "http://default:pw@")
	p2.waitReady(60 * time.Second)
	eventually(t, "member 2 a voter", func() error {
		ms, err := members()
		if err != nil {
			return err
		}
		if len(ms) != 2 || ms[1].ID != 2 || ms[1].Learner {
			return fmt.Errorf("members %+v", ms)
		}
		return nil
	})
	out := p1.out.String()
	for _, want := range []string{`"event":"member-add"`, `"outcome":"ok"`, `"target":2`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log of member 1 lacks %s:\n%s", want, out)
		}
	}
}
