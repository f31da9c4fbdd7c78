package load_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

func ExampleHistogram_Quantile() {
	var h load.Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	// Quantiles are bucket upper bounds: at most 0.79% above the exact value.
	fmt.Println(h.Count(), h.Quantile(0.5), h.Quantile(0.99), h.Max())
	// Output: 1000 501.759µs 991.231µs 1ms
}

func ExampleParseMix() {
	m, err := load.ParseMix("get=90,set=10")
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Set, m.Get, m)
	// Output: 10 90 set=1,get=9
}

func ExampleFormatKey() {
	key := make([]byte, load.KeySize)
	load.FormatKey(key, 4242)
	fmt.Println(string(key))
	// Output: key:000000004242
}
