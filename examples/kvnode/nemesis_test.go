//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"
)

// The nemesis test runs real kvnode processes, each in its own network
// namespace joined to the others by a bridge in a namespace of its own, and
// injects faults while clients run GET/SET/APPEND against random members:
// kill -9 and restart, SIGSTOP/SIGCONT, network partitions (blackhole
// routes between namespaces), clock skew (restart with -clock-skew), and
// disk damage (the tail of the newest WAL segment cut off while the member
// is down). At the end every history is checked with porcupine, and every
// acknowledged APPEND must be in the final value of its key.
//
// It needs root (network namespaces) and skips otherwise. The members'
// addresses are link-local (169.254.77.0/24) on a bridge that no physical
// interface is attached to, so no packet leaves the machine; clients reach
// each member's Redis port on 127.0.0.1 inside its namespace, so partitions
// cut members from each other, not from their clients.
//
// A member that refuses to start after its WAL was damaged (the expected
// outcome: it detects the loss) is removed from the group, its data wiped,
// and it joins again under a new id.
//
//	DISTKIT_NEMESIS=1 go test -run TestNemesis -v ./examples/kvnode/   # 15 s of faults, ~40 s in all
//	DISTKIT_NEMESIS_DURATION=5m go test -run TestNemesis -v -timeout 30m ./examples/kvnode/
//	DISTKIT_NEMESIS_FAULTS=disk,kill ...                  # only some kinds of fault

const (
	nemesisMembers  = 3
	nemesisSubnet   = "169.254.77."
	nemesisRaftPort = "7000"
	nemesisRedis    = "127.0.0.1:6379"
	nemesisHTTPPort = "8080"
)

// netLab is a set of network namespaces: one per member and a switch.
type netLab struct {
	t      *testing.T
	prefix string
	sw     string
	ns     []string // by member index
	cuts   map[[2]int]bool
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetLab creates the namespaces, or skips the test where it cannot.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if os.Getenv("DISTKIT_NEMESIS") == "" && os.Getenv("DISTKIT_NEMESIS_DURATION") == "" {
		t.Skip("nemesis: builds network namespaces as root; set DISTKIT_NEMESIS=1 (or DISTKIT_NEMESIS_DURATION) to run it")
	}
	if os.Geteuid() != 0 {
		t.Skip("nemesis: needs root for network namespaces (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("nemesis: the ip command (iproute2) is not installed")
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("dkn%d", os.Getpid()), cuts: map[[2]int]bool{}}
	l.sw = l.prefix + "sw"
	if err := ipCmd("netns", "add", l.sw); err != nil {
		t.Skipf("nemesis: cannot create network namespaces here: %v", err)
	}
	t.Cleanup(l.close)
	setup := [][]string{
		{"-n", l.sw, "link", "set", "lo", "up"},
		{"-n", l.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", l.sw, "link", "set", "br0", "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("%sm%d", l.prefix, i+1)
		if err := ipCmd("netns", "add", ns); err != nil {
			t.Skipf("nemesis: %v", err)
		}
		l.ns = append(l.ns, ns)
		port := fmt.Sprintf("p%d", i+1)
		setup = append(setup,
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", l.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", l.sw, "link", "set", port, "master", "br0"},
			[]string{"-n", l.sw, "link", "set", port, "up"},
			[]string{"-n", ns, "addr", "add", l.addr(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, args := range setup {
		if err := ipCmd(args...); err != nil {
			t.Skipf("nemesis: cannot build the namespaces' network here: %v", err)
		}
	}
	return l
}

func (l *netLab) addr(i int) string { return fmt.Sprint(nemesisSubnet, i+1) }

func (l *netLab) close() {
	for _, ns := range append(l.ns, l.sw) {
		if err := ipCmd("netns", "del", ns); err != nil {
			l.t.Logf("nemesis: %v", err)
		}
	}
}

// cut drops all traffic between members i and j, both ways.
func (l *netLab) cut(i, j int) error {
	if l.cuts[[2]int{i, j}] {
		return nil
	}
	if err := ipCmd("-n", l.ns[i], "route", "add", "blackhole", l.addr(j)+"/32"); err != nil {
		return err
	}
	if err := ipCmd("-n", l.ns[j], "route", "add", "blackhole", l.addr(i)+"/32"); err != nil {
		return err
	}
	l.cuts[[2]int{i, j}] = true
	return nil
}

// heal removes every cut.
func (l *netLab) heal() error {
	for c := range l.cuts {
		i, j := c[0], c[1]
		if err := ipCmd("-n", l.ns[i], "route", "del", "blackhole", l.addr(j)+"/32"); err != nil {
			return err
		}
		if err := ipCmd("-n", l.ns[j], "route", "del", "blackhole", l.addr(i)+"/32"); err != nil {
			return err
		}
		delete(l.cuts, c)
	}
	return nil
}

// nsDialer dials from inside a network namespace: a goroutine locked to an
// OS thread that entered the namespace creates every socket (a socket
// belongs to the namespace of the thread that created it). The thread is
// never unlocked, so it exits with the goroutine instead of returning to
// the scheduler inside the namespace.
type nsDialer struct {
	reqs chan dialReq
	done chan struct{}
	wg   sync.WaitGroup
}

type dialReq struct {
	ctx           context.Context
	network, addr string
	res           chan dialRes
}

type dialRes struct {
	c   net.Conn
	err error
}

func newNSDialer(ns string) (*nsDialer, error) {
	d := &nsDialer{reqs: make(chan dialReq), done: make(chan struct{})}
	errc := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		runtime.LockOSThread() // never unlocked, see above
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- nil
		for {
			select {
			case r := <-d.reqs:
				dl := net.Dialer{Timeout: time.Second}
				c, err := dl.DialContext(r.ctx, r.network, r.addr)
				r.res <- dialRes{c, err}
			case <-d.done:
				return
			}
		}
	}()
	if err := <-errc; err != nil {
		d.wg.Wait()
		return nil, err
	}
	return d, nil
}

func (d *nsDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r := dialReq{ctx: ctx, network: network, addr: addr, res: make(chan dialRes, 1)}
	select {
	case d.reqs <- r:
	case <-d.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := <-r.res
	return res.c, res.err
}

func (d *nsDialer) close() {
	close(d.done)
	d.wg.Wait()
}

// nmember is one kvnode process in its namespace.
type nmember struct {
	t     *testing.T
	idx   int
	id    uint64
	ns    string
	addr  string // raft and HTTP address
	peers string
	data  string
	args  []string
	dial  *nsDialer
	httpc *http.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	out     *syncBuffer
	ready   chan struct{}
	exited  chan struct{}
	err     error
	stopped bool // SIGSTOPped
	dead    bool // refused to start: left down
}

// start runs the member with its arguments plus extra.
func (m *nmember) start(extra ...string) {
	m.t.Helper()
	args := append([]string{"netns", "exec", m.ns, kvnodeBinary(m.t)}, m.args...)
	cmd := exec.Command("ip", append(args, extra...)...)
	out, ready, exited := runProcess(m.t, cmd, func(err error) {
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
	})
	m.mu.Lock()
	m.cmd, m.out, m.ready, m.exited, m.stopped = cmd, out, ready, exited, false
	m.mu.Unlock()
}

// awaitReady waits until the member is ready; it returns an error if it
// exited first or took longer than d.
func (m *nmember) awaitReady(d time.Duration) error {
	m.mu.Lock()
	ready, exited, out := m.ready, m.exited, m.out
	m.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-exited:
		m.mu.Lock()
		defer m.mu.Unlock()
		return fmt.Errorf("member %d exited: %v: %s", m.id, m.err, lastLines(out.String(), 3))
	case <-time.After(d):
		return fmt.Errorf("member %d not ready within %v", m.id, d)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func (m *nmember) exitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *nmember) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// signal sends sig; for SIGKILL it also waits for the exit.
func (m *nmember) signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	if sig == syscall.SIGSTOP {
		m.stopped = true
	}
	if sig == syscall.SIGCONT {
		m.stopped = false
	}
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-exited
	}
}

// role asks the member for its role over HTTP ("" when it does not answer).
func (m *nmember) role() string {
	resp, err := m.httpc.Get(m.httpURL("/status"))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var s statusJSON
	if json.NewDecoder(resp.Body).Decode(&s) != nil {
		return ""
	}
	return s.Role
}

func (m *nmember) httpURL(path string) string {
	return "http://" + m.addr + ":" + nemesisHTTPPort + path
}

// setArgs sets the command line of member id: a bootstrap member, or one
// joining through the member at joinAddr.
func (m *nmember) setArgs(id uint64, joinURL string) {
	m.id = id
	m.args = []string{"-id", fmt.Sprint(id), "-raft", m.addr + ":" + nemesisRaftPort,
		"-redis", nemesisRedis, "-http", m.addr + ":" + nemesisHTTPPort, "-data", m.data, "-timeout", "2s",
		// The members' namespaces form a private network of their own.
		"-protected-mode=false"}
	if joinURL == "" {
		m.args = append(m.args, "-peers", m.peers)
	} else {
		m.args = append(m.args, "-join", joinURL)
	}
}

func (m *nmember) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: nemesisRedis, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		Dialer:      m.dial.dial,
		DialTimeout: time.Second, ReadTimeout: 4 * time.Second, WriteTimeout: 2 * time.Second,
		PoolSize: 4,
	})
}

// damageWAL cuts the tail off the newest WAL segment: between 1 byte and
// 4 KiB of the records written last (segments are preallocated, so the
// written part ends at the last non-zero byte).
func damageWAL(dir string, rng *rand.Rand) (string, error) {
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(segs) == 0 {
		return "", fmt.Errorf("no WAL segment in %s: %v", dir, err)
	}
	sort.Strings(segs)
	seg := segs[len(segs)-1]
	b, err := os.ReadFile(seg)
	if err != nil {
		return "", err
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	if end == 0 {
		return "", fmt.Errorf("%s is empty", seg)
	}
	cut := max(0, end-1-rng.IntN(4096))
	if err := os.Truncate(seg, int64(cut)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %d of %d written bytes kept", filepath.Base(seg), cut, end), nil
}

// nemesisDuration is how long faults run: DISTKIT_NEMESIS_DURATION, else
// 15s (10s with -short).
func nemesisDuration(t *testing.T) time.Duration {
	if v := os.Getenv("DISTKIT_NEMESIS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("DISTKIT_NEMESIS_DURATION=%q: want a positive duration like 5m", v)
		}
		return d
	}
	if testing.Short() {
		return 10 * time.Second
	}
	return 15 * time.Second
}

// faultWeights are the fault kinds and how often each is chosen.
var faultWeights = map[string]int{"kill": 2, "pause": 2, "partition": 3, "skew": 2, "disk": 1}

// nemesisFaults is the fault kinds to inject: DISTKIT_NEMESIS_FAULTS (a
// comma-separated subset of faultWeights' keys), else all.
func nemesisFaults(t *testing.T) []string {
	v := os.Getenv("DISTKIT_NEMESIS_FAULTS")
	if v == "" {
		v = "kill,pause,partition,skew,disk"
	}
	var kinds []string
	for k := range strings.SplitSeq(v, ",") {
		if faultWeights[k] == 0 {
			t.Fatalf("DISTKIT_NEMESIS_FAULTS: unknown fault %q", k)
		}
		kinds = append(kinds, k)
	}
	return kinds
}

// pickFault chooses one of kinds by weight.
func pickFault(rng *rand.Rand, kinds []string) string {
	total := 0
	for _, k := range kinds {
		total += faultWeights[k]
	}
	r := rng.IntN(total)
	for _, k := range kinds {
		if r -= faultWeights[k]; r < 0 {
			return k
		}
	}
	return kinds[len(kinds)-1]
}

// nemesisClient runs GET/SET/APPEND against random members until ctx ends.
func nemesisClient(ctx context.Context, id int, members []*nmember, h *history, keys []string, acked *sync.Map, ok, failed *atomic.Int64) {
	rng := rand.New(rand.NewPCG(uint64(id), 11))
	clients := make([]*redis.Client, len(members))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		i := rng.IntN(len(members))
		if clients[i] == nil {
			clients[i] = members[i].client()
		}
		cl := clients[i]
		key := keys[rng.IntN(len(keys))]
		rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		call := h.now()
		var err error
		switch r := rng.IntN(10); {
		case r < 5:
			v, gerr := cl.Get(rctx, key).Result()
			err = gerr
			if gerr == nil || errors.Is(gerr, redis.Nil) {
				h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "get", key: key}, Call: call,
					Output: kvOut{value: v, missing: errors.Is(gerr, redis.Nil)}, Return: h.now()})
				err = nil
			}
		case r < 7:
			v := fmt.Sprintf("s%d.%d", id, seq)
			err = cl.Set(rctx, key, v, 0).Err()
			ret, out := h.now(), kvOut{}
			if err != nil {
				out.unknown, ret = true, 1<<62
			}
			h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "set", key: key, value: v}, Call: call, Output: out, Return: ret})
		default:
			v := fmt.Sprintf("[%d.%d]", id, seq)
			n, aerr := cl.Append(rctx, key, v).Result()
			err = aerr
			ret, out := h.now(), kvOut{value: fmt.Sprint(n)}
			if err != nil {
				out.unknown, ret = true, 1<<62
			} else {
				acked.Store(v, key)
			}
			h.add(porcupine.Operation{ClientId: id, Input: kvIn{op: "append", key: key, value: v}, Call: call, Output: out, Return: ret})
		}
		cancel()
		if err != nil {
			failed.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // back off from a failing member
			}
			continue
		}
		ok.Add(1)
	}
}

// quietRedis discards go-redis's own log lines.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// TestNemesis runs the fault-injection harness; see the comment above.
func TestNemesis(t *testing.T) {
	lab := newNetLab(t, nemesisMembers)
	redis.SetLogger(quietRedis{}) // failed dials are expected here; the history records them
	dur := nemesisDuration(t)
	dir := t.TempDir()
	var peers []string
	for i := range nemesisMembers {
		peers = append(peers, fmt.Sprintf("%d=%s:%s", i+1, lab.addr(i), nemesisRaftPort))
	}
	members := make([]*nmember, nemesisMembers)
	for i := range members {
		d, err := newNSDialer(lab.ns[i])
		if err != nil {
			t.Skipf("nemesis: cannot enter network namespace: %v", err)
		}
		m := &nmember{
			t: t, idx: i, ns: lab.ns[i], dial: d, addr: lab.addr(i), peers: strings.Join(peers, ","),
			data:  filepath.Join(dir, fmt.Sprint(i+1)),
			httpc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.dial}},
		}
		m.setArgs(uint64(i+1), "")
		members[i] = m
		// Registered after the lab's cleanup, so it runs first.
		t.Cleanup(func() {
			m.signal(syscall.SIGKILL)
			m.httpc.CloseIdleConnections()
			d.close()
			if t.Failed() {
				t.Logf("member %d output (last lines): %s", m.id, lastLines(m.out.String(), 30))
			}
		})
	}
	for _, m := range members {
		m.start()
	}
	for _, m := range members {
		if err := m.awaitReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}

	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5"}
	h := &history{start: time.Now()}
	var acked sync.Map
	var okOps, failedOps atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { nemesisClient(ctx, i, members, h, keys, &acked, &okOps, &failedOps) })
	}
	defer func() { cancel(); wg.Wait() }()

	faults := map[string]int{}
	note := func(format string, args ...any) {
		t.Logf("%6.1fs %s", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	pause := func(lo, hi time.Duration) {
		time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo)))) // the fault's duration: wall time is the point
	}
	alive := func() []*nmember {
		var out []*nmember
		for _, m := range members {
			if !m.dead {
				out = append(out, m)
			}
		}
		return out
	}
	// target picks the leader half of the time, else any member alive.
	target := func() *nmember {
		as := alive()
		if rng.IntN(2) == 0 {
			for _, m := range as {
				if m.role() == "leader" {
					return m
				}
			}
		}
		return as[rng.IntN(len(as))]
	}
	nextID := uint64(nemesisMembers + 1)
	// replace removes member m from the group through another member,
	// wipes its data and starts it again under a new id, joining the
	// group. It reports whether m runs again.
	replace := func(m *nmember) bool {
		var via *nmember
		for _, o := range members {
			if o != m && !o.dead && o.running() {
				via = o
				break
			}
		}
		if via == nil {
			return false
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			req, _ := http.NewRequest("DELETE", via.httpURL(fmt.Sprintf("/members/%d", m.id)), nil)
			resp, err := via.httpc.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			if time.Now().After(deadline) {
				note("could not remove member %d: %v", m.id, err)
				return false
			}
			time.Sleep(200 * time.Millisecond) // the group may be electing a leader
		}
		if err := os.RemoveAll(m.data); err != nil {
			t.Fatal(err)
		}
		old := m.id
		m.setArgs(nextID, via.httpURL(""))
		nextID++
		m.start()
		if err := m.awaitReady(60 * time.Second); err != nil {
			m.signal(syscall.SIGKILL)
			note("member %d (was %d) could not join: %v", m.id, old, err)
			return false
		}
		note("member %d removed; joined again as %d", old, m.id)
		faults["replaced"]++
		return true
	}
	// restart brings a member back. One that refuses to start is replaced
	// by a new member, or left down if that fails too.
	restart := func(m *nmember, why string, extra ...string) bool {
		m.start(extra...)
		err := m.awaitReady(30 * time.Second)
		if err == nil {
			return true
		}
		m.signal(syscall.SIGKILL)
		note("member %d refused to start after %s: %v", m.id, why, err)
		faults["refused-start"]++
		if !replace(m) {
			note("member %d left down", m.id)
			m.dead = true
		}
		return false
	}
	// checkCrashes restarts members that exited on their own.
	checkCrashes := func() {
		for _, m := range alive() {
			if !m.running() {
				note("member %d exited on its own: %v: %s", m.id, m.exitErr(), lastLines(m.out.String(), 3))
				faults["crashed"]++
				restart(m, "a crash")
			}
		}
	}

	kinds := nemesisFaults(t)
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		checkCrashes()
		if len(alive()) < 2 {
			note("fewer than 2 members alive: faults stop")
			break
		}
		m := target()
		switch pickFault(rng, kinds) {
		case "kill":
			faults["kill"]++
			note("kill -9 member %d", m.id)
			m.signal(syscall.SIGKILL)
			pause(500*time.Millisecond, 3*time.Second)
			restart(m, "kill -9")
		case "pause":
			faults["pause"]++
			note("SIGSTOP member %d", m.id)
			m.signal(syscall.SIGSTOP)
			pause(500*time.Millisecond, 4*time.Second)
			m.signal(syscall.SIGCONT)
		case "partition":
			faults["partition"]++
			others := []int{}
			for _, o := range members {
				if o != m {
					others = append(others, o.idx)
				}
			}
			if rng.IntN(2) == 0 {
				note("partition: member %d isolated", m.id)
				for _, o := range others {
					if err := lab.cut(m.idx, o); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				o := others[rng.IntN(len(others))]
				note("partition: link %d-%d cut", m.id, members[o].id)
				if err := lab.cut(m.idx, o); err != nil {
					t.Fatal(err)
				}
			}
			pause(time.Second, 5*time.Second)
			if err := lab.heal(); err != nil {
				t.Fatal(err)
			}
		case "skew":
			faults["skew"]++
			skew := []string{"8760h", "-8760h", "2s", "-2s"}[rng.IntN(4)]
			m.signal(syscall.SIGKILL)
			m.start("-clock-skew", skew)
			// A member whose clock is far off may never become ready: the
			// others refuse its timestamps, or it refuses theirs.
			err := m.awaitReady(5 * time.Second)
			note("clock skew %s on member %d (ready: %v)", skew, m.id, err == nil)
			pause(2*time.Second, 5*time.Second)
			m.signal(syscall.SIGKILL)
			restart(m, "its clock was fixed")
		case "disk":
			if len(alive()) < nemesisMembers {
				continue // damage one member at a time
			}
			faults["disk"]++
			m.signal(syscall.SIGKILL)
			what, err := damageWAL(filepath.Join(m.data, "raft", "wal"), rng)
			if err != nil {
				t.Fatalf("damage member %d's WAL: %v", m.id, err)
			}
			note("disk: member %d WAL tail cut (%s)", m.id, what)
			if restart(m, "disk damage") {
				// It lost log entries it had acknowledged and did not
				// notice: raft's safety assumes it never does.
				note("member %d started despite the lost tail of its log", m.id)
				faults["disk-undetected"]++
			}
		}
		pause(500*time.Millisecond, 1500*time.Millisecond)
	}

	// Heal everything and let the cluster settle before the final reads.
	if err := lab.heal(); err != nil {
		t.Fatal(err)
	}
	for _, m := range alive() {
		m.signal(syscall.SIGCONT)
	}
	checkCrashes()
	time.Sleep(2 * time.Second) // clients keep running while the group settles
	cancel()
	wg.Wait()

	// Final values, read linearizably through every member still up.
	up := map[uint64]*nmember{}
	var ids []uint64
	for _, m := range alive() {
		up[m.id] = m
		ids = append(ids, m.id)
	}
	final := readFinal(t, h, keys, ids, func(id uint64) *redis.Client { return up[id].client() }, 3*time.Second, 30)
	lost := lostAppends(t, h, final, &acked)
	// Linearizability, key by key.
	violations, undecided := 0, 0
	for _, part := range kvModel.Partition(h.ops) {
		res, info := porcupine.CheckOperationsVerbose(kvModel, part, 30*time.Second)
		switch res {
		case porcupine.Illegal:
			violations++
			path := filepath.Join(os.TempDir(), fmt.Sprintf("kvnode-nemesis-%s.html", part[0].Input.(kvIn).key))
			if porcupine.VisualizePath(kvModel, info, path) == nil {
				t.Logf("not linearizable: %s", path)
			}
		case porcupine.Unknown:
			undecided++
		}
	}
	counts := make([]string, 0, len(faults))
	for k, n := range faults {
		counts = append(counts, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(counts)
	t.Logf("nemesis summary: duration=%v faults[%s] ops=%d ok=%d failed=%d linearizability-violations=%d undecided-keys=%d acknowledged-writes-lost=%d",
		dur, strings.Join(counts, " "), len(h.ops), okOps.Load(), failedOps.Load(), violations, undecided, lost)
	if okOps.Load() == 0 {
		t.Error("no operation succeeded")
	}
	if violations > 0 {
		t.Errorf("%d keys have non-linearizable histories", violations)
	}
}
