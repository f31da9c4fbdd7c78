package main

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestInProcessDemoClosesCleanly starts the demo cluster inside the test
// process, uses it, and closes it; goleak (TestMain) then checks that
// every goroutine of the members, their transports and servers stopped.
func TestInProcessDemoClosesCleanly(t *testing.T) {
	o, err := parseFlags([]string{"-ports", "0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	members, cleanup, err := startDemo(o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range members {
		if err := m.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range members {
		cl := redis.NewClient(&redis.Options{Addr: m.cfg.RedisLn.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		if err := cl.Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := cl.Get(ctx, "k").Int(); err != nil || v != i {
			t.Fatalf("member %d: GET k = %d, %v", m.cfg.ID, v, err)
		}
		cl.Close()
	}
	for _, m := range members {
		if err := m.Close(); err != nil {
			t.Fatalf("close member %d: %v", m.cfg.ID, err)
		}
	}
}
