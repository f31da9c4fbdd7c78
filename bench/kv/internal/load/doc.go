// Package load is the measuring core of the key-value benchmarks: a
// reproducible SET/GET workload generator, a closed-loop runner that drives
// any number of clients for a warm-up and a fixed measured window, a
// log-bucketed latency histogram, and the JSON record and Markdown tables
// the benchmark script collects.
//
// A run is bounded: every request has a deadline, and Run returns at the
// latest one request timeout after the measured window closes. Latency is
// measured per request in a closed loop (each client waits for its answer
// before sending again), so it is the service time seen by a client, not
// corrected for coordinated omission.
package load
