module github.com/distkit/distkit/bench/resilience

go 1.26.0

replace github.com/distkit/distkit => ../..

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/distkit/distkit v0.0.0-00010101000000-000000000000
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/sony/gobreaker/v2 v2.4.0
)

require github.com/bits-and-blooms/bitset v1.24.4 // indirect
