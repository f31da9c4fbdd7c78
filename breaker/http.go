package breaker

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/distkit/distkit/internal/retryafter"
)

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
			if d, ok := retryafter.Parse(resp.Header.Get("Retry-After"), time.Now()); ok && d > 0 {
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
