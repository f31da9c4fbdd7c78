package storetest_test

import (
	"testing"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/storetest"
)

func TestRunMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, c clock.Clock) idempotency.Store {
		return idempotency.NewMemoryStore(idempotency.WithMemoryClock(c), idempotency.WithMaxEntries(1000))
	})
}
