package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/distkit/distkit/internal/retryafter"
)

// IdempotencyKeyHeader is the request header that makes a [Transport] retry
// a request whatever its method: the server deduplicates by its value, which
// stays the same on every attempt.
const IdempotencyKeyHeader = "Idempotency-Key"

// DefaultDrainLimit is how much of a discarded response body a [Transport]
// reads before closing it, so that the connection can be reused.
const DefaultDrainLimit = 64 << 10

// DefaultRetryStatus returns the response statuses a [Transport] retries
// by default: 429 Too Many Requests and the 5xx statuses that usually mean a
// transient fault (500, 502, 503, 504). Each call returns a new slice.
func DefaultRetryStatus() []int {
	return []int{
		http.StatusTooManyRequests,
		http.StatusInternalServerError,
		http.StatusBadGateway,
		http.StatusServiceUnavailable,
		http.StatusGatewayTimeout,
	}
}

// DefaultRetryMethods returns the methods a [Transport] retries by default:
// those RFC 9110 defines as idempotent (GET, HEAD, OPTIONS, TRACE, PUT,
// DELETE). Other requests are retried only when they carry an
// [IdempotencyKeyHeader]. Each call returns a new slice.
func DefaultRetryMethods() []string {
	return []string{
		http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete,
	}
}

// Transport is an [http.RoundTripper] that retries requests which are safe
// to repeat: those with an idempotent method and those carrying an
// [IdempotencyKeyHeader]. It retries transport errors (except TLS
// certificate failures, which no retry fixes) and the configured statuses with the retry options it was made with, and honours a
// Retry-After response header (delta-seconds or HTTP-date) within
// [WithMaxRetryAfter].
//
// A request body is replayed through Request.GetBody (set by
// http.NewRequest for in-memory bodies); a request with a body but no
// GetBody is sent once and never retried. Every discarded response is
// drained (up to the drain limit) and closed. When the last attempt gets a
// retryable status, that response is returned as is, with its body. The
// request's context bounds all attempts and waits.
//
// A Transport is safe for concurrent use. The zero value sends through
// http.DefaultTransport with every default.
type Transport struct {
	built          bool // made by NewTransport; otherwise use zeroTransport
	next           http.RoundTripper
	s              *settings
	attemptTimeout time.Duration
	status         []int
	methods        []string
	drainLimit     int64
}

// TransportOption configures a [Transport].
type TransportOption func(*Transport)

// WithRetryOptions sets the retry policy applied to each request: attempts,
// backoff, budget, hooks, and so on. A per-attempt timeout
// ([WithAttemptTimeout]) covers the attempt until its response body is
// closed.
func WithRetryOptions(opts ...Option) TransportOption {
	return func(t *Transport) {
		s := resolve(opts)
		t.s = s
	}
}

// WithRetryStatus sets the response statuses that are retried. Default
// [DefaultRetryStatus]().
func WithRetryStatus(codes ...int) TransportOption {
	return func(t *Transport) { t.status = slices.Clone(codes) }
}

// WithRetryMethods sets the methods that are retried without an
// [IdempotencyKeyHeader]. Default [DefaultRetryMethods]().
func WithRetryMethods(methods ...string) TransportOption {
	return func(t *Transport) { t.methods = slices.Clone(methods) }
}

// WithDrainLimit sets how many bytes of a discarded response body are read
// before it is closed; n must not be negative. Default [DefaultDrainLimit].
func WithDrainLimit(n int64) TransportOption {
	return func(t *Transport) { t.drainLimit = n }
}

// NewTransport returns a Transport that sends requests through next
// (http.DefaultTransport if nil). It returns an error wrapping
// [ErrInvalidOption] if an option is invalid.
func NewTransport(next http.RoundTripper, opts ...TransportOption) (*Transport, error) {
	if next == nil {
		next = http.DefaultTransport
	}
	t := &Transport{
		built:      true,
		next:       next,
		s:          &defaults,
		status:     DefaultRetryStatus(),
		methods:    DefaultRetryMethods(),
		drainLimit: DefaultDrainLimit,
	}
	for _, o := range opts {
		if o != nil {
			o(t)
		}
	}
	if t.s.err != nil {
		return nil, t.s.err
	}
	if t.drainLimit < 0 {
		return nil, fmt.Errorf("%w: drain limit %d < 0", ErrInvalidOption, t.drainLimit)
	}
	if t.s.attemptTimeout > 0 {
		// The transport applies it itself, so that a successful attempt's
		// deadline lasts until its body is closed.
		s := *t.s
		t.attemptTimeout, s.attemptTimeout = s.attemptTimeout, 0
		t.s = &s
	}
	return t, nil
}

// StatusError is the error a [Transport] attempt reports to the retry
// policy (so to [WithRetryIf] and [WithOnRetry]) when the response has a
// retryable status. RoundTrip never returns it: after the last attempt it
// returns the response itself.
type StatusError struct {
	StatusCode int
}

// Error returns "retry: HTTP status N".
func (e *StatusError) Error() string {
	return "retry: HTTP status " + strconv.Itoa(e.StatusCode)
}

// zeroTransport is what a zero Transport behaves as. It is never modified.
var zeroTransport, _ = NewTransport(nil)

func (t *Transport) retryable(req *http.Request) bool {
	return slices.Contains(t.methods, req.Method) || req.Header.Get(IdempotencyKeyHeader) != ""
}

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.built {
		t = zeroTransport
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if !t.retryable(req) || (hasBody && req.GetBody == nil) {
		return t.next.RoundTrip(req)
	}
	var (
		last  *http.Response // response with a retryable status, kept until the next retry is decided
		tries int
	)
	op := func(ctx context.Context) (*http.Response, error) {
		tries++
		ctx, cancel := withAttemptTimeout(ctx, t.attemptTimeout)
		r := req
		if tries > 1 || ctx != req.Context() {
			r = req.WithContext(ctx)
			if tries > 1 && hasBody {
				body, err := req.GetBody()
				if err != nil {
					cancel()
					return nil, Permanent(fmt.Errorf("retry: rewinding request body: %w", err))
				}
				r.Body = body
			}
		}
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			cancel()
			if certificateError(err) {
				return nil, Permanent(err) // the same certificate will fail again
			}
			return nil, err
		}
		if t.attemptTimeout > 0 {
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		}
		if !slices.Contains(t.status, resp.StatusCode) {
			return resp, nil
		}
		last = resp
		serr := error(&StatusError{StatusCode: resp.StatusCode})
		if v := resp.Header.Get("Retry-After"); v != "" {
			if d, ok := ParseRetryAfter(v, now(t.s.clock)); ok {
				serr = RetryAfter(d, serr)
			}
		}
		return nil, serr
	}
	discard := func() {
		if last != nil {
			drainClose(last.Body, t.drainLimit)
			last = nil
		}
	}
	resp, err := run(req.Context(), t.s, op, discard)
	if err == nil {
		return resp, nil
	}
	if last != nil {
		return last, nil
	}
	if tries == 0 && hasBody {
		req.Body.Close()
	}
	return nil, err
}

func noop() {}

// withAttemptTimeout derives an attempt's context; the caller owns cancel,
// which for a successful response is called when its body is closed.
func withAttemptTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, noop
	}
	return context.WithTimeout(ctx, d)
}

// certificateError reports whether err is a TLS certificate verification
// failure, which no retry can fix.
func certificateError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func drainClose(body io.ReadCloser, limit int64) {
	if body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, body, limit)
	_ = body.Close()
}

// ParseRetryAfter parses the value of a Retry-After header, either
// delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"),
// into the delay it asks for, counted from now for a date. A date in the
// past gives 0. It reports false for a malformed value. Very large values
// are clamped to the largest time.Duration.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) { return retryafter.Parse(v, now) }
