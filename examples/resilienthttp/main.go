// Command resilienthttp shows an HTTP client built from the retry and
// breaker packages: it retries only requests that are safe to repeat, draws
// retries from a shared budget, keeps one circuit breaker per host, and,
// when a host's breaker is open, waits until the breaker allows a trial
// request instead of hammering the host.
//
// It starts a local server that fails its first requests, then fetches a
// page through the client and prints what happened:
//
//	go run ./examples/resilienthttp
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/breaker"
	"github.com/distkit/distkit/retry"
)

// Config holds the client's knobs.
type Config struct {
	Failures    uint32        // consecutive failures that open a host's breaker
	OpenTimeout time.Duration // how long a breaker stays open
	MaxAttempts int           // attempts per request, the first included
	Budget      *retry.Budget // retries shared by all requests; nil for none
	OnRetry     func(context.Context, retry.Attempt)
}

// NewClient returns an http.Client whose transport is retry outside
// breaker outside base: every attempt passes through the host's breaker, and
// a rejection by an open breaker makes the retry wait out the open period.
func NewClient(base http.RoundTripper, c Config) (*http.Client, error) {
	perHost := breaker.NewTransport(base,
		breaker.WithConsecutiveFailures(c.Failures),
		breaker.WithOpenTimeout(c.OpenTimeout))
	opts := []retry.Option{
		retry.WithMaxAttempts(c.MaxAttempts),
		retry.WithBackOff(&retry.FullJitter{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}),
		retry.WithOnRetry(c.OnRetry),
	}
	if c.Budget != nil {
		opts = append(opts, retry.WithBudget(c.Budget))
	}
	rt, err := retry.NewTransport(perHost, retry.WithRetryOptions(opts...))
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, Timeout: time.Minute}, nil
}

// Reason describes why an attempt is being retried.
func Reason(err error) string {
	var se *retry.StatusError
	switch {
	case errors.Is(err, breaker.ErrOpen):
		return "breaker open, waiting until it allows a trial request"
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d", se.StatusCode)
	}
	return err.Error()
}

// flakyServer fails its first n requests with 503.
func flakyServer(n int32) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= n {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "hello")
	}))
	return srv, &hits
}

func run(w io.Writer) error {
	srv, hits := flakyServer(5)
	defer srv.Close()
	budget, err := retry.NewBudget(retry.DefaultBudgetRatio, retry.DefaultBudgetMinPerSecond, retry.DefaultBudgetWindow)
	if err != nil {
		return err
	}
	client, err := NewClient(srv.Client().Transport, Config{
		Failures:    3,
		OpenTimeout: 300 * time.Millisecond,
		MaxAttempts: 10,
		Budget:      budget,
		OnRetry: func(_ context.Context, a retry.Attempt) {
			fmt.Fprintf(w, "attempt %d: %s\n", a.N, Reason(a.Err))
		},
	})
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d %q; the server saw %d requests\n", resp.StatusCode, body, hits.Load())
	return nil
}

func main() {
	if err := run(os.Stdout); err != nil {
		log.Fatal(err)
	}
}
