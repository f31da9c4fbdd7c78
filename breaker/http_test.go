package breaker_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/breaker"
)

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestTransport(t *testing.T) {
	var status atomic.Int32
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	defer srv.Client().CloseIdleConnections()

	tr := breaker.NewTransport(srv.Client().Transport, breaker.WithConsecutiveFailures(3))
	client := &http.Client{Transport: tr}
	get := func(url string) (int, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	// 4xx and 429 are not failures.
	for _, code := range []int{404, 400, 429, 429, 429, 429} {
		status.Store(int32(code))
		if got, err := get(srv.URL); got != code || err != nil {
			t.Fatalf("GET = %d, %v; want %d", got, err, code)
		}
	}
	st := tr.Group().Stats()[strings.TrimPrefix(srv.URL, "http://")]
	if st.State != breaker.StateClosed || st.Exclusions != 4 || st.Successes != 2 {
		t.Fatalf("Stats = %+v; want 2 successes, 4 exclusions", st)
	}

	// 5xx are failures: the caller still gets each response, then the
	// breaker opens and requests are no longer sent.
	status.Store(503)
	for range 3 {
		if got, err := get(srv.URL); got != 503 || err != nil {
			t.Fatalf("GET = %d, %v; want the 503 response", got, err)
		}
	}
	before := hits.Load()
	_, err := get(srv.URL)
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
	if hits.Load() != before {
		t.Fatal("request sent while the breaker was open")
	}
	body := &closeTracker{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	if _, err := tr.RoundTrip(req); !errors.Is(err, breaker.ErrOpen) || !body.closed {
		t.Fatalf("err %v, body closed %v; want ErrOpen and the body closed", err, body.closed)
	}

	// Another host is unaffected.
	if got, err := get(other.URL); got != 200 || err != nil {
		t.Fatalf("other host: %d, %v", got, err)
	}
	other.Client().CloseIdleConnections()
}

func TestTransportErrorsAreFailures(t *testing.T) {
	errDial := errors.New("dial tcp: connection refused")
	calls := 0
	tr := breaker.NewTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		calls++
		return nil, errDial
	}), breaker.WithConsecutiveFailures(2))
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://db.internal/x", nil)
		if _, err := tr.RoundTrip(req); !errors.Is(err, errDial) {
			t.Fatalf("err = %v", err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://db.internal/x", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, breaker.ErrOpen) || calls != 2 {
		t.Fatalf("err = %v after %d calls; want ErrOpen after 2", err, calls)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTransportInvalidOption(t *testing.T) {
	tr := breaker.NewTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		t.Fatal("request sent despite an invalid option")
		return nil, nil
	}), breaker.WithOpenTimeout(-1))
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest(http.MethodPost, "http://h/x", body)
	if _, err := tr.RoundTrip(req); !errors.Is(err, breaker.ErrInvalidOption) || !body.closed {
		t.Fatalf("err %v, body closed %v", err, body.closed)
	}
}

func TestTransportRetryAfterTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		status, after := 429, "2"
		tr := breaker.NewTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			h := http.Header{}
			if after != "" {
				h.Set("Retry-After", after)
			}
			return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
		}), breaker.WithRetryAfterTrip(time.Minute))
		get := func(host string) (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/x", nil)
			return tr.RoundTrip(req)
		}
		if resp, err := get("a"); err != nil || resp.StatusCode != 429 {
			t.Fatalf("first call: %v, %v", resp, err)
		}
		_, err := get("a")
		var oe *breaker.OpenError
		if !errors.As(err, &oe) || oe.Remaining != 2*time.Second || calls != 1 {
			t.Fatalf("err %v after %d calls; want the host tripped for 2s", err, calls)
		}
		if _, err := get("b"); err != nil || calls != 2 {
			t.Fatalf("other host: %v", err)
		}
		time.Sleep(2 * time.Second)
		status, after = 200, ""
		if resp, err := get("a"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the pause: %v, %v", resp, err)
		}
		// A long Retry-After is capped.
		status, after = 503, "3600"
		get("a")
		if _, err := get("a"); !errors.As(err, &oe) || oe.Remaining != time.Minute {
			t.Fatalf("err %v; want a trip capped at 1m", err)
		}
	})
}
