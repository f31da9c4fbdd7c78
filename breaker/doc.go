// Package breaker stops calls to a failing dependency for a while, so that
// it can recover and callers fail fast instead of piling up. It wraps
// github.com/sony/gobreaker/v2 with contexts, exclusion of errors that are
// not the dependency's fault, a state hook that is safe to re-enter,
// bounded per-key groups and an HTTP transport with one breaker per host.
//
// # Usage
//
//	cb := breaker.New[*User]("users-db",
//		breaker.WithConsecutiveFailures(5),
//		breaker.WithOpenTimeout(10*time.Second))
//
//	user, err := cb.Execute(ctx, func(ctx context.Context) (*User, error) {
//		return db.GetUser(ctx, id)
//	})
//	if errors.Is(err, breaker.ErrOpen) {
//		// the database is considered down: serve a fallback
//	}
//
// A breaker starts closed and counts outcomes. It opens after
// [WithConsecutiveFailures] failures in a row, or once the failure share of
// a sliding window reaches [WithFailureRate]. While open it rejects calls at
// once with an [*OpenError]. After [WithOpenTimeout] it turns half-open and
// lets [WithHalfOpenRequests] trial calls through: that many successes close
// it, any failure opens it again. [Breaker.Trip] opens it by hand for a
// given time (say, a server's Retry-After) and [Breaker.Reset] closes it.
// Every default is a named constant.
//
// # What counts as a failure
//
// An error returned by fn is a failure, except:
//   - when the caller's context is done by the time fn returns (the caller
//     gave up; a deadline of the dependency's own, with the caller still
//     waiting, is a failure);
//   - errors excluded by [WithExclude] (a not-found, a validation error),
//     which count for nothing;
//   - errors [WithIsFailure] declares successes.
//
// A panic in fn is a failure (and is re-raised), and so is a success slower
// than [WithSlowCall], if set (the caller still gets the result). A call
// whose context is already done is not made and not counted.
//
// # Groups and HTTP
//
// [NewGroup] keeps one breaker per key, bounded in number, evicting idle
// ones. [NewTransport] is an http.RoundTripper with a breaker per host that
// counts transport errors and 5xx responses as failures.
//
// # With retries
//
// [OpenError] has a RetryAfter method returning the time left until a trial
// call is allowed, which the retry package honours: a retry loop around a
// breaker waits out the open period instead of hammering it, and stops early
// if that wait would pass its own deadline. Put the retry outside the
// breaker:
//
//	reply, err := retry.DoValue(ctx, func(ctx context.Context) (*Reply, error) {
//		return cb.Execute(ctx, call)
//	})
//
// The same holds for the two HTTP transports: wrap the breaker transport in
// the retry transport, so that each attempt passes through the host's
// breaker.
//
//	rt, err := retry.NewTransport(breaker.NewTransport(http.DefaultTransport))
//	client := &http.Client{Transport: rt}
//
// The resilienthttp program in the repository's examples directory runs this
// composition end to end.
//
// # Guarantees and limits
//
// Breakers, groups and transports are safe for concurrent use and start no
// goroutines. The state hook runs outside every lock, in transition order,
// one call at a time per breaker. Time is read from the time package (as
// gobreaker does), so tests that depend on time run inside testing/synctest.
// A breaker is local to the process: it does not share state across
// instances.
package breaker
