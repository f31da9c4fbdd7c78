package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

// miniRESP is the smallest server kvload must work against: it answers
// PING, SET, GET and INFO, and an error to every other command (HELLO
// included). It records the commands it saw.
type miniRESP struct {
	ln   net.Listener
	role string
	wg   sync.WaitGroup

	mu    sync.Mutex
	data  map[string]string
	seen  map[string]int
	conns map[net.Conn]bool
}

func startMiniRESP(t *testing.T, role string) *miniRESP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &miniRESP{ln: ln, role: role, data: map[string]string{}, seen: map[string]int{}, conns: map[net.Conn]bool{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *miniRESP) addr() string { return s.ln.Addr().String() }

func (s *miniRESP) count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[cmd]
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 || n > 16 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk header %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

func (s *miniRESP) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		cmd := strings.ToUpper(args[0])
		s.mu.Lock()
		s.seen[cmd]++
		switch {
		case cmd == "PING":
			w.WriteString("+PONG\r\n")
		case cmd == "SET" && len(args) == 3:
			s.data[args[1]] = args[2]
			w.WriteString("+OK\r\n")
		case cmd == "GET" && len(args) == 2:
			if v, ok := s.data[args[1]]; ok {
				fmt.Fprintf(w, "$%d\r\n%s\r\n", len(v), v)
			} else {
				w.WriteString("$-1\r\n")
			}
		case cmd == "INFO":
			info := "# Raft\r\nrole:" + s.role + "\r\n"
			fmt.Fprintf(w, "$%d\r\n%s\r\n", len(info), info)
		default:
			fmt.Fprintf(w, "-ERR unknown command '%s'\r\n", args[0])
		}
		s.mu.Unlock()
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

func TestKvloadAgainstAMinimalRESPServer(t *testing.T) {
	follower, leader := startMiniRESP(t, "follower"), startMiniRESP(t, "leader")
	endpoints := follower.addr() + "," + leader.addr()

	var out, errOut strings.Builder
	if code := run([]string{"-endpoints", endpoints, "-target", "leader", "-find-leader"}, &out, &errOut); code != 0 {
		t.Fatalf("-find-leader: exit %d: %s", code, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != leader.addr() {
		t.Fatalf("-find-leader printed %q, want %q", got, leader.addr())
	}

	out.Reset()
	args := []string{"-endpoints", endpoints, "-target", "leader", "-clients", "4", "-mix", "set=1,get=1",
		"-keys", "50", "-preload", "-1", "-warmup", "0s", "-duration", "200ms", "-label", "mini"}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rec load.Record
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatalf("last line is not a JSON record: %v\n%s", err, out.String())
	}
	if rec.System != "mini" || rec.Kind != "set=1,get=1" || rec.Clients != 4 || rec.Target != "leader" {
		t.Errorf("record settings %+v", rec)
	}
	if rec.Ops == 0 || rec.ErrorsAll != 0 || rec.Misses != 0 || rec.P999Ms == nil || rec.P50Ms > rec.P99Ms {
		t.Errorf("record figures: ops %d errors %d misses %d p50 %v p99 %v", rec.Ops, rec.ErrorsAll, rec.Misses, rec.P50Ms, rec.P99Ms)
	}
	if follower.count("SET")+follower.count("GET") != 0 {
		t.Errorf("-target leader sent %d SET/GET to the follower", follower.count("SET")+follower.count("GET"))
	}
	if leader.count("SET") < 50 || leader.count("GET") == 0 || leader.count("PING") != 4 {
		t.Errorf("leader saw SET %d GET %d PING %d; want >= 50 SETs (preload), some GETs, 4 PINGs",
			leader.count("SET"), leader.count("GET"), leader.count("PING"))
	}
	leader.mu.Lock()
	for cmd := range leader.seen {
		switch cmd {
		case "PING", "SET", "GET", "INFO", "HELLO":
		default:
			t.Errorf("kvload sent %s; a server must not need to answer it", cmd)
		}
	}
	leader.mu.Unlock()
}

func TestKvloadFailsFastWhenNothingListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var out, errOut strings.Builder
	code := run([]string{"-endpoints", addr, "-connect-timeout", "2s", "-duration", "1s"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "PING") {
		t.Errorf("exit %d, stderr %q; want 1 and a PING failure", code, errOut.String())
	}
}
