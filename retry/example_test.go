package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/distkit/distkit/retry"
)

func ExampleDo() {
	calls := 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("connection refused")
		}
		return nil
	}, retry.WithBackOff(&retry.FullJitter{Base: time.Millisecond, Max: 10 * time.Millisecond}))
	fmt.Println(err, calls)
	// Output: <nil> 3
}

func ExampleDoValue() {
	calls := 0
	n, err := retry.DoValue(context.Background(), func(ctx context.Context) (int, error) {
		calls++
		if calls == 1 {
			return 0, errors.New("timeout")
		}
		return 42, nil
	}, retry.WithBackOff(&backoff.ZeroBackOff{}))
	fmt.Println(n, err)
	// Output: 42 <nil>
}

func ExamplePermanent() {
	errNotFound := errors.New("not found")
	calls := 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return fmt.Errorf("get user 7: %w", retry.Permanent(errNotFound))
	})
	fmt.Println(calls, errors.Is(err, errNotFound))
	fmt.Println(err)
	// Output:
	// 1 true
	// retry: permanent error after 1 attempt: get user 7: not found
}

func ExampleWithMaxAttempts() {
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		return errors.New("unavailable")
	}, retry.WithMaxAttempts(3), retry.WithBackOff(&backoff.ZeroBackOff{}))
	fmt.Println(errors.Is(err, retry.ErrExhausted))
	fmt.Println(err)
	// Output:
	// true
	// retry: attempts exhausted after 3 attempts: unavailable
}

func ExampleWithOnRetry() {
	_ = retry.Do(context.Background(), func(ctx context.Context) error {
		return retry.RetryAfter(0, errors.New("rate limited"))
	}, retry.WithMaxAttempts(3), retry.WithOnRetry(func(ctx context.Context, a retry.Attempt) {
		fmt.Printf("attempt %d failed (%v); next in %v\n", a.N, a.Err, a.Delay)
	}))
	// Output:
	// attempt 1 failed (rate limited); next in 0s
	// attempt 2 failed (rate limited); next in 0s
}

func ExampleNewBudget() {
	// One budget per dependency, shared by all its callers: retries may add
	// 10% to recent requests, with no floor here to keep the output short.
	budget, err := retry.NewBudget(0.1, 0, 10*time.Second)
	if err != nil {
		panic(err)
	}
	exhausted := 0
	for range 20 {
		err := retry.Do(context.Background(), func(ctx context.Context) error {
			return errors.New("overloaded")
		}, retry.WithBudget(budget), retry.WithBackOff(&backoff.ZeroBackOff{}))
		if errors.Is(err, retry.ErrBudgetExhausted) {
			exhausted++
		}
	}
	st := budget.Stats()
	fmt.Printf("requests %d, retries %d, calls cut short %d\n", st.Requests, st.Retries, exhausted)
	// Output: requests 20, retries 2, calls cut short 20
}

func ExampleNewTransport() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "created %s (key %s)", body, r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()

	tr, err := retry.NewTransport(srv.Client().Transport, retry.WithRetryOptions(retry.WithMaxAttempts(3)))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr}

	// A POST is retried only because it carries an idempotency key.
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("order 17"))
	req.Header.Set(retry.IdempotencyKeyHeader, "3f1c")
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", hits.Load(), "requests")
	// Output: 200 created order 17 (key 3f1c) after 2 requests
}

func ExampleParseRetryAfter() {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	d1, _ := retry.ParseRetryAfter("120", now)
	d2, _ := retry.ParseRetryAfter("Mon, 23 Nov 2026 12:00:30 GMT", now)
	_, ok := retry.ParseRetryAfter("soon", now)
	fmt.Println(d1, d2, ok)
	// Output: 2m0s 30s false
}

func ExampleDecorrelatedJitter() {
	// Waits start at Base and grow to at most three times the previous
	// wait, never above Max.
	j := &retry.DecorrelatedJitter{Base: 10 * time.Millisecond, Max: time.Second}
	prev := j.Base
	inBounds := true
	for range 20 {
		d := j.NextBackOff()
		inBounds = inBounds && d >= j.Base && d <= min(3*prev, j.Max)
		prev = d
	}
	fmt.Println(inBounds)
	// Output: true
}

func ExampleWithRetryIf() {
	errInvalid := errors.New("invalid argument")
	calls := 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return errInvalid
	}, retry.WithRetryIf(func(err error) bool {
		return !errors.Is(err, errInvalid) // retrying cannot fix bad input
	}))
	fmt.Println(calls, errors.Is(err, retry.ErrPermanent), errors.Is(err, errInvalid))
	// Output: 1 true true
}

func ExampleWithAttemptTimeout() {
	calls := 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if calls == 1 {
			<-ctx.Done() // the first attempt hangs until its own deadline
			return ctx.Err()
		}
		return nil
	}, retry.WithAttemptTimeout(10*time.Millisecond), retry.WithBackOff(&backoff.ZeroBackOff{}))
	fmt.Println(calls, err)
	// Output: 2 <nil>
}

func ExampleRetryAfter() {
	// An operation that learns how long the server wants it to wait (from a
	// header, a gRPC pushback, a rate limiter) returns RetryAfter; Do waits
	// that long instead of its backoff step, within WithMaxRetryAfter.
	var waits []time.Duration
	calls := 0
	_ = retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return retry.RetryAfter(20*time.Millisecond, errors.New("rate limited"))
		}
		return nil
	}, retry.WithOnRetry(func(ctx context.Context, a retry.Attempt) { waits = append(waits, a.Delay) }))
	fmt.Println(calls, waits)
	// Output: 2 [20ms]
}

func ExampleWithBackOff() {
	// Any backoff/v4 policy works. An *ExponentialBackOff (like the jitter
	// policies of this package) is copied per call, so one value can be
	// shared by every caller.
	shared := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(time.Millisecond),
		backoff.WithMaxInterval(10*time.Millisecond))
	calls := 0
	err := retry.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("busy")
		}
		return nil
	}, retry.WithBackOff(shared), retry.WithMaxAttempts(5))
	fmt.Println(calls, err)
	// Output: 3 <nil>
}
