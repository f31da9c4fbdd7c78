package main

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHTTPLimits: the HTTP server bounds headers, bodies and every phase
// of a request in time; a body over -max-value is refused with 413 before
// more of it is read, and one at the limit is stored.
func TestHTTPLimits(t *testing.T) {
	m := startTestMember(t, limits{MaxValue: 1024})
	s := m.http
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Fatalf("HTTP server without a bound: %+v", s)
	}
	base := "http://" + m.cfg.HTTPLn.Addr().String()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	put := func(body io.Reader) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, base+"/kv/h", body)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// No Content-Length: the server finds the excess while reading.
	if code, body := put(io.MultiReader(strings.NewReader(strings.Repeat("x", 4096)))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT of 4 KiB with -max-value 1024: %d %s", code, body)
	}
	if code, body := put(bytes.NewReader(bytes.Repeat([]byte("y"), 1024))); code != http.StatusOK {
		t.Errorf("PUT of 1 KiB: %d %s", code, body)
	}
	resp, err := hc.Get(base + "/kv/h")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1024 {
		t.Errorf("GET: %d bytes", len(b))
	}
	// A join request with an oversized body is refused.
	resp, err = hc.Post(base+"/members", "application/json", strings.NewReader(`{"id": 2, "raft": "`+strings.Repeat("a", 8192)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("join with an 8 KiB body: %d", resp.StatusCode)
	}
}
