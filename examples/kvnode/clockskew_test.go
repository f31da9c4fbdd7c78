package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
	"github.com/redis/go-redis/v9"
)

// applyStamped applies cmd as a command the leader stamped at wall
// (Unix ms).
func applyStamped(t *testing.T, s *store, cmd []byte, wallMs int64) string {
	t.Helper()
	cmds := []consensus.Command{{Index: 1, Data: cmd, Timestamp: clock.Timestamp{Wall: wallMs * int64(time.Millisecond)}}}
	if err := s.Apply(cmds); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return string(cmds[0].Result)
}

// With timestamps, the proposer's clock carried in a command is ignored,
// and EX/PX count from the command's timestamp.
func TestStoreStampedTime(t *testing.T) {
	const year = 365 * 24 * 3600 * 1000
	s := newStore()
	applyStamped(t, s, setCmd(1000, "a", "1", setRelative, 3600_000), 1000) // expires at 3601000
	// A proposer a year ahead no longer moves the replicated clock.
	applyStamped(t, s, newCommand(opTick, 1000+year).b, 2000)
	if _, ok := getVal(s, "a"); !ok {
		t.Fatal("key expired by a proposer's clock")
	}
	applyStamped(t, s, newCommand(opTick, 0).b, 3600_999)
	if _, ok := getVal(s, "a"); !ok {
		t.Fatal("key expired before its time")
	}
	applyStamped(t, s, newCommand(opTick, 0).b, 3601_000)
	if _, ok := getVal(s, "a"); ok {
		t.Fatal("key outlived its time to live")
	}
	// A relative expiry must be positive.
	if got := applyStamped(t, s, setCmd(0, "b", "1", setRelative, 0), 3602_000); got != "-ERR kvnode: malformed command: time to live 0\r\n" {
		t.Fatalf("SET with a zero relative expiry = %q", got)
	}
	// Unstamped commands (an older log) keep the proposer's time.
	s2 := newStore()
	applyOne(t, s2, setCmd(1000, "a", "1", 0, 5000))
	applyOne(t, s2, newCommand(opTick, 5000).b)
	if _, ok := getVal(s2, "a"); ok {
		t.Fatal("unstamped commands ignored the proposer's time")
	}
}

// skewedMembers starts a 3-member cluster in this process whose members
// read the given clocks.
func skewedMembers(t *testing.T, clocks ...clock.Clock) []*member {
	t.Helper()
	dir := t.TempDir()
	var boot []consensus.Member
	var sets [][]net.Listener
	for i := range clocks {
		ls, err := listenAll("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sets = append(sets, ls)
		boot = append(boot, consensus.Member{ID: uint64(i + 1), Addr: ls[0].Addr().String()})
	}
	var members []*member
	for i, c := range clocks {
		ls := sets[i]
		m, err := startMember(memberConfig{
			ID: uint64(i + 1), Dir: fmt.Sprintf("%s/%d", dir, i+1), Bootstrap: boot,
			RaftLn: ls[0], RaftAddr: ls[0].Addr().String(), RedisLn: ls[1], HTTPLn: ls[2],
			Limits: limits{MaxValue: defaultMaxValue, MaxConns: 100, MaxRequest: defaultMaxRequest, Timeout: 2 * time.Second},
			Clock:  c,
		})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		t.Cleanup(func() { m.Close() })
	}
	return members
}

func redisOf(m *member) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: m.cfg.RedisLn.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		ReadTimeout: 5 * time.Second})
}

// A member whose clock is a year ahead, as follower and then as leader,
// cannot make keys set with EX 3600 expire early on any member, nor make
// its own EX 3600 keys live a year. With the old replicated clock (the
// largest proposer time seen) one write through it expired every key.
func TestSkewedClockCannotExpireKeys(t *testing.T) {
	const year = 365 * 24 * time.Hour
	members := skewedMembers(t, clock.Real, clock.Real, skewClock{Clock: clock.Real, skew: year})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, m := range members[:2] {
		if err := m.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	good, skewed := redisOf(members[0]), redisOf(members[2])
	defer good.Close()
	defer skewed.Close()
	if err := good.Set(ctx, "k1", "v", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	// retry writes through the skewed member while leadership settles.
	write := func(key string, ttl time.Duration) {
		t.Helper()
		for {
			err := skewed.Set(ctx, key, "v", ttl).Err()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("SET %s through the skewed member: %v", key, err)
			}
			time.Sleep(50 * time.Millisecond) // the member answers an error at once while no leader is known
		}
	}
	write("x", 0)
	write("k2", time.Hour)
	// The skewed member leads for a while: the others refuse its
	// timestamps and take leadership back.
	// (Asked through member 3 itself: the others may never see it lead,
	// as they may refuse its first append.)
	if err := members[2].node.TransferLeadership(ctx, 3); err != nil {
		t.Fatal(err)
	}
	write("y", 0)
	if err := members[2].node.WaitApplied(ctx, members[0].node.Status().Applied); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		cl := redisOf(m)
		for _, k := range []string{"k1", "k2"} {
			ttl, err := cl.TTL(ctx, k).Result()
			if err != nil || ttl <= 50*time.Minute || ttl > time.Hour {
				cl.Close()
				t.Fatalf("member %d: TTL %s = %v, %v; want just under 1h", i+1, k, ttl, err)
			}
		}
		if v, err := cl.Get(ctx, "y").Result(); err != nil || v != "v" {
			cl.Close()
			t.Fatalf("member %d: GET y = %q, %v", i+1, v, err)
		}
		cl.Close()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}
