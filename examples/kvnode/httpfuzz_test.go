package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// FuzzHTTPServer drives a real member's HTTP API with arbitrary byte
// streams: each connection must be answered and closed within the
// server's bounds (no hang, no crash), the heap must not grow with what
// a request announces, and a well-behaved client is served afterwards.
func FuzzHTTPServer(f *testing.F) {
	for _, s := range []string{
		"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /kv/a HTTP/1.1\r\nHost: x\r\n\r\n",
		"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\nabc",
		"PUT /kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"POST /members HTTP/1.1\r\nHost: x\r\nContent-Length: 31\r\n\r\n{\"id\": 9, \"raft\": \"not an addr\"}",
		"POST /members HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[[",
		"DELETE /members/1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /members/18446744073709551616 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /transfer-leader?to=0 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /kv/a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Og==\r\n\r\n",
		"GET /kv/a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ZGVmYXVsdDpwdw==\r\n\r\n",
		"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
		"\x16\x03\x01\x00\xff\x01\x00\x00",
	} {
		f.Add([]byte(s))
	}
	m := startTestMember(f, limits{MaxValue: 4 << 10, MaxRequest: 8 << 10})
	addr := m.cfg.HTTPLn.Addr().String()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	f.Cleanup(hc.CloseIdleConnections)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapInuse
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The server's own deadlines (ReadTimeout, WriteTimeout) end
		// every connection well within this one.
		c.SetDeadline(time.Now().Add(time.Minute))
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
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > baseHeap+256<<20 {
			t.Fatalf("heap in use grew from %d to %d MiB", baseHeap>>20, ms.HeapInuse>>20)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET /status after the input: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /status after the input: %s", resp.Status)
		}
	})
}
