package breaker

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// parseRetryAfter parses a Retry-After value, delta-seconds or an
// HTTP-date, into the delay it asks for from now; a past date gives 0. It
// reports false for anything else.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := range len(v) {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// StatusError is the error a [Transport] reports to the breaker's
// classifiers ([WithExclude], [WithIsFailure]) for a 5xx or 429 response.
// RoundTrip never returns it: the caller gets the response.
type StatusError struct {
	StatusCode int
}

// Error returns "breaker: HTTP status N".
func (e *StatusError) Error() string { return "breaker: HTTP status " + strconv.Itoa(e.StatusCode) }

// Transport is an [http.RoundTripper] with one breaker per host (the
// request URL's host:port), held in a [Group]. Transport errors and 5xx
// responses count as failures; 429 Too Many Requests counts as neither
// success nor failure (the server is up, and is pacing us); every other
// response is a success. A request whose context is done when the call ends
// does not count. While a host's breaker is open, RoundTrip returns an
// [*OpenError] without sending the request. With [WithRetryAfterTrip], a
// 429 or 503 carrying Retry-After also pauses the host's breaker.
//
// A Transport is safe for concurrent use. The zero value sends through
// http.DefaultTransport with the default options.
type Transport struct {
	setup sync.Once // fills in a zero value
	next  http.RoundTripper
	group *Group[*http.Response]
}

// NewTransport returns a Transport sending requests through next
// (http.DefaultTransport if nil), with breakers made from opts. The Group
// options ([WithMaxKeys], [WithIdleTTL]) bound the number of hosts tracked.
// As with [New], an invalid option makes every RoundTrip return an error
// wrapping [ErrInvalidOption].
func NewTransport(next http.RoundTripper, opts ...Option) *Transport {
	t := &Transport{next: next, group: newTransportGroup(newConfig(opts))}
	t.init()
	return t
}

// init fills in a zero-value Transport.
func (t *Transport) init() {
	t.setup.Do(func() {
		if t.next == nil {
			t.next = http.DefaultTransport
		}
		if t.group == nil {
			t.group = newTransportGroup(newConfig(nil))
		}
	})
}

// newTransportGroup returns the per-host group, with 429 excluded.
func newTransportGroup(cfg config) *Group[*http.Response] {
	userExclude := cfg.exclude
	cfg.exclude = func(err error) bool {
		var se *StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusTooManyRequests {
			return true
		}
		return userExclude != nil && userExclude(err)
	}
	return &Group[*http.Response]{cfg: cfg, m: make(map[string]*member[*http.Response])}
}

// Group returns the transport's breakers, for inspection.
func (t *Transport) Group() *Group[*http.Response] {
	t.init()
	return t.group
}

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.init()
	var resp *http.Response
	called := false
	_, err := t.group.Execute(req.Context(), req.URL.Host, func(context.Context) (*http.Response, error) {
		called = true
		r, err := t.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		resp = r
		if r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests {
			return r, &StatusError{StatusCode: r.StatusCode}
		}
		return r, nil
	})
	if resp != nil {
		if limit := t.group.cfg.tripMax; limit > 0 &&
			(resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok && d > 0 {
				t.group.Breaker(req.URL.Host).Trip(min(d, limit))
			}
		}
		return resp, nil
	}
	if !called && req.Body != nil {
		req.Body.Close() // a RoundTripper closes the body even when it sends nothing
	}
	return nil, err
}
