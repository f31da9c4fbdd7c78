// Package resilience holds benchmarks that measure the per-call overhead of
// distkit's retry and breaker packages side by side with calling their
// foundations (backoff/v4, gobreaker/v2) directly and with failsafe-go's
// equivalent policies. It is a separate module so that the library itself
// does not depend on failsafe-go.
//
// Run, from this directory:
//
//	go test -run '^$' -bench . -benchmem -benchtime=1s -count=3
package resilience
