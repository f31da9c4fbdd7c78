// Package retryafter parses the HTTP Retry-After header for the retry and
// breaker packages, which never import each other.
package retryafter

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxSeconds keeps a delta-seconds value inside time.Duration.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// Parse parses the value of a Retry-After header, either delta-seconds
// ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"), into the
// delay it asks for, counted from now for a date. A date in the past gives
// 0. It reports false (and 0) for a malformed value. Very large values are
// clamped to the largest time.Duration.
func Parse(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := range len(v) {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > maxSeconds {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
