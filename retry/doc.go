// Package retry calls an operation again when it fails, with jittered
// exponential backoff, bounded attempts and elapsed time, a shared retry
// budget, and an HTTP transport that only repeats requests that are safe to
// repeat. It is built on the BackOff interface of
// github.com/cenkalti/backoff/v4, so any backoff/v4 policy can space the
// retries.
//
// # Usage
//
//	err := retry.Do(ctx, func(ctx context.Context) error {
//		return client.Ping(ctx)
//	})
//
//	user, err := retry.DoValue(ctx, func(ctx context.Context) (User, error) {
//		return client.GetUser(ctx, id)
//	}, retry.WithMaxAttempts(5), retry.WithAttemptTimeout(time.Second))
//
// With no options a call makes at most [DefaultMaxAttempts] attempts, starts
// no wait that would end more than [DefaultMaxElapsed] after the first
// failure, and
// waits a [FullJitter] delay between [DefaultBaseDelay] and
// [DefaultMaxDelay]. Every default is a named constant.
//
// # Guarantees
//
//   - The first attempt runs at once; on success Do returns nil and has
//     allocated nothing for backoff.
//   - A failed call returns an [*Error] that matches both the operation's
//     last error and the reason retrying stopped ([ErrExhausted],
//     [ErrMaxElapsed], [ErrBudgetExhausted], [ErrPermanent] or the context's
//     error) with errors.Is.
//   - [Permanent] stops at once, survives %w wrapping, and is consumed by the
//     Do that sees it, so nested retries behave.
//   - A done context is never followed by another attempt: waits end at
//     once, and an operation is not started once the context is done. A wait
//     that would overrun the context deadline or the elapsed bound is not
//     started at all.
//   - A server's requested delay ([RetryAfter], an HTTP Retry-After header,
//     or any error with a RetryAfter() time.Duration method) replaces the
//     backoff step, capped by [WithMaxRetryAfter].
//   - Option values, the jitter policies and *backoff.ExponentialBackOff may
//     be shared between goroutines; each call keeps its own backoff state.
//
// # Budgets
//
// Retries multiply load exactly when a dependency is struggling. A [Budget]
// shared by every caller of one dependency caps retries at a ratio of recent
// requests plus a small floor (Finagle's rule); once it is spent, calls fail
// fast with [ErrBudgetExhausted] instead of retrying.
//
// # HTTP
//
// [NewTransport] wraps an http.RoundTripper. It retries GET, HEAD, OPTIONS,
// TRACE, PUT and DELETE, and any request carrying an Idempotency-Key header;
// it rewinds request bodies with Request.GetBody and never retries a body it
// cannot rewind; it drains and closes every response it discards, honours
// Retry-After in both formats, and returns the last response (not an error)
// when the retries run out.
//
// # With a circuit breaker
//
// The breaker package's open error has a RetryAfter method, so a retry
// around a breaker waits until the breaker is ready for a trial call instead
// of hammering it:
//
//	cb := breaker.New[*Reply]("backend")
//	reply, err := retry.DoValue(ctx, func(ctx context.Context) (*Reply, error) {
//		return cb.Execute(ctx, call)
//	}, retry.WithBudget(budget))
//
// Put the retry outside the breaker, as above: each attempt is then one call
// the breaker counts. For HTTP, wrap the breaker's transport in this one:
//
//	rt, err := retry.NewTransport(breaker.NewTransport(http.DefaultTransport),
//		retry.WithRetryOptions(retry.WithBudget(budget)))
//
// The package does not import breaker; any error with a RetryAfter()
// time.Duration method composes the same way.
//
// # What it does not do
//
// It does not hedge (send a second request while the first is in flight),
// and it does not make an operation idempotent: retry only what is safe to
// repeat.
package retry
