package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvnode-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// kvnodeBinary builds the command once per test run.
func kvnodeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "kvnode")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one kvnode process; it can be killed and started again with
// the same arguments.
type proc struct {
	t     *testing.T
	httpc *http.Client
	https bool
	id    uint64
	args  []string
	raft  string
	redis string
	http  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *syncBuffer
	ready  chan struct{}
	exited chan struct{}
	err    error // exit status, valid after exited closes
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(kvnodeBinary(p.t), p.args...)
	p.cmd = cmd
	p.out, p.ready, p.exited = runProcess(p.t, cmd, func(err error) {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
	})
}

// runProcess starts cmd with its output copied to out. ready closes when
// it prints a line "ready"; exited closes once it has exited and setErr
// has received its exit status.
func runProcess(t testing.TB, cmd *exec.Cmd, setErr func(error)) (out *syncBuffer, ready, exited chan struct{}) {
	t.Helper()
	out = &syncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, exited = make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			if sc.Text() == "ready" && !seen {
				seen = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
		setErr(cmd.Wait())
		close(exited)
	}()
	return out, ready, exited
}

func (p *proc) waitReady(timeout time.Duration) {
	p.t.Helper()
	p.mu.Lock()
	ready, exited, out := p.ready, p.exited, p.out
	p.mu.Unlock()
	select {
	case <-ready:
	case <-exited:
		p.t.Fatalf("member %d exited before ready: %v\n%s", p.id, p.exitErr(), out)
	case <-time.After(timeout):
		p.t.Fatalf("member %d not ready within %v\n%s", p.id, timeout, out)
	}
}

func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// signal sends sig and waits for the process to exit.
func (p *proc) signal(sig syscall.Signal) error {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return p.exitErr()
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
		p.t.Errorf("member %d did not exit on %v", p.id, sig)
	}
	return p.exitErr()
}

func (p *proc) kill() { p.signal(syscall.SIGKILL) }

func (p *proc) client() *redis.Client {
	o := &redis.Options{
		Addr: p.redis, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 6 * time.Second, WriteTimeout: 2 * time.Second,
		PoolSize: 4,
	}
	if p.https { // the Redis port speaks TLS too
		o.TLSConfig = p.httpc.Transport.(*http.Transport).TLSClientConfig
	}
	return redis.NewClient(o)
}

// cluster is a set of kvnode processes on free ports.
type cluster struct {
	t     *testing.T
	mu    sync.Mutex
	procs map[uint64]*proc
	dir   string
	extra []string
	httpc *http.Client // https with the members' certificate under mutual TLS
	https bool
}

// newCluster starts n members (ids 1..n) as separate processes and waits
// until each has printed "ready". Every process is killed at test end.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, procs: map[uint64]*proc{}, dir: t.TempDir(), extra: extra, httpc: &http.Client{Timeout: 40 * time.Second}}
	if i := slices.Index(extra, "-tls-ca"); i >= 0 {
		tlsCfg, err := loadTLS(&options{tlsCA: extra[i+1], tlsCert: extra[i+3], tlsKey: extra[i+5]})
		if err != nil {
			t.Fatal(err)
		}
		c.httpc.Transport = &http.Transport{TLSClientConfig: tlsCfg}
		c.https = true
	}
	ports := freePorts(t, 3*n)
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d", i+1, ports[3*i]))
	}
	for i := range n {
		id := uint64(i + 1)
		p := c.newProc(id, ports[3*i:3*i+3], append([]string{"-peers", strings.Join(peers, ",")}, extra...))
		p.start()
	}
	for _, p := range c.procs {
		p.waitReady(60 * time.Second)
	}
	return c
}

func (c *cluster) newProc(id uint64, ports []int, args []string) *proc {
	p := &proc{
		t: c.t, id: id, httpc: c.httpc, https: c.https,
		raft:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		redis: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		http:  fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	p.args = append([]string{"-id", strconv.FormatUint(id, 10), "-raft", p.raft, "-redis", p.redis, "-http", p.http,
		"-data", filepath.Join(c.dir, strconv.FormatUint(id, 10)), "-timeout", "3s"}, args...)
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()
	c.t.Cleanup(func() {
		p.kill()
		if c.t.Failed() {
			c.t.Logf("member %d output:\n%s", id, p.out)
		}
	})
	return p
}

// status reads GET /status of member p.
func (p *proc) status() (statusJSON, error) {
	var s statusJSON
	resp, err := p.httpc.Get(p.url("/status"))
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// leader waits until some running member reports itself leader.
func (c *cluster) leader() *proc {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range c.memberIDs() {
			p := c.procOf(id)
			if s, err := p.status(); err == nil && s.Role == "leader" && s.Leader == p.id {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond) // polling another process; nothing to wait on
	}
	c.t.Fatal("no leader within 20s")
	return nil
}

// url is the address of an HTTP path on member p.
func (p *proc) url(path string) string {
	if p.https {
		return "https://" + p.http + path
	}
	return "http://" + p.http + path
}

func (p *proc) httpDo(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, p.url(path), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := p.httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}
