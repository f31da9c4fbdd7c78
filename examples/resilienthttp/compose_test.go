package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/breaker"
	"github.com/distkit/distkit/retry"
)

var errDown = errors.New("down")

// TestRetryWaitsOutOpenBreaker checks the composition on virtual time: a
// retry around an open breaker never calls the dependency while the breaker
// is open, and waits exactly until the breaker allows a trial call.
func TestRetryWaitsOutOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openFor = 10 * time.Second
		cb := breaker.New[string]("dep", breaker.WithConsecutiveFailures(2), breaker.WithOpenTimeout(openFor))
		var calls []time.Time
		start := time.Now()
		v, err := retry.DoValue(context.Background(), func(ctx context.Context) (string, error) {
			return cb.Execute(ctx, func(context.Context) (string, error) {
				calls = append(calls, time.Now())
				if len(calls) <= 4 {
					return "", errDown
				}
				return "ok", nil
			})
		}, retry.WithMaxAttempts(10), retry.WithBackOff(&backoff.ZeroBackOff{}))
		if v != "ok" || err != nil {
			t.Fatalf("DoValue = %q, %v", v, err)
		}
		// Calls 1 and 2 open the breaker; calls 3 and 4 are failed trials;
		// call 5 is the successful trial. Each trial comes one open period
		// (plus the rounding to a millisecond) after the previous opening.
		if len(calls) != 5 {
			t.Fatalf("%d calls, want 5", len(calls))
		}
		for i := 2; i < 5; i++ {
			gap := calls[i].Sub(calls[i-1])
			if gap <= openFor || gap > openFor+time.Millisecond {
				t.Errorf("call %d came %v after call %d, want just over %v", i+1, gap, i, openFor)
			}
		}
		if cb.State() != breaker.StateClosed {
			t.Fatal("breaker not closed after the successful trial")
		}
		if total := time.Since(start); total > 3*(openFor+time.Millisecond) {
			t.Fatalf("took %v", total)
		}
	})
}

// TestRetryGivesUpWhenOpenPeriodPassesDeadline checks that a retry whose
// deadline falls inside the open period fails at once instead of waiting.
func TestRetryGivesUpWhenOpenPeriodPassesDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := breaker.New[int]("dep", breaker.WithConsecutiveFailures(1), breaker.WithOpenTimeout(time.Minute))
		cb.Execute(context.Background(), func(context.Context) (int, error) { return 0, errDown })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		_, err := retry.DoValue(ctx, func(ctx context.Context) (int, error) {
			return cb.Execute(ctx, func(context.Context) (int, error) { return 1, nil })
		})
		if !errors.Is(err, breaker.ErrOpen) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want ErrOpen and DeadlineExceeded", err)
		}
		if time.Since(start) != 0 {
			t.Fatalf("waited %v for a wait that could not finish in time", time.Since(start))
		}
	})
}

// handlerTransport serves requests in memory, so the HTTP composition can
// run on virtual time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestComposedTransportOnVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hits []time.Time
		var bodies []string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits = append(hits, time.Now())
			var b bytes.Buffer
			b.ReadFrom(r.Body)
			bodies = append(bodies, b.String()+" "+r.Header.Get(retry.IdempotencyKeyHeader))
			if len(hits) <= 4 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.Write([]byte("done"))
		})
		client, err := NewClient(handlerTransport{h}, Config{Failures: 2, OpenTimeout: time.Second, MaxAttempts: 10})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://payments.internal/charge", bytes.NewBufferString("42 EUR"))
		req.Header.Set(retry.IdempotencyKeyHeader, "charge-7")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || len(hits) != 5 {
			t.Fatalf("status %d after %d hits; want 200 after 5", resp.StatusCode, len(hits))
		}
		for i, b := range bodies {
			if b != "42 EUR charge-7" {
				t.Errorf("hit %d got %q; want the same body and key every time", i+1, b)
			}
		}
		for i := 2; i < len(hits); i++ {
			if gap := hits[i].Sub(hits[i-1]); gap <= time.Second {
				t.Errorf("hit %d only %v after hit %d: the open breaker was hammered", i+1, gap, i)
			}
		}
	})
}

// TestDefaultsCompose checks that the two packages' defaults fit together: a
// retry with default options around a breaker with default options, opened
// by earlier failures, waits out the open period in one step and succeeds on
// the trial call.
func TestDefaultsCompose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cb := breaker.New[int]("dep")
		for range breaker.DefaultConsecutiveFailures {
			cb.Execute(context.Background(), func(context.Context) (int, error) { return 0, errDown })
		}
		attempts, calls := 0, 0
		start := time.Now()
		v, err := retry.DoValue(context.Background(), func(ctx context.Context) (int, error) {
			attempts++
			return cb.Execute(ctx, func(context.Context) (int, error) { calls++; return 7, nil })
		})
		if v != 7 || err != nil || attempts != 2 || calls != 1 {
			t.Fatalf("DoValue = %d, %v after %d attempts and %d calls; want 7 after 2 attempts, 1 call", v, err, attempts, calls)
		}
		if waited := time.Since(start); waited <= breaker.DefaultOpenTimeout || waited > breaker.DefaultOpenTimeout+time.Millisecond {
			t.Fatalf("waited %v, want just over %v", waited, breaker.DefaultOpenTimeout)
		}
	})
}
