package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/distkit/distkit/breaker"
)

func ExampleNew() {
	cb := breaker.New[string]("inventory",
		breaker.WithConsecutiveFailures(3),
		breaker.WithOpenTimeout(30*time.Second))

	calls := 0
	lookup := func(ctx context.Context) (string, error) {
		calls++
		return "", errors.New("connection refused")
	}
	for range 5 {
		_, err := cb.Execute(context.Background(), lookup)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			fmt.Println("rejected; trial call in", open.Remaining.Round(time.Second))
			continue
		}
		fmt.Println(err)
	}
	fmt.Println("calls made:", calls, "state:", cb.State())
	// Output:
	// connection refused
	// connection refused
	// connection refused
	// rejected; trial call in 30s
	// rejected; trial call in 30s
	// calls made: 3 state: open
}

func ExampleBreaker_Execute() {
	cb := breaker.New[int]("pricing")
	price, err := cb.Execute(context.Background(), func(ctx context.Context) (int, error) {
		return 1299, nil
	})
	fmt.Println(price, err, cb.State())
	// Output: 1299 <nil> closed
}

func ExampleWithExclude() {
	errNotFound := errors.New("not found")
	cb := breaker.New[string]("users",
		breaker.WithConsecutiveFailures(1),
		// A missing user is the caller's problem, not the database's.
		breaker.WithExclude(func(err error) bool { return errors.Is(err, errNotFound) }))
	for range 3 {
		cb.Execute(context.Background(), func(ctx context.Context) (string, error) {
			return "", errNotFound
		})
	}
	st := cb.Stats()
	fmt.Println(st.State, st.Exclusions, st.Failures)
	// Output: closed 3 0
}

func ExampleWithOnStateChange() {
	cb := breaker.New[int]("search",
		breaker.WithConsecutiveFailures(2),
		breaker.WithOnStateChange(func(c breaker.StateChange) {
			fmt.Printf("%s: %v -> %v\n", c.Name, c.From, c.To)
		}))
	for range 2 {
		cb.Execute(context.Background(), func(ctx context.Context) (int, error) {
			return 0, errors.New("timeout")
		})
	}
	// Output: search: closed -> open
}

func ExampleNewGroup() {
	g := breaker.NewGroup[string](breaker.WithConsecutiveFailures(1), breaker.WithMaxKeys(100))
	ctx := context.Background()
	g.Execute(ctx, "eu-west", func(ctx context.Context) (string, error) { return "", errors.New("down") })
	_, errEU := g.Execute(ctx, "eu-west", func(ctx context.Context) (string, error) { return "ok", nil })
	us, errUS := g.Execute(ctx, "us-east", func(ctx context.Context) (string, error) { return "ok", nil })
	fmt.Println(errors.Is(errEU, breaker.ErrOpen), us, errUS, g.Len())
	// Output: true ok <nil> 2
}

func ExampleNewTransport() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	client := &http.Client{Transport: breaker.NewTransport(srv.Client().Transport,
		breaker.WithConsecutiveFailures(2))}
	for range 3 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println("error:", errors.Is(err, breaker.ErrOpen))
			continue
		}
		resp.Body.Close()
		fmt.Println("status:", resp.StatusCode)
	}
	// Output:
	// status: 503
	// status: 503
	// error: true
}

func ExampleBreaker_Trip() {
	cb := breaker.New[string]("payments")
	// The provider answered 429 with "Retry-After: 120": stop calling it.
	cb.Trip(120 * time.Second)
	_, err := cb.Execute(context.Background(), func(ctx context.Context) (string, error) {
		return "charged", nil
	})
	var open *breaker.OpenError
	fmt.Println(errors.As(err, &open), open.Remaining.Round(time.Second), cb.State())
	cb.Reset() // e.g. an operator knows it is back
	fmt.Println(cb.State())
	// Output:
	// true 2m0s open
	// closed
}
