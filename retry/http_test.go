package retry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/retry"
)

// scripted is a RoundTripper answering with the given statuses in turn (the
// last one repeats) and recording every request and every body it returns.
type scripted struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header
	reqs     []*http.Request
	bodies   [][]byte
	keys     []string
	returned []*trackedBody
	ctxs     []context.Context
}

type trackedBody struct {
	io.Reader
	mu     sync.Mutex
	read   int
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.mu.Lock()
	b.read += n
	b.mu.Unlock()
	return n, err
}

func (b *trackedBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (s *scripted) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	i := min(len(s.reqs), len(s.statuses)-1)
	s.reqs = append(s.reqs, r)
	s.bodies = append(s.bodies, body)
	s.keys = append(s.keys, r.Header.Get(retry.IdempotencyKeyHeader))
	s.ctxs = append(s.ctxs, r.Context())
	tb := &trackedBody{Reader: strings.NewReader(strings.Repeat("x", 100) + "status " + http.StatusText(s.statuses[i]))}
	s.returned = append(s.returned, tb)
	h := http.Header{}
	for k, v := range s.header {
		h[k] = v
	}
	return &http.Response{StatusCode: s.statuses[i], Header: h, Body: tb, Request: r}, nil
}

func newTransport(t *testing.T, next http.RoundTripper, opts ...retry.Option) *retry.Transport {
	t.Helper()
	tr, err := retry.NewTransport(next, retry.WithRetryOptions(append([]retry.Option{zero()}, opts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTransportRetriesIdempotentMethods(t *testing.T) {
	for _, c := range []struct {
		method string
		key    string
		want   int // attempts
	}{
		{http.MethodGet, "", 3},
		{http.MethodHead, "", 3},
		{http.MethodPut, "", 3},
		{http.MethodDelete, "", 3},
		{http.MethodOptions, "", 3},
		{http.MethodPost, "", 1},
		{http.MethodPatch, "", 1},
		{http.MethodPost, "k-123", 3},
		{http.MethodPatch, "k-456", 3},
	} {
		t.Run(c.method+"/key="+c.key, func(t *testing.T) {
			rt := &scripted{statuses: []int{503, 502, 200}}
			tr := newTransport(t, rt)
			req, _ := http.NewRequest(c.method, "http://example.test/x", strings.NewReader("payload"))
			if c.key != "" {
				req.Header.Set(retry.IdempotencyKeyHeader, c.key)
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(rt.reqs) != c.want {
				t.Fatalf("%d attempts, want %d", len(rt.reqs), c.want)
			}
			for i := range rt.reqs {
				if string(rt.bodies[i]) != "payload" {
					t.Errorf("attempt %d body %q, want the original payload", i+1, rt.bodies[i])
				}
				if rt.keys[i] != c.key {
					t.Errorf("attempt %d key %q, want %q", i+1, rt.keys[i], c.key)
				}
			}
			// Every discarded response was drained and closed.
			for i, b := range rt.returned[:len(rt.returned)-1] {
				if !b.closed || b.read == 0 {
					t.Errorf("discarded response %d: closed %v, read %d", i+1, b.closed, b.read)
				}
			}
		})
	}
}

func TestTransportDoesNotRetryUnrewindableBody(t *testing.T) {
	rt := &scripted{statuses: []int{503, 200}}
	tr := newTransport(t, rt)
	req, _ := http.NewRequest(http.MethodPut, "http://example.test/x", io.NopCloser(strings.NewReader("once")))
	req.GetBody = nil
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(rt.reqs) != 1 || resp.StatusCode != 503 {
		t.Fatalf("%d attempts, status %d; want 1 attempt returning 503", len(rt.reqs), resp.StatusCode)
	}
}

func TestTransportReturnsLastResponseIntact(t *testing.T) {
	rt := &scripted{statuses: []int{503}}
	tr := newTransport(t, rt, retry.WithMaxAttempts(3))
	req, _ := http.NewRequest(http.MethodGet, "http://example.test/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.HasSuffix(string(body), "status Service Unavailable") {
		t.Fatalf("final response %d %q; want the intact 503", resp.StatusCode, body)
	}
	if len(rt.reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(rt.reqs))
	}
}

func TestTransportRetryAfter(t *testing.T) {
	date := func(d time.Duration) string { return clocktest.Epoch.Add(d).UTC().Format(http.TimeFormat) }
	for name, c := range map[string]struct {
		value string
		want  time.Duration
	}{
		"seconds":   {"2", 2 * time.Second},
		"http-date": {date(3 * time.Second), 3 * time.Second},
		"past date": {date(-time.Hour), 0},
		"capped":    {"3600", 5 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			fc := clocktest.NewFake(time.Time{})
			stop := drive(fc, time.Second)
			defer stop()
			rt := &scripted{statuses: []int{429, 200}, header: http.Header{"Retry-After": {c.value}}}
			var delays []time.Duration
			tr, err := retry.NewTransport(rt, retry.WithRetryOptions(retry.WithClock(fc),
				retry.WithMaxRetryAfter(5*time.Second),
				retry.WithOnRetry(func(_ context.Context, a retry.Attempt) { delays = append(delays, a.Delay) })))
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://example.test/x", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(delays) != 1 || delays[0] != c.want {
				t.Fatalf("delays %v, want [%v]", delays, c.want)
			}
		})
	}
}

func TestTransportContextCanceledDuringWait(t *testing.T) {
	fc := clocktest.NewFake(time.Time{})
	rt := &scripted{statuses: []int{503}}
	tr, err := retry.NewTransport(rt, retry.WithRetryOptions(retry.WithClock(fc)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/x", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if err := fc.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip error %v, want context.Canceled", err)
	}
	if !rt.returned[0].closed {
		t.Fatal("discarded response not closed")
	}
}

func TestTransportAttemptTimeoutLastsUntilBodyClosed(t *testing.T) {
	rt := &scripted{statuses: []int{200}}
	tr := newTransport(t, rt, retry.WithAttemptTimeout(time.Hour))
	req, _ := http.NewRequest(http.MethodGet, "http://example.test/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	actx := rt.ctxs[0]
	if _, ok := actx.Deadline(); !ok {
		t.Fatal("attempt context has no deadline")
	}
	if actx.Err() != nil {
		t.Fatal("attempt context cancelled before the body was closed")
	}
	resp.Body.Close()
	if actx.Err() == nil {
		t.Fatal("attempt context still live after the body was closed")
	}
}

func TestTransportTransportErrors(t *testing.T) {
	errNet := errors.New("connection reset")
	calls := 0
	rt := roundTripFunc(func(*http.Request) (*http.Response, error) {
		calls++
		return nil, errNet
	})
	tr := newTransport(t, rt, retry.WithMaxAttempts(3))
	req, _ := http.NewRequest(http.MethodGet, "http://example.test/x", nil)
	_, err := tr.RoundTrip(req)
	if calls != 3 || !errors.Is(err, errNet) || !errors.Is(err, retry.ErrExhausted) {
		t.Fatalf("calls = %d, err = %v", calls, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewTransportValidates(t *testing.T) {
	if _, err := retry.NewTransport(nil, retry.WithDrainLimit(-1)); !errors.Is(err, retry.ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
	if _, err := retry.NewTransport(nil, retry.WithRetryOptions(retry.WithMaxAttempts(0))); !errors.Is(err, retry.ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
}

// TestTransportRealServer runs the transport against a real HTTP server and
// checks that the body is replayed and that discarded responses are drained,
// so every attempt reuses the one connection.
func TestTransportRealServer(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	hits, conns := 0, 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hits++
		n := hits
		bodies = append(bodies, string(b))
		mu.Unlock()
		if n < 3 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, strings.Repeat("busy ", 1000), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	tr := newTransport(t, srv.Client().Transport)
	client := &http.Client{Transport: tr}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte("order-1")))
	req.Header.Set(retry.IdempotencyKeyHeader, "order-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if string(b) != "ok" || hits != 3 {
		t.Fatalf("got %q after %d hits", b, hits)
	}
	if conns != 1 {
		t.Fatalf("%d connections for 3 attempts; discarded responses were not drained", conns)
	}
	for i, body := range bodies {
		if body != "order-1" {
			t.Errorf("hit %d body %q", i+1, body)
		}
	}
	srv.Client().CloseIdleConnections()
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", " 5 ", "-1", "+3", "1.5", "99999999999999999999",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"", "soon", "0x10"} {
		f.Add(s)
	}
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := retry.ParseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, false; want 0 on failure", v, d)
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v < 0", v, d)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"Wed, 21 Oct 2015 07:28:30 GMT", 30 * time.Second, true},
		{"Wed, 21 Oct 2015 07:00:00 GMT", 0, true},
		{"99999999999999999999", time.Duration(1<<63 - 1), true},
		{"-1", 0, false},
		{"+3", 0, false},
		{"1.5", 0, false},
		{"", 0, false},
		{"tomorrow", 0, false},
	} {
		d, ok := retry.ParseRetryAfter(c.in, now)
		if d != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, d, ok, c.want, c.ok)
		}
	}
}

func TestTransportOptions(t *testing.T) {
	rt := &scripted{statuses: []int{418, 503, 200}}
	tr, err := retry.NewTransport(rt, retry.WithRetryMethods(http.MethodPost), retry.WithRetryStatus(418),
		retry.WithRetryOptions(zero()))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://example.test/x", strings.NewReader("b"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// 418 is retried; 503 is not in the configured list, so it is returned.
	if len(rt.reqs) != 2 || resp.StatusCode != 503 {
		t.Fatalf("%d attempts ending in %d; want 2 ending in 503", len(rt.reqs), resp.StatusCode)
	}
	rt2 := &scripted{statuses: []int{503, 200}}
	tr2, _ := retry.NewTransport(rt2, retry.WithRetryMethods(http.MethodPost), retry.WithRetryOptions(zero()))
	req, _ = http.NewRequest(http.MethodGet, "http://example.test/x", nil)
	resp, err = tr2.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(rt2.reqs) != 1 {
		t.Fatalf("GET retried although only POST was configured")
	}
}

func TestTransportBudget(t *testing.T) {
	b, err := retry.NewBudget(0, 1, 10*time.Second) // 10 retries per 10 s in all
	if err != nil {
		t.Fatal(err)
	}
	rt := &scripted{statuses: []int{503}}
	tr := newTransport(t, rt, retry.WithBudget(b), retry.WithMaxAttempts(5))
	for range 5 {
		req, _ := http.NewRequest(http.MethodGet, "http://example.test/x", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// 5 first attempts + 10 retries allowed by the floor.
	if len(rt.reqs) != 15 {
		t.Fatalf("%d attempts; want 15", len(rt.reqs))
	}
}

func TestZeroTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var tr retry.Transport
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
}

func TestTransportRetryAfterPastDeadlineReturnsResponse(t *testing.T) {
	rt := &scripted{statuses: []int{503, 200}, header: http.Header{"Retry-After": {"7200"}}}
	tr := newTransport(t, rt, retry.WithMaxRetryAfter(3*time.Hour), retry.WithMaxElapsed(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || len(rt.reqs) != 1 {
		t.Fatalf("status %d after %d attempts; want the 503 at once, without waiting past the deadline", resp.StatusCode, len(rt.reqs))
	}
}

func TestTransportDoesNotRetryCertificateErrors(t *testing.T) {
	hits := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	base := &http.Transport{} // does not trust the test server's certificate
	defer base.CloseIdleConnections()
	tries := 0
	tr := newTransport(t, base, retry.WithOnRetry(func(context.Context, retry.Attempt) { tries++ }))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	_, err := tr.RoundTrip(req)
	if err == nil || !errors.Is(err, retry.ErrPermanent) || tries != 0 || hits != 0 {
		t.Fatalf("err %v, %d retries, %d hits; want a permanent certificate error and no retry", err, tries, hits)
	}
}
