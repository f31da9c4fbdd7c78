package main

import "os"

// Example runs the composed client against a server whose first five
// requests fail. The breaker opens after three failures; from then on the
// retry waits out each open period and only the breaker's trial requests
// reach the server.
func Example() {
	if err := run(os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// attempt 1: HTTP 503
	// attempt 2: HTTP 503
	// attempt 3: HTTP 503
	// attempt 4: breaker open, waiting until it allows a trial request
	// attempt 5: HTTP 503
	// attempt 6: breaker open, waiting until it allows a trial request
	// attempt 7: HTTP 503
	// attempt 8: breaker open, waiting until it allows a trial request
	// 200 "hello"; the server saw 6 requests
}
