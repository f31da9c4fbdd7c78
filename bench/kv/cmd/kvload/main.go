// Command kvload measures a key-value service with a fixed SET/GET workload
// over the Redis protocol (RESP: Redis, or any server speaking it) or
// etcd's v3 client API, so that different systems see the same load.
//
// N clients run in a closed loop for a warm-up and then a measured window.
// Keys are 16 bytes ("key:" and 12 digits) drawn uniformly from a key space;
// SET values are 256 bytes by default. Over RESP every client has its own
// connection and sends one command at a time (no pipelining); a GET is sent
// as is and the server decides its consistency. Over etcd, the clients share
// -conns gRPC connections and GETs are linearizable unless -read
// serializable is given.
//
// Output: a human summary, then one JSON line (also appended to -json FILE)
// with throughput, p50/p99/p99.9/max latency and error counts by kind.
//
// Examples:
//
//	kvload -proto resp -endpoints 127.0.0.1:6379 -clients 64 -mix set
//	kvload -proto etcd -endpoints 127.0.0.1:2379,127.0.0.1:22379 -target leader -mix get -keys 1000 -preload 1000
//	kvload -proto resp -endpoints 127.0.0.1:6381,127.0.0.1:6382 -find-leader
//
// Every run stops by itself: requests have a deadline (-timeout), the run
// ends one request timeout after the window at the latest, and a watchdog
// exits the process if anything still hangs after -max-time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

// driver connects clients to one kind of system.
type driver interface {
	// leader returns the index in endpoints of the current leader, or an
	// error when none can be told.
	leader(ctx context.Context, endpoints []string) (int, error)
	// dial opens n clients; client i uses endpoint assign[i].
	dial(ctx context.Context, endpoints []string, assign []int) ([]load.Client, error)
	// classify names the kind of a request error.
	classify(err error) string
	// close releases every connection.
	close() error
}

type options struct {
	proto, endpoints, target, mix, read, label, jsonPath, test string
	clients, conns, keys, valueSize, preload                   int
	warmup, duration, timeout, connectTimeout, maxTime         time.Duration
	seed                                                       uint64
	findLeader                                                 bool
	command                                                    string
	cpuProfile                                                 string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("kvload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.proto, "proto", "resp", "protocol: resp (Redis protocol) or etcd (etcd v3 gRPC API)")
	fs.StringVar(&o.endpoints, "endpoints", "", "comma-separated host:port list (default 127.0.0.1:6379 for resp, 127.0.0.1:2379 for etcd)")
	fs.StringVar(&o.target, "target", "spread", "spread: clients round-robin over endpoints; first: all to the first; leader: all to the leader (etcd status, or RESP INFO role:leader/master)")
	fs.IntVar(&o.clients, "clients", 1, "concurrent clients")
	fs.IntVar(&o.conns, "conns", 0, "etcd: gRPC connections shared by the clients (0: min(clients, 8)); resp always uses one connection per client")
	fs.StringVar(&o.mix, "mix", "set", "operation mix: set, get, or weights such as set=50,get=50")
	fs.IntVar(&o.keys, "keys", 100000, "key space size (keys are 16 bytes)")
	fs.IntVar(&o.valueSize, "value", 256, "value size in bytes")
	fs.IntVar(&o.preload, "preload", 0, "write keys 0..N-1 before the warm-up (use with -mix get so reads hit); -1 means the whole key space")
	fs.StringVar(&o.read, "read", "linearizable", "etcd GET consistency: linearizable or serializable")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up, not measured")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured window")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline of each request")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second, "deadline to connect and to find the leader")
	fs.DurationVar(&o.maxTime, "max-time", 0, "hard limit on the whole process (0: connect-timeout + 2m for preload + warmup + duration + timeout + 10s)")
	fs.Uint64Var(&o.seed, "seed", 1, "workload seed")
	fs.StringVar(&o.label, "label", "", "system label in the results (default: the protocol)")
	fs.StringVar(&o.test, "test", "", "test label in the results (default: from the mix and read mode)")
	fs.StringVar(&o.jsonPath, "json", "", "append the JSON result line to this file")
	fs.BoolVar(&o.findLeader, "find-leader", false, "print the endpoint -target selects and exit")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kvload: unexpected arguments %q\n", fs.Args())
		return 2
	}
	o.command = "kvload " + strings.Join(args, " ")
	if err := execute(o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "kvload:", err)
		return 1
	}
	return 0
}

func execute(o options, stdout, stderr io.Writer) error {
	mix, err := load.ParseMix(o.mix)
	if err != nil {
		return err
	}
	if o.preload == -1 {
		o.preload = o.keys
	}
	wl := load.Workload{Mix: mix, Keys: o.keys, ValueSize: o.valueSize, Seed: o.seed}
	if err := wl.Validate(); err != nil {
		return err
	}
	if o.clients < 1 {
		return fmt.Errorf("-clients must be at least 1, got %d", o.clients)
	}
	if o.duration <= 0 || o.timeout <= 0 || o.connectTimeout <= 0 || o.warmup < 0 {
		return errors.New("-duration, -timeout and -connect-timeout must be positive and -warmup not negative")
	}
	var drv driver
	switch o.proto {
	case "resp":
		if o.endpoints == "" {
			o.endpoints = "127.0.0.1:6379"
		}
		drv = &respDriver{}
	case "etcd":
		if o.endpoints == "" {
			o.endpoints = "127.0.0.1:2379"
		}
		var serializable bool
		switch o.read {
		case "linearizable", "l":
			o.read = "linearizable"
		case "serializable", "s":
			o.read, serializable = "serializable", true
		default:
			return fmt.Errorf("-read must be linearizable or serializable, got %q", o.read)
		}
		conns := o.conns
		if conns <= 0 {
			conns = min(o.clients, 8)
		}
		o.conns = min(conns, o.clients)
		drv = &etcdDriver{conns: o.conns, serializable: serializable, dialTimeout: o.connectTimeout}
	default:
		return fmt.Errorf("-proto must be resp or etcd, got %q", o.proto)
	}
	var endpoints []string
	for e := range strings.SplitSeq(o.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	if len(endpoints) == 0 {
		return errors.New("-endpoints is empty")
	}

	maxTime := o.maxTime
	if maxTime <= 0 {
		maxTime = o.connectTimeout + 2*time.Minute + o.warmup + o.duration + o.timeout + 10*time.Second
	}
	// The watchdog ends the process if a driver ignores its deadlines.
	watchdog := time.AfterFunc(maxTime+5*time.Second, func() {
		fmt.Fprintf(stderr, "kvload: still running after -max-time %v; exiting\n", maxTime)
		os.Exit(3)
	})
	defer watchdog.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), maxTime)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		if err := drv.close(); err != nil {
			fmt.Fprintln(stderr, "kvload: close:", err)
		}
	}()

	target := o.target
	assign := make([]int, o.clients)
	switch target {
	case "spread":
		for i := range assign {
			assign[i] = i % len(endpoints)
		}
	case "first":
	case "leader":
		lctx, lcancel := context.WithTimeout(ctx, o.connectTimeout)
		li, err := drv.leader(lctx, endpoints)
		lcancel()
		if err != nil {
			if o.findLeader {
				return err
			}
			fmt.Fprintf(stderr, "kvload: no leader found (%v); spreading clients over all endpoints\n", err)
			target = "spread"
			for i := range assign {
				assign[i] = i % len(endpoints)
			}
			break
		}
		for i := range assign {
			assign[i] = li
		}
	default:
		return fmt.Errorf("-target must be spread, first or leader, got %q", o.target)
	}
	if o.findLeader {
		fmt.Fprintln(stdout, endpoints[assign[0]])
		return nil
	}

	dctx, dcancel := context.WithTimeout(ctx, o.connectTimeout)
	clients, err := drv.dial(dctx, endpoints, assign)
	dcancel()
	if err != nil {
		return err
	}

	rec := load.Record{
		Tool: "kvload", System: o.label, Proto: o.proto, Test: o.test, Kind: mix.String(),
		Clients: o.clients, Target: target, Endpoints: endpoints, Keys: o.keys,
		ValueSize: o.valueSize, Preload: o.preload, WarmupS: o.warmup.Seconds(),
		Command: o.command,
	}
	if rec.System == "" {
		rec.System = o.proto
	}
	if o.proto == "etcd" {
		if o.conns < o.clients {
			rec.Conns = o.conns
		}
		if mix.Get > 0 {
			rec.Read = o.read
		}
	}
	if rec.Test == "" {
		rec.Test = strings.ToUpper(mix.String())
		if rec.Read != "" {
			rec.Test += " " + rec.Read
		}
	}
	used := map[int]bool{}
	for _, a := range assign {
		used[a] = true
	}
	fmt.Fprintf(stdout, "kvload: %s %s, %d clients on %d of %d endpoints (target %s), mix %s, %d keys, %d-byte values, preload %d, warm-up %v, window %v\n",
		rec.System, o.proto, o.clients, len(used), len(endpoints), target, mix, o.keys, o.valueSize, o.preload, o.warmup, o.duration)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := load.Run(ctx, load.Config{
		Workload: wl, Warmup: o.warmup, Duration: o.duration, OpTimeout: o.timeout,
		Preload: o.preload, Classify: drv.classify,
	}, clients)
	if err != nil {
		return err
	}
	rec.Fill(res)
	printSummary(stdout, rec, res)
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", line)
	if o.jsonPath != "" {
		f, err := os.OpenFile(o.jsonPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, werr := fmt.Fprintf(f, "%s\n", line)
		if err := errors.Join(werr, f.Close()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run cut short: %w", context.Cause(ctx))
	}
	return nil
}

func printSummary(w io.Writer, rec load.Record, res *load.Result) {
	fmt.Fprintf(w, "ops: %d in %.2fs = %s ops/s (set %d, get %d, get misses %d)\n",
		res.Ops(), res.Window.Seconds(), load.FormatRate(res.Throughput()), res.Sets, res.Gets, res.Misses)
	h := res.Latency
	fmt.Fprintf(w, "latency ms: p50 %s  p99 %s  p99.9 %s  max %s  mean %s  min %s\n",
		load.FormatMs(rec.P50Ms), load.FormatMs(rec.P99Ms), load.FormatMs(*rec.P999Ms),
		load.FormatMs(rec.MaxMs), load.FormatMs(rec.MeanMs), load.FormatMs(float64(h.Min())/1e6))
	fmt.Fprintf(w, "errors: %d", res.ErrorCount())
	for _, k := range res.ErrorKinds() {
		fmt.Fprintf(w, "  %s=%d", k, res.Errors[k])
	}
	fmt.Fprintln(w)
}
