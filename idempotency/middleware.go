package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// Defaults of [Middleware].
const (
	// DefaultKeyHeader is the request header that carries the key.
	DefaultKeyHeader = "Idempotency-Key"
	// ReplayedHeader is set to "true" on replayed responses.
	ReplayedHeader = "Idempotent-Replayed"
	// DefaultMaxBody bounds request bodies of keyed requests; a larger body
	// is refused with 413 and the handler is not run.
	DefaultMaxBody = 1 << 20
	// DefaultMaxResponse bounds recorded response bodies; a larger response
	// is sent but not recorded.
	DefaultMaxResponse = 1 << 20
	// MaxKeyLen is the longest key accepted, after unquoting.
	MaxKeyLen = 255
	// storeFullRetryAfter is the Retry-After, in seconds, sent with 503
	// when the store is full.
	storeFullRetryAfter = 5
)

// defaultReplayHeaders are the response headers recorded and replayed
// unless WithReplayHeaders says otherwise.
var defaultReplayHeaders = []string{"Content-Type", "Content-Encoding", "Location"}

// MiddlewareOption configures [Middleware].
type MiddlewareOption func(*mwConfig)

type mwConfig struct {
	header        string
	methods       []string
	required      bool
	maxBody       int64
	maxResponse   int
	replayHeaders []string
	fpHeaders     []string
	scope         func(*http.Request) string
}

// WithKeyHeader sets the request header that carries the key (default
// [DefaultKeyHeader]). An empty name means the default.
func WithKeyHeader(name string) MiddlewareOption {
	return func(c *mwConfig) {
		if name != "" {
			c.header = http.CanonicalHeaderKey(name)
		}
	}
}

// WithMethods sets the methods the middleware applies to (default POST and
// PATCH). Requests with other methods pass through untouched. No methods
// means the default.
func WithMethods(methods ...string) MiddlewareOption {
	return func(c *mwConfig) {
		if len(methods) > 0 {
			c.methods = append([]string(nil), methods...)
		}
	}
}

// WithRequired sets whether requests with a covered method must carry a
// key. If required, a request without one gets 400; otherwise (the
// default) it passes through without deduplication.
func WithRequired(required bool) MiddlewareOption {
	return func(c *mwConfig) { c.required = required }
}

// WithMaxBody bounds the request body of keyed requests (default
// [DefaultMaxBody]); a larger body gets 413. A non-positive n means the
// default.
func WithMaxBody(n int64) MiddlewareOption {
	return func(c *mwConfig) {
		if n > 0 {
			c.maxBody = n
		}
	}
}

// WithMaxResponse bounds the response body recorded for replay (default
// [DefaultMaxResponse]). A larger response is still sent, but not
// recorded: the key is released and a retry runs the handler again. A
// non-positive n means the default.
func WithMaxResponse(n int) MiddlewareOption {
	return func(c *mwConfig) {
		if n > 0 {
			c.maxResponse = n
		}
	}
}

// WithReplayHeaders sets the response headers recorded and replayed
// (default Content-Type, Content-Encoding and Location). Calling it with no
// names records none. Status and body are always recorded, as written by
// the handler: if the handler compresses the body, keep Content-Encoding
// in the list.
func WithReplayHeaders(names ...string) MiddlewareOption {
	return func(c *mwConfig) { c.replayHeaders = canonical(names) }
}

// WithFingerprintHeaders adds request headers to the fingerprint, beside
// the method, path, query and body that it always covers.
func WithFingerprintHeaders(names ...string) MiddlewareOption {
	return func(c *mwConfig) { c.fpHeaders = canonical(names) }
}

// WithScope sets a function that names the client of a request (a tenant,
// account or authenticated user), so that equal keys from different
// clients never meet: one client cannot claim, replay or block another's
// key. The record's key is the scope, a newline and the key. By default all clients
// share one key space, which is safe only if keys are unguessable and
// unique, as [NewKey] makes them, and never shown to other clients.
func WithScope(scope func(*http.Request) string) MiddlewareOption {
	return func(c *mwConfig) { c.scope = scope }
}

func canonical(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, http.CanonicalHeaderKey(n))
	}
	return out
}

// errUnrecorded marks a response the middleware chose not to record. The
// Guard never records it, whatever WithRecordErrors says.
var errUnrecorded = errors.New("idempotency: response not recorded")

// Middleware returns HTTP middleware that makes requests carrying an
// Idempotency-Key header take effect once, following the IETF draft "The
// Idempotency-Key HTTP Header Field":
//
//   - It applies to POST and PATCH (see [WithMethods]); other requests pass
//     through. A covered request without a key passes through, or gets 400
//     if keys are required ([WithRequired]).
//   - The key may be a Structured Field string ("quoted", as the draft
//     says) or bare; both mean the same key. It must be 1 to [MaxKeyLen]
//     printable ASCII characters, in a single header field, or the request
//     gets 400.
//   - The body is read up to a limit ([WithMaxBody]; 413 beyond it), and the
//     fingerprint covers the method, path, query and body (and headers named
//     by [WithFingerprintHeaders]).
//   - The first request runs the handler; its response is streamed to the
//     client and recorded: status, body and the headers named by
//     [WithReplayHeaders]. A retry gets the recorded response with
//     "Idempotent-Replayed: true" added.
//   - A key reused with another request gets 422. A request whose key is
//     still being handled gets 409 with "Retry-After: 1" when the Guard
//     reports [ErrInProgress]; with the Guard's default in-process waiting, a
//     duplicate arriving at the same process waits and gets the replay.
//   - Responses with status 5xx and responses larger than [WithMaxResponse]
//     are not recorded: the key is released and a retry runs the handler
//     again. A panicking handler releases the key too.
//   - Error responses are problem details (RFC 9457, application/problem+json).
//     A store failure gets 503; a full store ([ErrStoreFull]) gets 503 with
//     "Retry-After: 5", and the handler is not run.
//   - The handler's request context carries the claim's fencing token
//     ([Token]) and is cancelled if the claim is lost.
func Middleware(g *Guard, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	cfg := mwConfig{
		header:        DefaultKeyHeader,
		methods:       []string{http.MethodPost, http.MethodPatch},
		maxBody:       DefaultMaxBody,
		maxResponse:   DefaultMaxResponse,
		replayHeaders: defaultReplayHeaders,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if g == nil {
		g = New(nil)
	}
	return func(next http.Handler) http.Handler {
		return &middleware{g: g, cfg: cfg, next: next}
	}
}

type middleware struct {
	g    *Guard
	cfg  mwConfig
	next http.Handler
}

func (m *middleware) covers(method string) bool {
	for _, c := range m.cfg.methods {
		if c == method {
			return true
		}
	}
	return false
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !m.covers(r.Method) {
		m.next.ServeHTTP(w, r)
		return
	}
	fields := r.Header.Values(m.cfg.header)
	switch {
	case len(fields) == 0 && m.cfg.required:
		writeProblem(w, http.StatusBadRequest, "This request requires an "+m.cfg.header+" header.")
		return
	case len(fields) == 0:
		m.next.ServeHTTP(w, r)
		return
	case len(fields) > 1:
		writeProblem(w, http.StatusBadRequest, "The "+m.cfg.header+" header must appear once.")
		return
	}
	key, err := ParseKey(fields[0])
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "The "+m.cfg.header+" header is malformed: it must be 1 to "+
			strconv.Itoa(MaxKeyLen)+" printable ASCII characters, bare or as a quoted string.")
		return
	}

	if r.ContentLength > m.cfg.maxBody {
		writeProblem(w, http.StatusRequestEntityTooLarge, "The request body exceeds "+strconv.FormatInt(m.cfg.maxBody, 10)+" bytes.")
		return
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, err = readBody(r.Body, r.ContentLength, m.cfg.maxBody)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "The request body could not be read.")
			return
		}
		if int64(len(body)) > m.cfg.maxBody {
			writeProblem(w, http.StatusRequestEntityTooLarge, "The request body exceeds "+strconv.FormatInt(m.cfg.maxBody, 10)+" bytes.")
			return
		}
	}

	if m.cfg.scope != nil {
		// Keys hold no newline (ParseKey), so this pairing is unambiguous.
		key = m.cfg.scope(r) + "\n" + key
	}
	fp := m.fingerprint(r, body)

	ran := false
	v, err := m.g.Do(r.Context(), key, fp, func(ctx context.Context) ([]byte, error) {
		ran = true
		rec := &recorder{w: w, max: m.cfg.maxResponse, names: m.cfg.replayHeaders}
		req := r.WithContext(ctx)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		m.next.ServeHTTP(rec, req)
		if !rec.wrote {
			rec.WriteHeader(http.StatusOK)
		}
		if rec.status >= 500 || rec.overflow {
			return nil, errUnrecorded
		}
		return encodeResponse(rec.status, rec.header, rec.buf.Bytes()), nil
	})
	if ran {
		if err != nil && !errors.Is(err, errUnrecorded) {
			m.g.cfg.logger.LogAttrs(r.Context(), slog.LevelWarn, "idempotency: response sent but not recorded",
				slog.String("key", key), slog.Any("error", err))
		}
		return
	}
	var recorded *RecordedError
	switch {
	case err == nil:
		m.replay(w, r, key, v)
	case errors.Is(err, ErrKeyReused):
		writeProblem(w, http.StatusUnprocessableEntity, "This "+m.cfg.header+" was already used with a different request.")
	case errors.Is(err, ErrInProgress):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusConflict, "A request with this "+m.cfg.header+" is still being processed; retry later.")
	case errors.Is(err, ErrStoreFull):
		w.Header().Set("Retry-After", strconv.Itoa(storeFullRetryAfter))
		writeProblem(w, http.StatusServiceUnavailable, "Too many requests with "+m.cfg.header+" are recorded; retry later with the same key.")
	case errors.As(err, &recorded):
		writeProblem(w, http.StatusInternalServerError, "The original request with this "+m.cfg.header+" failed.")
	case r.Context().Err() != nil:
		writeProblem(w, http.StatusServiceUnavailable, "The request was cancelled.")
	default:
		m.g.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "idempotency: store failure",
			slog.String("key", key), slog.Any("error", err))
		writeProblem(w, http.StatusServiceUnavailable, "Idempotency records are unavailable; retry later.")
	}
}

// readBody reads body up to limit+1 bytes (one more than allowed, to tell
// an oversized body), sizing its buffer by the declared length if any.
func readBody(body io.Reader, declared, limit int64) ([]byte, error) {
	size := int64(512)
	if declared >= 0 {
		size = declared + 1 // room to see EOF without growing
	}
	buf := make([]byte, 0, min(size, limit+1))
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
		room := min(int64(cap(buf)), limit+1)
		n, err := body.Read(buf[len(buf):room])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (m *middleware) replay(w http.ResponseWriter, r *http.Request, key string, v []byte) {
	status, header, body, err := decodeResponse(v)
	if err != nil {
		m.g.cfg.logger.LogAttrs(r.Context(), slog.LevelError, "idempotency: recorded response unreadable",
			slog.String("key", key), slog.Any("error", err))
		writeProblem(w, http.StatusInternalServerError, "The recorded response could not be read.")
		return
	}
	h := w.Header()
	for name, vals := range header {
		h[name] = vals
	}
	h.Set(ReplayedHeader, "true")
	w.WriteHeader(status)
	w.Write(body)
}

func (m *middleware) fingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	writePart(h, []byte(r.Method))
	writePart(h, []byte(r.URL.EscapedPath()))
	writePart(h, []byte(r.URL.RawQuery))
	for _, name := range m.cfg.fpHeaders {
		writePart(h, []byte(name))
		writePart(h, []byte(strings.Join(r.Header.Values(name), "\n")))
	}
	writePart(h, body)
	return h.Sum(make([]byte, 0, sha256.Size))
}

// ParseKey returns the key carried by an Idempotency-Key header value: a
// Structured Field string ("...", with \" and \\ escapes) or a bare value.
// A key must be 1 to [MaxKeyLen] printable ASCII characters (bare keys
// exclude space, '"' and '\'); otherwise ParseKey returns an error wrapping
// [ErrInvalidKey].
func ParseKey(field string) (string, error) {
	field = strings.Trim(field, " \t")
	if field == "" {
		return "", fmt.Errorf("idempotency: empty key: %w", ErrInvalidKey)
	}
	if field[0] != '"' {
		if len(field) > MaxKeyLen {
			return "", fmt.Errorf("idempotency: key longer than %d: %w", MaxKeyLen, ErrInvalidKey)
		}
		for i := 0; i < len(field); i++ {
			if c := field[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
				return "", fmt.Errorf("idempotency: key has byte %#x: %w", c, ErrInvalidKey)
			}
		}
		return field, nil
	}
	if len(field) > 2*MaxKeyLen+2 {
		return "", fmt.Errorf("idempotency: key longer than %d: %w", MaxKeyLen, ErrInvalidKey)
	}
	var b strings.Builder
	for i := 1; i < len(field); i++ {
		c := field[i]
		switch {
		case c == '\\':
			i++
			if i == len(field) || (field[i] != '"' && field[i] != '\\') {
				return "", fmt.Errorf("idempotency: bad escape in key: %w", ErrInvalidKey)
			}
			b.WriteByte(field[i])
		case c == '"':
			if i != len(field)-1 {
				return "", fmt.Errorf("idempotency: text after quoted key: %w", ErrInvalidKey)
			}
			if b.Len() == 0 || b.Len() > MaxKeyLen {
				return "", fmt.Errorf("idempotency: key length %d: %w", b.Len(), ErrInvalidKey)
			}
			return b.String(), nil
		case c < ' ' || c >= 0x7f:
			return "", fmt.Errorf("idempotency: key has byte %#x: %w", c, ErrInvalidKey)
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("idempotency: unterminated quoted key: %w", ErrInvalidKey)
}

// recorder passes a response through to the client and keeps a copy.
type recorder struct {
	w        http.ResponseWriter
	max      int
	wrote    bool
	status   int
	header   http.Header // replayable headers, snapshot at WriteHeader
	buf      bytes.Buffer
	overflow bool
	names    []string
}

func (r *recorder) Header() http.Header { return r.w.Header() }

func (r *recorder) WriteHeader(code int) {
	if r.wrote {
		r.w.WriteHeader(code) // let net/http report the superfluous call
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.w.WriteHeader(code) // informational: not the final response
		return
	}
	r.wrote, r.status = true, code
	r.header = make(http.Header, len(r.names))
	for _, name := range r.names {
		if vals := r.w.Header().Values(name); len(vals) > 0 {
			r.header[name] = append([]string(nil), vals...)
		}
	}
	r.w.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if !r.overflow {
		if r.buf.Len()+len(p) > r.max {
			r.overflow = true
			r.buf = bytes.Buffer{}
		} else {
			r.buf.Write(p)
		}
	}
	return r.w.Write(p)
}

// Flush implements [http.Flusher] when the underlying writer does.
func (r *recorder) Flush() {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets [http.ResponseController] reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.w }

func writeProblem(w http.ResponseWriter, status int, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"about:blank", http.StatusText(status), status, detail})
}

// A recorded response is encoded as
//
//	version byte (1)
//	uvarint status
//	uvarint number of header fields, then for each:
//	    uvarint length, name, uvarint length, value
//	body (the rest)
const responseVersion = 1

func encodeResponse(status int, header http.Header, body []byte) []byte {
	n := 1 + binary.MaxVarintLen64*2 + len(body)
	fields := 0
	for name, vals := range header {
		for _, v := range vals {
			n += 2*binary.MaxVarintLen64 + len(name) + len(v)
			fields++
		}
	}
	b := make([]byte, 0, n)
	b = append(b, responseVersion)
	b = binary.AppendUvarint(b, uint64(status))
	b = binary.AppendUvarint(b, uint64(fields))
	for name, vals := range header {
		for _, v := range vals {
			b = binary.AppendUvarint(b, uint64(len(name)))
			b = append(b, name...)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, body...)
}

var errBadResponse = errors.New("idempotency: malformed recorded response")

func decodeResponse(b []byte) (status int, header http.Header, body []byte, err error) {
	if len(b) == 0 || b[0] != responseVersion {
		return 0, nil, nil, fmt.Errorf("%w: unknown version", errBadResponse)
	}
	b = b[1:]
	st, n := binary.Uvarint(b)
	if n <= 0 || st < 100 || st > 999 {
		return 0, nil, nil, fmt.Errorf("%w: bad status", errBadResponse)
	}
	b = b[n:]
	fields, n := binary.Uvarint(b)
	if n <= 0 || fields > uint64(len(b)-n)/2 {
		return 0, nil, nil, fmt.Errorf("%w: bad header count", errBadResponse)
	}
	b = b[n:]
	header = make(http.Header, fields)
	next := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	for range fields {
		name, ok := next()
		if !ok || name == "" {
			return 0, nil, nil, fmt.Errorf("%w: bad header name", errBadResponse)
		}
		val, ok := next()
		if !ok {
			return 0, nil, nil, fmt.Errorf("%w: bad header value", errBadResponse)
		}
		header[name] = append(header[name], val)
	}
	return int(st), header, b, nil
}
