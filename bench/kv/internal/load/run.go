package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Client is one connection to the system under test. Run calls a Client
// from one goroutine only.
type Client interface {
	// Set stores value under key.
	Set(ctx context.Context, key, value []byte) error
	// Get reads key; found is false when the key does not exist (a miss is
	// not an error).
	Get(ctx context.Context, key []byte) (found bool, err error)
}

// Config is one measured run.
type Config struct {
	Workload  Workload
	Warmup    time.Duration // run, but do not measure, this long first
	Duration  time.Duration // measure this long; must be positive
	OpTimeout time.Duration // per-request deadline; must be positive
	// Preload writes keys 0..Preload-1 (each once, spread over the clients)
	// before the warm-up, so reads hit. Errors during preload fail the run.
	Preload int
	// Classify names the kind of a request error for the error counts; nil
	// uses ClassifyError.
	Classify func(error) string
}

// Result is what a run measured. Only requests started inside the
// measured window count.
type Result struct {
	Window  time.Duration     // length of the measured window
	Sets    uint64            // successful SETs
	Gets    uint64            // successful GETs (hits and misses)
	Misses  uint64            // GETs that found no key
	Errors  map[string]uint64 // failed requests by kind
	Latency *Histogram        // latency of successful requests
}

// Ops returns the number of successful requests.
func (r *Result) Ops() uint64 { return r.Sets + r.Gets }

// ErrorCount returns the number of failed requests.
func (r *Result) ErrorCount() uint64 {
	var n uint64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// Throughput returns successful requests per second over the window.
func (r *Result) Throughput() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Ops()) / r.Window.Seconds()
}

// ErrorKinds returns the error kinds in a stable order.
func (r *Result) ErrorKinds() []string {
	kinds := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

type workerStats struct {
	sets, gets, misses uint64
	errors             map[string]uint64
	hist               Histogram
}

// Run drives every client concurrently, each with its own generator
// (client i uses cfg.Workload.NewGen(i)), in a closed loop: one request at a
// time, the next as soon as the previous answers. It warms up for
// cfg.Warmup, measures for cfg.Duration, and returns when every client has
// stopped: at the latest cfg.OpTimeout after the window closes, or sooner
// when ctx ends (then the window is cut short).
func Run(ctx context.Context, cfg Config, clients []Client) (*Result, error) {
	if err := cfg.Workload.Validate(); err != nil {
		return nil, err
	}
	if len(clients) == 0 {
		return nil, errors.New("load: no clients")
	}
	if cfg.Duration <= 0 || cfg.OpTimeout <= 0 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("load: duration (%v) and op timeout (%v) must be positive, warm-up (%v) not negative",
			cfg.Duration, cfg.OpTimeout, cfg.Warmup)
	}
	if cfg.Preload < 0 || cfg.Preload > cfg.Workload.Keys {
		return nil, fmt.Errorf("load: preload %d out of range [0, %d]", cfg.Preload, cfg.Workload.Keys)
	}
	classify := cfg.Classify
	if classify == nil {
		classify = ClassifyError
	}
	if cfg.Preload > 0 {
		if err := preload(ctx, cfg, clients); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	end := measureStart.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end.Add(cfg.OpTimeout))
	defer cancel()

	stats := make([]*workerStats, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		st := &workerStats{errors: map[string]uint64{}}
		stats[i] = st
		gen := cfg.Workload.NewGen(i)
		wg.Go(func() { work(runCtx, cfg, c, gen, st, classify, measureStart, end) })
	}
	wg.Wait()

	stop := time.Now()
	if stop.After(end) {
		stop = end
	}
	res := &Result{Window: stop.Sub(measureStart), Errors: map[string]uint64{}, Latency: new(Histogram)}
	if res.Window < 0 {
		res.Window = 0
	}
	for _, st := range stats {
		res.Sets += st.sets
		res.Gets += st.gets
		res.Misses += st.misses
		for k, n := range st.errors {
			res.Errors[k] += n
		}
		res.Latency.Merge(&st.hist)
	}
	return res, nil
}

func work(ctx context.Context, cfg Config, c Client, gen *Gen, st *workerStats, classify func(error) string, measureStart, end time.Time) {
	value := gen.Value()
	for ctx.Err() == nil {
		op, k := gen.Next()
		key := gen.Key(k)
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		opCtx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
		var (
			err   error
			found = true
		)
		switch op {
		case OpSet:
			err = c.Set(opCtx, key, value)
		default:
			found, err = c.Get(opCtx, key)
		}
		d := time.Since(t0)
		cancel()
		if t0.Before(measureStart) {
			continue
		}
		if err != nil {
			st.errors[classify(err)]++
			continue
		}
		st.hist.Record(d)
		if op == OpSet {
			st.sets++
		} else {
			st.gets++
			if !found {
				st.misses++
			}
		}
	}
}

// preload writes keys 0..cfg.Preload-1, client i taking every len(clients)-th key.
func preload(ctx context.Context, cfg Config, clients []Client) error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		value := Value(cfg.Workload.Seed, i, cfg.Workload.ValueSize)
		wg.Go(func() {
			var key [KeySize]byte
			for k := i; k < cfg.Preload; k += len(clients) {
				FormatKey(key[:], k)
				opCtx, cancel := context.WithTimeout(ctx, cfg.OpTimeout)
				err := c.Set(opCtx, key[:], value)
				cancel()
				if err != nil {
					errs[i] = fmt.Errorf("load: preload of %s: %w", key[:], err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ClassifyError names the kind of a transport-level error: "timeout",
// "canceled", "conn-refused", "conn-reset", "conn-closed", "net", or "other".
// Drivers add their own kinds (server error replies, RPC status codes) and
// fall back to this.
func ClassifyError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "conn-refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "conn-reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "conn-closed"
	case errors.As(err, &ne):
		if ne.Timeout() {
			return "timeout"
		}
		return "net"
	}
	return "other"
}
