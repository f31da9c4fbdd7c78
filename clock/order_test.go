package clock_test

import (
	"testing"

	"github.com/distkit/distkit/clock"
)

func TestOrderString(t *testing.T) {
	for o, want := range map[clock.Order]string{
		clock.Equal: "Equal", clock.Before: "Before", clock.After: "After",
		clock.Concurrent: "Concurrent", clock.Order(9): "Order(9)",
	} {
		if got := o.String(); got != want {
			t.Errorf("Order(%d).String() = %q; want %q", o, got, want)
		}
	}
}
