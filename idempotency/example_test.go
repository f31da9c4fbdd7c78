package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/cenkalti/backoff/v4"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/retry"
)

func ExampleGuard_Do() {
	g := idempotency.New(idempotency.NewMemoryStore())
	charges := 0
	charge := func(ctx context.Context) ([]byte, error) {
		charges++
		return []byte("receipt #1: 42.00 EUR"), nil
	}

	// The client's key for this payment, sent again on every retry.
	key := "0191f4c2-7a4e-7c3a-9c1d-1f2e3d4c5b6a"
	fp := idempotency.Fingerprint([]byte("acct-7"), []byte("42.00 EUR"))

	first, _ := g.Do(context.Background(), key, fp, charge)
	retry, _ := g.Do(context.Background(), key, fp, charge)
	fmt.Printf("%s\n%s\ncharges: %d\n", first, retry, charges)

	// The same key with another request is refused.
	other := idempotency.Fingerprint([]byte("acct-7"), []byte("99.00 EUR"))
	_, err := g.Do(context.Background(), key, other, charge)
	fmt.Println(errors.Is(err, idempotency.ErrKeyReused))
	// Output:
	// receipt #1: 42.00 EUR
	// receipt #1: 42.00 EUR
	// charges: 1
	// true
}

func ExampleMiddleware() {
	orders := 0
	create := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", orders))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d created\n", orders)
	})
	h := idempotency.Middleware(idempotency.New(nil), idempotency.WithRequired(true))(create)

	post := func(key, body string) {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Printf("%d %s replayed=%q %s", w.Code, w.Header().Get("Location"),
			w.Header().Get("Idempotent-Replayed"), w.Body)
	}
	post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"item":"book"}`)
	post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"item":"book"}`) // a retry
	post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"item":"pen"}`)  // key reused
	post("", `{"item":"book"}`)                                       // no key
	fmt.Println("orders:", orders)
	// Output:
	// 201 /orders/1 replayed="" order 1 created
	// 201 /orders/1 replayed="true" order 1 created
	// 422  replayed="" {"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"This Idempotency-Key was already used with a different request."}
	// 400  replayed="" {"type":"about:blank","title":"Bad Request","status":400,"detail":"This request requires an Idempotency-Key header."}
	// orders: 1
}

// lossyTransport hands requests to a handler in process and loses the
// first responses, as a network that fails after the server acted would.
type lossyTransport struct {
	h    http.Handler
	lose int
}

func (t *lossyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	if t.lose > 0 {
		t.lose--
		return nil, errors.New("connection reset by peer")
	}
	return w.Result(), nil
}

// A client makes one key per payment and sends it on every attempt, so the
// server charges once however many attempts it takes. The retry package's
// transport retries a POST only because it carries an Idempotency-Key.
func ExampleNewKey_retryingClient() {
	charges := 0
	pay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		charges++
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "paid")
	})
	server := idempotency.Middleware(idempotency.New(nil))(pay)
	retrying, err := retry.NewTransport(&lossyTransport{h: server, lose: 2}, retry.WithRetryOptions(
		retry.WithMaxAttempts(5),
		retry.WithBackOff(&backoff.ZeroBackOff{}), // a real client keeps the jittered default
		retry.WithOnRetry(func(_ context.Context, a retry.Attempt) {
			fmt.Printf("attempt %d: %v\n", a.N, a.Err)
		}),
	))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: retrying}

	key := idempotency.NewKey() // once per payment, not per attempt
	req, _ := http.NewRequest(http.MethodPost, "http://payments.example/pay", bytes.NewReader([]byte(`{"amount":"42.00 EUR"}`)))
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("answer: %d %s replayed=%s\n", resp.StatusCode, msg, resp.Header.Get("Idempotent-Replayed"))
	fmt.Println("charges:", charges)
	// Output:
	// attempt 1: connection reset by peer
	// attempt 2: connection reset by peer
	// answer: 201 paid replayed=true
	// charges: 1
}

// A declined card is a final answer: record it, so a retry with the same
// key gets the same refusal instead of charging again.
func ExampleWithRecordErrors() {
	errDeclined := errors.New("card declined")
	g := idempotency.New(nil, idempotency.WithRecordErrors(func(err error) bool {
		return errors.Is(err, errDeclined)
	}))
	attempts := 0
	charge := func(ctx context.Context) ([]byte, error) {
		attempts++
		return nil, fmt.Errorf("charge 42.00 EUR: %w", errDeclined)
	}
	for range 2 {
		_, err := g.Do(context.Background(), "payment-1", nil, charge)
		var recorded *idempotency.RecordedError
		fmt.Println(err, errors.As(err, &recorded))
	}
	fmt.Println("attempts:", attempts)
	// Output:
	// charge 42.00 EUR: card declined false
	// charge 42.00 EUR: card declined true
	// attempts: 1
}

// Each authenticated client gets its own key space, so a key one client
// used cannot answer, or block, another client's request.
func ExampleScopedKey() {
	g := idempotency.New(nil)
	pay := func(who string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return []byte("paid by " + who), nil }
	}
	fp := idempotency.Fingerprint([]byte("42.00 EUR"))
	ctx := context.Background()
	a, _ := g.Do(ctx, idempotency.ScopedKey("mallory", "pay-42"), fp, pay("mallory"))
	b, _ := g.Do(ctx, idempotency.ScopedKey("alice", "pay-42"), fp, pay("alice"))
	fmt.Printf("%s\n%s\n", a, b)
	// Output:
	// paid by mallory
	// paid by alice
}

// A MemoryStore never drops a live record to make room: when it is full,
// new keys are refused until records expire, and recorded results are
// still replayed.
func ExampleMemoryStore_full() {
	g := idempotency.New(idempotency.NewMemoryStore(idempotency.WithMaxEntries(1), idempotency.WithShards(1)))
	ctx := context.Background()
	run := func(context.Context) ([]byte, error) { return []byte("done"), nil }
	v, _ := g.Do(ctx, "first", nil, run)
	_, err := g.Do(ctx, "second", nil, run)
	replay, _ := g.Do(ctx, "first", nil, run)
	fmt.Println(string(v), errors.Is(err, idempotency.ErrStoreFull), string(replay))
	// Output:
	// done true done
}
