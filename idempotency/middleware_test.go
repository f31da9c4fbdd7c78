package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/distkit/distkit/idempotency"
)

// orders is a handler that creates an order per request it runs.
type orders struct {
	runs   atomic.Int32
	status int
	body   string
	block  chan struct{} // if set, each request waits for it
}

func (o *orders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.runs.Add(1)
	if o.block != nil {
		<-o.block
	}
	in, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/1")
	w.Header().Set("X-Request-Count", string(rune('0'+n)))
	status := o.status
	if status == 0 {
		status = http.StatusCreated
	}
	w.WriteHeader(status)
	if o.body != "" {
		io.WriteString(w, o.body)
		return
	}
	io.WriteString(w, `{"order":1,"item":`+string(in)+`}`)
}

func request(method, target, key, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d; want %d (body %s)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q; want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem body %s: %+v, %v", w.Body, p, err)
	}
}

func TestMiddlewareReplaysResponse(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil))(h)
	first := serve(srv, request("POST", "/orders?x=1", "key-1", `"book"`))
	if first.Code != http.StatusCreated || first.Header().Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("first response %d, replayed header %q", first.Code, first.Header().Get(idempotency.ReplayedHeader))
	}
	for _, key := range []string{"key-1", `"key-1"`, ` "key-1" `} { // bare and sf-string keys are the same key
		again := serve(srv, request("POST", "/orders?x=1", key, `"book"`))
		if again.Code != http.StatusCreated || again.Body.String() != first.Body.String() {
			t.Fatalf("key %s: replay %d %q; want %d %q", key, again.Code, again.Body, first.Code, first.Body)
		}
		hdr := again.Header()
		if hdr.Get(idempotency.ReplayedHeader) != "true" || hdr.Get("Content-Type") != "application/json" ||
			hdr.Get("Location") != "/orders/1" || hdr.Get("X-Request-Count") != "" {
			t.Fatalf("key %s: replay headers %v; want Content-Type, Location and Idempotent-Replayed only", key, hdr)
		}
	}
	if h.runs.Load() != 1 {
		t.Fatalf("handler ran %d times; want 1", h.runs.Load())
	}
}

func TestMiddlewareKeyReused(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil))(h)
	serve(srv, request("POST", "/orders?x=1", "k", "a"))
	for _, r := range []*http.Request{
		request("POST", "/orders?x=1", "k", "b"),   // body
		request("POST", "/orders?x=2", "k", "a"),   // query
		request("POST", "/payments?x=1", "k", "a"), // path
		request("PATCH", "/orders?x=1", "k", "a"),  // method
	} {
		wantProblem(t, serve(srv, r), http.StatusUnprocessableEntity)
	}
	if h.runs.Load() != 1 {
		t.Fatalf("handler ran %d times; want 1", h.runs.Load())
	}
}

func TestMiddlewareMissingKey(t *testing.T) {
	h := &orders{}
	optional := idempotency.Middleware(idempotency.New(nil))(h)
	for range 2 {
		if w := serve(optional, request("POST", "/orders", "", "a")); w.Code != http.StatusCreated {
			t.Fatalf("keyless request = %d; want it passed through", w.Code)
		}
	}
	required := idempotency.Middleware(idempotency.New(nil), idempotency.WithRequired(true))(h)
	wantProblem(t, serve(required, request("POST", "/orders", "", "a")), http.StatusBadRequest)
	if h.runs.Load() != 2 {
		t.Fatalf("handler ran %d times; want 2 (the required-key request refused)", h.runs.Load())
	}
}

func TestMiddlewareMalformedKey(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil))(h)
	for name, values := range map[string][]string{
		"empty":          {""},
		"empty quoted":   {`""`},
		"too long":       {strings.Repeat("k", idempotency.MaxKeyLen+1)},
		"too long quote": {`"` + strings.Repeat("k", idempotency.MaxKeyLen+1) + `"`},
		"control byte":   {"ab\x01c"},
		"non-ASCII":      {"clé"},
		"space in bare":  {"a b"},
		"unterminated":   {`"abc`},
		"bad escape":     {`"a\nb"`},
		"after quote":    {`"a"b`},
		"two fields":     {"a", "b"},
	} {
		r := request("POST", "/orders", "", "a")
		r.Header["Idempotency-Key"] = values
		t.Run(name, func(t *testing.T) {
			wantProblem(t, serve(srv, r), http.StatusBadRequest)
		})
	}
	if h.runs.Load() != 0 {
		t.Fatalf("handler ran %d times for malformed keys", h.runs.Load())
	}
	longest := strings.Repeat("k", idempotency.MaxKeyLen)
	if w := serve(srv, request("POST", "/orders", longest, "a")); w.Code != http.StatusCreated {
		t.Fatalf("key of %d characters = %d; want accepted", idempotency.MaxKeyLen, w.Code)
	}
}

func TestMiddlewareOtherMethodsPassThrough(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil))(h)
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"} {
		for range 2 {
			if w := serve(srv, request(m, "/orders", "k", "")); w.Header().Get(idempotency.ReplayedHeader) != "" {
				t.Fatalf("%s was deduplicated", m)
			}
		}
	}
	if h.runs.Load() != 12 {
		t.Fatalf("handler ran %d times; want 12", h.runs.Load())
	}
	put := idempotency.Middleware(idempotency.New(nil), idempotency.WithMethods("PUT"))(h)
	serve(put, request("PUT", "/orders", "k", "a"))
	if w := serve(put, request("PUT", "/orders", "k", "a")); w.Header().Get(idempotency.ReplayedHeader) != "true" {
		t.Fatal("WithMethods(PUT) did not cover PUT")
	}
}

func TestMiddlewareBodyLimit(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil), idempotency.WithMaxBody(4))(h)
	wantProblem(t, serve(srv, request("POST", "/orders", "k", "12345")), http.StatusRequestEntityTooLarge)
	r := request("POST", "/orders", "k2", "12345")
	r.ContentLength = -1 // unknown length: the limit applies while reading
	wantProblem(t, serve(srv, r), http.StatusRequestEntityTooLarge)
	if w := serve(srv, request("POST", "/orders", "k3", "1234")); w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), "1234") {
		t.Fatalf("body at the limit = %d %q; want the handler to see it", w.Code, w.Body)
	}
	if h.runs.Load() != 1 {
		t.Fatalf("handler ran %d times; want 1", h.runs.Load())
	}
}

func TestMiddlewareDoesNotRecord5xxOrLargeResponses(t *testing.T) {
	for name, h := range map[string]*orders{
		"5xx":   {status: http.StatusServiceUnavailable},
		"large": {body: strings.Repeat("x", 101)},
	} {
		t.Run(name, func(t *testing.T) {
			srv := idempotency.Middleware(idempotency.New(nil), idempotency.WithMaxResponse(100))(h)
			for i := range 2 {
				w := serve(srv, request("POST", "/orders", "k", "a"))
				if w.Header().Get(idempotency.ReplayedHeader) != "" || w.Code != max(h.status, 201) {
					t.Fatalf("request %d: %d replayed=%q; want the handler's own response", i, w.Code, w.Header().Get(idempotency.ReplayedHeader))
				}
				if name == "large" && w.Body.Len() != 101 {
					t.Fatalf("large response cut to %d bytes", w.Body.Len())
				}
			}
			if h.runs.Load() != 2 {
				t.Fatalf("handler ran %d times; want 2 (nothing recorded)", h.runs.Load())
			}
		})
	}
}

func TestMiddlewareConcurrentRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []idempotency.Option
		status int
	}{
		{"fail fast", []idempotency.Option{idempotency.WithFailFast()}, http.StatusConflict},
		{"wait", nil, http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &orders{block: make(chan struct{})}
				srv := idempotency.Middleware(idempotency.New(nil, tc.opts...))(h)
				first := make(chan *httptest.ResponseRecorder)
				go func() { first <- serve(srv, request("POST", "/orders", "k", "a")) }()
				synctest.Wait()
				second := make(chan *httptest.ResponseRecorder)
				go func() { second <- serve(srv, request("POST", "/orders", "k", "a")) }()
				synctest.Wait()
				if tc.status == http.StatusConflict {
					w := <-second
					wantProblem(t, w, http.StatusConflict)
					if w.Header().Get("Retry-After") != "1" {
						t.Fatalf("Retry-After = %q; want 1", w.Header().Get("Retry-After"))
					}
				}
				close(h.block)
				if w := <-first; w.Code != http.StatusCreated {
					t.Fatalf("first = %d", w.Code)
				}
				if tc.status == http.StatusCreated {
					w := <-second
					if w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "true" {
						t.Fatalf("waiting duplicate = %d replayed=%q; want the replay", w.Code, w.Header().Get(idempotency.ReplayedHeader))
					}
				}
				if h.runs.Load() != 1 {
					t.Fatalf("handler ran %d times; want 1", h.runs.Load())
				}
			})
		})
	}
}

func TestMiddlewareConflictAcrossProcesses(t *testing.T) {
	store := idempotency.NewMemoryStore()
	h := &orders{}
	// Another process sharing the store is handling the request.
	other := idempotency.Middleware(idempotency.New(store))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mine := idempotency.Middleware(idempotency.New(store))(h)
		w2 := serve(mine, request("POST", "/orders", "k", "a"))
		wantProblem(t, w2, http.StatusConflict)
		w.WriteHeader(http.StatusAccepted)
	}))
	if w := serve(other, request("POST", "/orders", "k", "a")); w.Code != http.StatusAccepted {
		t.Fatalf("outer = %d", w.Code)
	}
	if h.runs.Load() != 0 {
		t.Fatal("handler ran while another process held the key")
	}
}

func TestMiddlewareHandlerPanicReleasesKey(t *testing.T) {
	var panicked atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if panicked.CompareAndSwap(false, true) {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusCreated)
	})
	srv := idempotency.Middleware(idempotency.New(nil))(h)
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("recovered %v; want the handler's panic", p)
			}
		}()
		serve(srv, request("POST", "/orders", "k", "a"))
	}()
	if w := serve(srv, request("POST", "/orders", "k", "a")); w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("retry after panic = %d; want the handler to run again", w.Code)
	}
}

func TestMiddlewareScopeAndOptions(t *testing.T) {
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(nil),
		idempotency.WithScope(func(r *http.Request) string { return r.Header.Get("Tenant") }),
		idempotency.WithKeyHeader("X-Key"),
		idempotency.WithFingerprintHeaders("Account"),
		idempotency.WithReplayHeaders("X-Request-Count"),
	)(h)
	req := func(tenant, account string) *http.Request {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader("a"))
		r.Header.Set("X-Key", "k")
		r.Header.Set("Tenant", tenant)
		r.Header.Set("Account", account)
		return r
	}
	serve(srv, req("t1", "acc"))
	serve(srv, req("t2", "acc")) // another tenant: same key, independent
	if h.runs.Load() != 2 {
		t.Fatalf("handler ran %d times; want once per tenant", h.runs.Load())
	}
	w := serve(srv, req("t1", "acc"))
	if w.Header().Get(idempotency.ReplayedHeader) != "true" || w.Header().Get("X-Request-Count") != "1" || w.Header().Get("Location") != "" {
		t.Fatalf("replay headers = %v; want only X-Request-Count replayed", w.Header())
	}
	wantProblem(t, serve(srv, req("t1", "other")), http.StatusUnprocessableEntity)
}

func TestMiddlewareStoreFailure(t *testing.T) {
	g := idempotency.New(&faultyStore{MemoryStore: idempotency.NewMemoryStore(), claimErr: errors.New("down")})
	h := &orders{}
	wantProblem(t, serve(idempotency.Middleware(g)(h), request("POST", "/orders", "k", "a")), http.StatusServiceUnavailable)
	if h.runs.Load() != 0 {
		t.Fatal("handler ran although the store failed")
	}
}

func TestMiddlewareCorruptRecord(t *testing.T) {
	s := idempotency.NewMemoryStore()
	srv := idempotency.Middleware(idempotency.New(s))(&orders{})
	w := serve(srv, request("POST", "/orders", "k", "a"))
	if w.Code != http.StatusCreated {
		t.Fatal(w.Code)
	}
	// Overwrite the record with garbage, as a broken shared store might.
	rec, _ := s.Get(context.Background(), "k")
	s2 := idempotency.NewMemoryStore()
	r2, _, _ := s2.Claim(context.Background(), "k", rec.Fingerprint, idempotency.DefaultLease)
	s2.Complete(context.Background(), "k", r2.Token, idempotency.Result{Value: []byte{9, 9}}, idempotency.DefaultTTL)
	wantProblem(t, serve(idempotency.Middleware(idempotency.New(s2))(&orders{}), request("POST", "/orders", "k", "a")),
		http.StatusInternalServerError)
}

// TestMiddlewareStoreFull: when the store has no room, a new key gets 503
// with Retry-After and the handler does not run; the recorded response of
// an earlier key is still replayed (it used to be evicted to make room).
func TestMiddlewareStoreFull(t *testing.T) {
	s := idempotency.NewMemoryStore(idempotency.WithMaxEntries(1), idempotency.WithShards(1))
	h := &orders{}
	srv := idempotency.Middleware(idempotency.New(s))(h)
	if w := serve(srv, request("POST", "/orders", "first", "a")); w.Code != http.StatusCreated {
		t.Fatalf("first request = %d", w.Code)
	}
	w := serve(srv, request("POST", "/orders", "second", "b"))
	wantProblem(t, w, http.StatusServiceUnavailable)
	if ra := w.Header().Get("Retry-After"); ra != "5" {
		t.Fatalf("Retry-After = %q; want 5", ra)
	}
	if w := serve(srv, request("POST", "/orders", "first", "a")); w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("retry of the first request = %d %v; want the replay", w.Code, w.Header())
	}
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
}
