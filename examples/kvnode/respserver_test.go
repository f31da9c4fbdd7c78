package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/redis/go-redis/v9"
)

// parseRESP parses a whole client stream; the commands are copies.
func parseRESP(data []byte, maxRequest int) ([][][]byte, error) {
	return parseRESPFrom(bytes.NewReader(data), maxRequest)
}

func parseRESPFrom(r io.Reader, maxRequest int) ([][][]byte, error) {
	cfg := respConfig{MaxRequest: maxRequest}.withDefaults()
	var p respParser
	p.init(&cfg)
	var out [][][]byte
	for {
		cmds, err := p.parse()
		for _, c := range cmds {
			cp := make([][]byte, len(c))
			for i, a := range c {
				cp[i] = slices.Clone(a)
			}
			out = append(out, cp)
		}
		if err != nil {
			return out, err
		}
		p.compact()
		if err := p.fill(r); err != nil {
			if errors.Is(err, io.EOF) {
				if p.partial() {
					return out, io.ErrUnexpectedEOF
				}
				return out, nil
			}
			return out, err
		}
	}
}

func replyOf(err error) string {
	var pe *respProtocolError
	if errors.As(err, &pe) {
		return string(pe.reply)
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRESPParser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // commands joined by "|", arguments by ","
		err  string
	}{
		{in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", want: "SET,k,"},
		{in: "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", want: "PING|ECHO,hi"},
		{in: "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", want: "PING"},
		{in: "PING\r\n\r\n  \r\nECHO \"a b\\x41\\n\" 'c\\'d'\n", want: "PING|ECHO,a bA\n,c'd"},
		{in: "SET k\"x y\" v\r\n", want: "SET,kx y,v"},
		{in: "*1\r\n$9223372036854775800\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*1\r\n$2000000000\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*1\r\n$-1\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*1\r\n$01\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*1\r\n$1x\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*9223372036854775807\r\n", err: "-ERR Protocol error: invalid multibulk length\r\n"},
		{in: "*99999999999999999999999\r\n", err: "-ERR Protocol error: invalid multibulk length\r\n"},
		{in: "*x\r\n", err: "-ERR Protocol error: invalid multibulk length\r\n"},
		{in: "*1\n", err: "-ERR Protocol error: invalid multibulk length\r\n"},
		{in: "*" + strings.Repeat("1", 40), err: "-ERR Protocol error: too big mbulk count string\r\n"},
		{in: "*1\r\n$" + strings.Repeat("1", 40), err: "-ERR Protocol error: too big bulk count string\r\n"},
		{in: "*2\r\n$3\r\nGET\r\n:5\r\n", err: "-ERR Protocol error: expected '$', got ':'\r\n"},
		{in: "*2\r\n$3\r\nGET\r\n\r\n", err: "-ERR Protocol error: expected '$', got '\\x0d'\r\n"},
		{in: "*1\r\n$3\r\nGETX\r\n", err: "-ERR Protocol error: expected '\\r\\n' after bulk data\r\n"},
		{in: "\"unbalanced\r\n", err: "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{in: "'a'b\r\n", err: "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{in: "PING " + strings.Repeat("a", 70<<10), err: "-ERR Protocol error: too big inline request\r\n"},
		{in: "*2\r\n$3\r\nSET\r\n$60000\r\n", err: "-ERR Protocol error: invalid bulk length\r\n"},
		{in: "*3\r\n$3\r\nSET\r\n$20000\r\n" + strings.Repeat("v", 20000) + "\r\n$20000\r\n", err: "-ERR request exceeds the size limit\r\n"},
		// Commands before a protocol error are still returned.
		{in: "PING\r\n*x\r\n", want: "PING", err: "-ERR Protocol error: invalid multibulk length\r\n"},
	} {
		cmds, err := parseRESP([]byte(tc.in), 32<<10)
		var got []string
		for _, c := range cmds {
			var s []string
			for _, a := range c {
				s = append(s, string(a))
			}
			got = append(got, strings.Join(s, ","))
		}
		if g := strings.Join(got, "|"); g != tc.want || replyOf(err) != tc.err {
			t.Errorf("%.60q:\n got %q, %q\nwant %q, %q", tc.in, g, replyOf(err), tc.want, tc.err)
		}
	}
}

// TestRESPParserByteByByte: a stream delivered one byte per read parses
// to the same commands, and a long inline line arriving in pieces is
// scanned once (this took quadratic time and memory with redcon).
func TestRESPParserByteByByte(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING x\r\n*1\r\n$4\r\nPING\r\n"
	whole, err := parseRESP([]byte(in), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	bytewise, err := parseRESPFrom(iotest.OneByteReader(strings.NewReader(in)), 1<<20)
	if err != nil || fmt.Sprint(whole) != fmt.Sprint(bytewise) || len(whole) != 3 {
		t.Fatalf("byte by byte: %q, %v; whole: %q", bytewise, err, whole)
	}
	line := "PING" + strings.Repeat(" a", 32<<10-4) + "\r\n"
	start := time.Now()
	cmds, err := parseRESPFrom(iotest.OneByteReader(strings.NewReader(line)), 1<<20)
	if err != nil || len(cmds) != 1 || len(cmds[0]) != 32<<10-3 {
		t.Fatalf("inline line of 64 KiB: %d commands, %v", len(cmds), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("64 KiB inline line byte by byte took %v", d)
	}
}

// startTestMember starts a one-member cluster in this process.
func startTestMember(t testing.TB, l limits) *member {
	t.Helper()
	if l.MaxValue == 0 {
		l.MaxValue = defaultMaxValue
	}
	if l.MaxRequest == 0 {
		l.MaxRequest = defaultMaxRequest
	}
	if l.MaxConns == 0 {
		l.MaxConns = defaultMaxConns
	}
	if l.Timeout == 0 {
		l.Timeout = defaultTimeout
	}
	lns, err := listenAll("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raft := lns[0].Addr().String()
	m, err := startMember(memberConfig{
		ID: 1, Dir: filepath.Join(t.TempDir(), "m1"), Bootstrap: []consensus.Member{{ID: 1, Addr: raft}},
		RaftLn: lns[0], RaftAddr: raft, RedisLn: lns[1], HTTPLn: lns[2], Limits: l,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *member) redisAddr() string { return m.cfg.RedisLn.Addr().String() }

func testClient(t testing.TB, m *member) *redis.Client {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: m.redisAddr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitFor polls cond for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRESPHostileHeaders: the inputs that crashed or pinned redcon get
// an error reply at once and a closed connection, and the member keeps
// serving. With redcon, the first one panicked the process (an overflow
// in its reader), the second looped 2^63 times holding its connection
// slot, and the third waited for 2 GB.
func TestRESPHostileHeaders(t *testing.T) {
	m := startTestMember(t, limits{MaxConns: 3})
	cl := testClient(t, m)
	ctx := context.Background()
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$9223372036854775800\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*9223372036854775807\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n$2000000000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*2\r\n$3\r\nGET\r\n:5\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"PING\r\n\"unbalanced\r\n", "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"PING " + strings.Repeat("a ", 50<<10), "-ERR Protocol error: too big inline request\r\n"},
	} {
		// More attempts than connection slots: a slot held by a
		// connection that was refused would starve the last ones.
		for range 4 {
			start := time.Now()
			reply, closed := rawExchange(t, m.redisAddr(), []byte(tc.in))
			if reply != tc.want || !closed || time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("%.40q: reply %q, closed %v after %v; want %q and a closed connection", tc.in, reply, closed, time.Since(start), tc.want)
			}
		}
	}
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET after hostile headers: %v", err)
	}
	waitFor(t, 5*time.Second, "connection slots released", func() bool { return m.redis.open() <= 1 })
}

// TestRESPInlineLinear: a 64 KiB inline command with 32k arguments is
// answered at once (redcon needed minutes and gigabytes for 400 KB).
func TestRESPInlineLinear(t *testing.T) {
	m := startTestMember(t, limits{})
	line := "EXISTS" + strings.Repeat(" a", 32<<10-4) + "\r\n"
	start := time.Now()
	reply, _ := rawExchange(t, m.redisAddr(), []byte(line+"QUIT\r\n"))
	if reply != ":0\r\n+OK\r\n" || time.Since(start) > 5*time.Second {
		t.Fatalf("64 KiB inline EXISTS: %q after %v", reply, time.Since(start))
	}
}

// TestRESPReplyAndValueBounds: MGET whose reply would exceed the reply
// bound is refused without building it, and APPEND does not grow a value
// past -max-value. Before, both were served.
func TestRESPReplyAndValueBounds(t *testing.T) {
	const maxValue = 64 << 10
	m := startTestMember(t, limits{MaxValue: maxValue, MaxRequest: maxValue + 1024, MaxReply: 1 << 20})
	cl := testClient(t, m)
	ctx := context.Background()
	big := strings.Repeat("x", maxValue)
	if err := cl.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 20) // 20 × 64 KiB > 1 MiB
	for i := range keys {
		keys[i] = "big"
	}
	if err := cl.MGet(ctx, keys...).Err(); err == nil || err.Error() != "ERR reply too large" {
		t.Errorf("MGET of 1.25 MiB with a 1 MiB reply bound: %v", err)
	}
	if v, err := cl.MGet(ctx, keys[:10]...).Result(); err != nil || len(v) != 10 {
		t.Errorf("MGET of 640 KiB: %d values, %v", len(v), err)
	}
	if err := cl.Append(ctx, "big", "y").Err(); err == nil || !strings.Contains(err.Error(), "exceeds maximum allowed size") {
		t.Errorf("APPEND past -max-value: %v", err)
	}
	if n, err := cl.StrLen(ctx, "big").Result(); err == nil && n != maxValue {
		t.Errorf("value grew to %d", n)
	}
	if v, err := cl.Get(ctx, "big").Result(); err != nil || len(v) != maxValue {
		t.Errorf("GET big: %d bytes, %v", len(v), err)
	}
	if n, err := cl.Append(ctx, "small", strings.Repeat("z", maxValue)).Result(); err != nil || n != maxValue {
		t.Errorf("APPEND up to -max-value: %d, %v", n, err)
	}
	// SET ... GET in a pipeline answers with whole values: each is sent
	// on its own, so the replies stay within the bound.
	pipe := cl.Pipeline()
	var gets []*redis.Cmd
	for range 20 {
		gets = append(gets, pipe.Do(ctx, "SET", "big", big, "GET"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, g := range gets {
		if v, err := g.Text(); len(v) != maxValue {
			t.Fatalf("pipelined SET GET: %d bytes, %v", len(v), err)
		}
	}
}

// TestRESPMultiRefused: MULTI is refused and nothing queued after it is
// applied, so a client retrying the failed transaction cannot apply it
// twice. Before, MULTI and EXEC got errors and the SET in between applied.
func TestRESPMultiRefused(t *testing.T) {
	m := startTestMember(t, limits{})
	cl := testClient(t, m)
	ctx := context.Background()
	_, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx", "1", 0)
		p.Incr(ctx, "ctr")
		return nil
	})
	if err == nil {
		t.Fatal("MULTI/EXEC succeeded")
	}
	if n, err := cl.Exists(ctx, "tx", "ctr").Result(); err != nil || n != 0 {
		t.Fatalf("after a refused transaction: %d of its keys exist, %v", n, err)
	}
	reply, _ := rawExchange(t, m.redisAddr(), []byte("EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nSET a 1\r\nDISCARD\r\nSET b 1\r\nEXISTS a b\r\nQUIT\r\n"))
	want := "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n" +
		"-ERR MULTI is not supported by kvnode; commands up to EXEC or DISCARD will be refused\r\n" +
		"-ERR MULTI calls can not be nested\r\n" +
		"-ERR command refused after MULTI (transactions are not supported by kvnode); nothing was executed\r\n" +
		"+OK\r\n+OK\r\n:1\r\n+OK\r\n"
	if reply != want {
		t.Errorf("got\n%q\nwant\n%q", reply, want)
	}
}

// TestRESPTimeouts: a request left half-sent is dropped after the request
// timeout, its connection slot freed, while an idle connection with no
// partial request stays open; a client that does not read its replies
// is closed after the write timeout. With redcon both stayed open.
func TestRESPTimeouts(t *testing.T) {
	m := startTestMember(t, limits{MaxConns: 4, RequestTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	cl := testClient(t, m)
	ctx := context.Background()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", m.redisAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	idle := dial()
	half := dial()
	half.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc"))
	half.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := half.Read(make([]byte, 10)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("half-sent request: read %d, %v; want the connection closed", n, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("half-sent request dropped after %v", d)
	}
	idle.Write([]byte("PING\r\n"))
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(idle).ReadString('\n'); line != "+PONG\r\n" {
		t.Errorf("idle connection after the request timeout: %q, %v", line, err)
	}

	// A pipeline of GETs whose replies the client never reads.
	val := strings.Repeat("v", 256<<10)
	if err := cl.Set(ctx, "v", val, 0).Err(); err != nil {
		t.Fatal(err)
	}
	stuck := dial()
	stuck.(*net.TCPConn).SetReadBuffer(4096)
	stuck.Write(bytes.Repeat([]byte("GET v\r\n"), 200))
	timeouts := m.redis.stats.timeouts.Load()
	waitFor(t, 10*time.Second, "a client not reading its replies is closed", func() bool {
		return m.redis.stats.timeouts.Load() > timeouts && m.redis.open() <= 3
	})
	if p := m.redis.stats.peakOutput.Load(); p > 2*(respDefaultMaxPending+256<<10+64) {
		t.Errorf("output buffer reached %d bytes", p)
	}
	if err := cl.Get(ctx, "v").Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRESPConnectionLimit: a client over -max-conns is refused; the slot
// comes back when a client leaves.
func TestRESPConnectionLimit(t *testing.T) {
	m := startTestMember(t, limits{MaxConns: 2})
	a, _ := net.Dial("tcp", m.redisAddr())
	b, _ := net.Dial("tcp", m.redisAddr())
	defer b.Close()
	waitFor(t, 5*time.Second, "two connections served", func() bool { return m.redis.open() == 2 })
	if reply, closed := rawExchange(t, m.redisAddr(), []byte("PING\r\n")); reply != "-ERR max number of clients reached\r\n" || !closed {
		t.Fatalf("third client: %q, closed %v", reply, closed)
	}
	a.Close()
	waitFor(t, 5*time.Second, "slot released", func() bool { return m.redis.open() == 1 })
	if reply, _ := rawExchange(t, m.redisAddr(), []byte("PING\r\nQUIT\r\n")); reply != "+PONG\r\n+OK\r\n" {
		t.Fatalf("after a client left: %q", reply)
	}
}

// raiseFDLimit lets the process hold n more descriptors.
func raiseFDLimit(t testing.TB, n uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	if rl.Cur >= n {
		return
	}
	old := rl
	rl.Cur = min(n, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < n {
		t.Skipf("cannot raise the descriptor limit to %d (hard limit %d): %v", n, rl.Max, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestRESPUnderHostileLoad: 1,000 slow and malformed connections
// (half-sent commands, huge announced lengths, slowloris, oversized
// inline lines, clients that never read) do not stop a well-behaved
// client: its SET/GET latency stays bounded, the heap grows by less than
// 256 MiB, and every hostile connection is closed within the timeouts.
func TestRESPUnderHostileLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	raiseFDLimit(t, 4096)
	m := startTestMember(t, limits{RequestTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	cl := testClient(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.Set(ctx, "big", strings.Repeat("b", 256<<10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := heapInUse()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // heap sampler
		defer wg.Done()
		for {
			peakMaxU(&peak, heapInUse())
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	const attackers = 1000
	attacks := []func(c net.Conn){
		func(c net.Conn) { // half-sent big SET, then stall
			c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$900000\r\n"))
			c.Write(make([]byte, 64<<10))
			io.Copy(io.Discard, c)
		},
		func(c net.Conn) { // slowloris: a byte every 100 ms
			for _, b := range []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
		func(c net.Conn) { // huge announced lengths, reconnecting
			for i := range 3 {
				c.Write([]byte([]string{"*1\r\n$9223372036854775800\r\n", "*9223372036854775807\r\n", "*1\r\n$2000000000\r\n"}[i]))
				io.Copy(io.Discard, c)
				c.Close()
				var err error
				if c, err = net.Dial("tcp", m.redisAddr()); err != nil {
					return
				}
			}
			c.Close()
		},
		func(c net.Conn) { // an inline line with no end
			c.Write(bytes.Repeat([]byte("PING "), 16<<10))
			io.Copy(io.Discard, c)
		},
		func(c net.Conn) { // never reads its replies
			c.(*net.TCPConn).SetReadBuffer(4096)
			c.Write(bytes.Repeat([]byte("GET big\r\n"), 30))
			<-stop
		},
	}
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", m.redisAddr())
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			kind := i % 4
			if i%100 == 0 {
				kind = 4 // a few clients that never read
			}
			attacks[kind](c)
		}()
	}

	// The well-behaved client, for 6 seconds.
	var lat []time.Duration
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		start := time.Now()
		if err := cl.Set(ctx, "good", "v", 0).Err(); err != nil {
			t.Fatalf("SET under load: %v", err)
		}
		if v, err := cl.Get(ctx, "good").Result(); err != nil || v != "v" {
			t.Fatalf("GET under load: %q, %v", v, err)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, 15*time.Second, "hostile connections closed", func() bool { return m.redis.open() <= 1+attackers/5 })
	close(stop)
	wg.Wait()
	waitFor(t, 20*time.Second, "every hostile connection closed", func() bool { return m.redis.open() <= 1 })

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	growth := int64(peak.Load()) - int64(base)
	syncMax := m.node.Status().Stats.SyncMax
	t.Logf("well-behaved SET+GET: %d rounds, p50 %v, p99 %v, max %v (slowest WAL sync %v); heap growth %d MiB; peak input buffer %d KiB; server stats: %d accepted, %d protocol errors, %d timeouts",
		len(lat), p50, p99, worst, syncMax, growth>>20, m.redis.stats.peakInput.Load()>>10,
		m.redis.stats.accepted.Load(), m.redis.stats.protocolErrors.Load(), m.redis.stats.timeouts.Load())
	// Generous: on a loaded 2-core machine under -race, this process can
	// wait seconds for a CPU. Without the bounds the member dies (redcon's
	// reader panics on the first huge bulk length).
	if worst > 10*time.Second || len(lat) < 3 {
		t.Errorf("well-behaved client: %d rounds, worst %v", len(lat), worst)
	}
	if growth > 256<<20 {
		t.Errorf("heap grew by %d MiB under hostile load", growth>>20)
	}
}

func peakMaxU(v *atomic.Uint64, n uint64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// FuzzRESPServer drives a real member's RESP server with arbitrary byte
// streams: each must end with the connection closed within the bounds
// (no hang, no crash), the connection's buffers stay bounded, and a
// well-behaved client is served afterwards.
func FuzzRESPServer(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"*1\r\n$9223372036854775800\r\n",
		"*9223372036854775807\r\n",
		"*1\r\n$2000000000\r\n",
		"PING a b\r\nECHO \"x\\x41\"\r\nMGET k k k\r\n",
		"MULTI\r\nSET a 1\r\nEXEC\r\nGET a\r\n",
		"SET k v GET\r\nAPPEND k xyz\r\nIDEMPOTENT id INCR n\r\nREADONLY\r\nGET n\r\n",
		"*2\r\n$3\r\nGET\r\n:5\r\n",
		"'a'b\r\n",
	} {
		f.Add([]byte(s))
	}
	m := startTestMember(f, limits{MaxValue: 4 << 10, MaxRequest: 8 << 10, MaxReply: 64 << 10,
		RequestTimeout: time.Second, WriteTimeout: 5 * time.Second})
	cl := testClient(f, m)
	cfg := m.redis.cfg
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", m.redisAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c)
			done <- err
		}()
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		if err := <-done; err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server did not close the connection: %v", err)
		}
		if p := m.redis.stats.peakInput.Load(); p > int64(max(cfg.MaxRequest, respMaxInline)+2*respMaxHeader) {
			t.Fatalf("input buffer reached %d bytes", p)
		}
		if p := m.redis.stats.peakOutput.Load(); p > int64(2*(cfg.MaxPending+cfg.MaxReply)) {
			t.Fatalf("output buffer reached %d bytes", p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after the input: %v", err)
		}
	})
}

// flakyListener fails its first Accept calls, then hands out the server
// ends of in-memory pipes.
type flakyListener struct {
	fails  int
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, errors.New("accept4: too many open files")
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *flakyListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestRESPServerSurvivesAcceptErrors: errors from Accept other than a
// closed listener (such as running out of descriptors) do not stop the
// server; Close stops it and waits for its connections.
func TestRESPServerSurvivesAcceptErrors(t *testing.T) {
	ln := &flakyListener{fails: 3, conns: make(chan net.Conn), closed: make(chan struct{})}
	srv := newRESPServer(respConfig{MaxConns: 4}, func(c *respConn, cmds [][][]byte) {
		for _, args := range cmds {
			c.reply(appendBulk(nil, bytes.Join(args, []byte(" "))))
		}
	}, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	client, server := net.Pipe()
	defer client.Close()
	ln.conns <- server
	go client.Write([]byte("ECHO a b\r\n*2\r\n$4\r\nPING\r\n$1\r\nx\r\n"))
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(client)
	var got []string
	for range 4 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, line)
	}
	if strings.Join(got, "") != "$8\r\nECHO a b\r\n$6\r\nPING x\r\n" {
		t.Fatalf("replies %q", got)
	}
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, errRESPClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if n := srv.open(); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
}

// FuzzRESPParser: the parser gives the same commands and error whether
// the bytes arrive at once or one at a time, and commands it accepted,
// written back as multibulk, parse to themselves.
func FuzzRESPParser(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
		"PING a \"b\\x41\" 'c\\'d'\r\n\r\n*0\r\n*-1\r\n",
		"*1\r\n$9223372036854775800\r\n",
		"*9223372036854775807\r\n",
		"*2\r\n$3\r\nGET\r\n:5\r\n",
		"*1\r\n$3\r\nabcd\r\n",
	} {
		f.Add([]byte(s))
	}
	const maxRequest = 4 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, err1 := parseRESP(data, maxRequest)
		bytewise, err2 := parseRESPFrom(iotest.OneByteReader(bytes.NewReader(data)), maxRequest)
		if fmt.Sprintf("%q", whole) != fmt.Sprintf("%q", bytewise) || replyOf(err1) != replyOf(err2) {
			t.Fatalf("at once: %q, %v; byte by byte: %q, %v", whole, err1, bytewise, err2)
		}
		var enc []byte
		for _, c := range whole {
			if len(c) == 0 {
				t.Fatal("empty command returned")
			}
			enc = fmt.Appendf(enc, "*%d\r\n", len(c))
			for _, a := range c {
				enc = appendBulk(enc, a)
			}
		}
		again, err := parseRESP(enc, 1<<20)
		if err != nil || fmt.Sprintf("%q", again) != fmt.Sprintf("%q", whole) {
			t.Fatalf("re-encoded %q: %q, %v", whole, again, err)
		}
	})
}
