package quorum

import (
	"context"
	"fmt"
	"sync"
)

// Call runs fn against every replica concurrently and returns as soon as
// `need` succeed, cancelling the rest; it fails as soon as `need` successes
// have become impossible.
//
// The results are the first need successful values in completion order.
// When the call fails, the error is an [*Error] (errors.Is(err, ErrNoQuorum))
// listing every replica that failed before Call returned; if ctx ended first,
// Error.Cause holds ctx.Err(). A need outside 1..len(replicas) returns an
// error wrapping [ErrNeed] and calls nothing.
//
// Call never waits for stragglers: when it returns, the context passed to
// each unfinished fn is cancelled and its goroutine finishes in the
// background, as soon as fn honours the cancellation. fn must therefore
// return promptly once its context is done; Call itself holds no reference to
// a straggler's result, and the goroutine never blocks on delivering it.
func Call[R, T any](ctx context.Context, replicas []R, need int,
	fn func(context.Context, R) (T, error)) ([]T, error) {
	return gather(ctx, replicas, need, fn, func(_ int, v T) T { return v })
}

// Result is one replica's successful reply in [Gather].
type Result[T any] struct {
	Index int // position of the replica in the slice given to Gather
	Value T
}

// Gather is [Call] reporting which replica gave each result: it returns the
// first need successful replies, in completion order, with their replica's
// index. Everything else, errors and cancellation included, is as for Call.
func Gather[R, T any](ctx context.Context, replicas []R, need int,
	fn func(context.Context, R) (T, error)) ([]Result[T], error) {
	return gather(ctx, replicas, need, fn, func(i int, v T) Result[T] { return Result[T]{i, v} })
}

func gather[R, T, U any](ctx context.Context, replicas []R, need int,
	fn func(context.Context, R) (T, error), wrap func(int, T) U) ([]U, error) {
	n := len(replicas)
	if need < 1 || need > n {
		return nil, fmt.Errorf("%w: need %d of %d replicas", ErrNeed, need, n)
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Need: need, Cause: err}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Replies are recorded under a mutex and the caller is woken once, when
	// the outcome is decided, rather than once per reply.
	var (
		mu      sync.Mutex
		out     = make([]U, 0, need)
		failed  []ReplicaError
		decided bool
		done    = make(chan struct{})
	)
	for i, r := range replicas {
		go func() {
			v, err := fn(cctx, r)
			mu.Lock()
			defer mu.Unlock()
			if decided {
				return
			}
			if err != nil {
				failed = append(failed, ReplicaError{Index: i, Err: err})
				decided = len(failed) > n-need
			} else {
				out = append(out, wrap(i, v))
				decided = len(out) == need
			}
			if decided {
				close(done)
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		if !decided {
			decided = true
			err := &Error{Need: need, Succeeded: len(out), Failed: failed, Cause: ctx.Err()}
			mu.Unlock()
			return nil, err
		}
		mu.Unlock()
	}
	// decided is set: no goroutine touches out or failed any more.
	if len(out) == need {
		return out, nil
	}
	// Replicas failing because the caller cancelled report the cancellation.
	return nil, &Error{Need: need, Succeeded: len(out), Failed: failed, Cause: ctx.Err()}
}
