// Command apkv is a leaderless, eventually consistent key-value store built
// on distkit's quorum package: every node accepts reads and writes at a
// consistency level chosen per request, concurrent writes come back as
// siblings, and replicas converge by read repair, hinted handoff and Merkle
// anti-entropy.
//
// Run five nodes in one process on loopback (ports 8001-8005):
//
//	go run ./examples/apkv
//
// or one node per process:
//
//	go run ./examples/apkv -id n1 -listen 127.0.0.1:8001 \
//	    -peers n1=127.0.0.1:8001,n2=127.0.0.1:8002,n3=127.0.0.1:8003
//
// HTTP API (any node):
//
//	GET    /kv/{key}?level=one|quorum|all|<k>  200 {"values":[...siblings]}, 404 if absent
//	       &repair=sync                         repair stale replicas before answering
//	PUT    /kv/{key}?level=...  body = value   204
//	DELETE /kv/{key}?level=...                 204
//	POST   /admin/block?peers=n2,n3            simulate a partition (this node's side)
//	POST   /admin/heal                          end it
//	POST   /admin/sync                          deliver hints and run anti-entropy now
//	GET    /admin/stats                         coordinator counters
//
// GET returns the key's causal context in the X-Causal-Context header; send
// it back on PUT or DELETE to replace the versions you read. Without it a
// write is concurrent with every existing version and becomes a sibling.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "apkv:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("apkv", flag.ContinueOnError)
	nodes := fs.Int("nodes", 5, "in-process mode: number of nodes to start")
	port := fs.Int("port", 8001, "in-process mode: first port (0 picks free ports)")
	id := fs.String("id", "", "one-node mode: this node's name (requires -listen and -peers)")
	listen := fs.String("listen", "", "one-node mode: address to serve on")
	peers := fs.String("peers", "", "one-node mode: name=host:port,... for every node, this one included")
	n := fs.Int("n", 3, "replication factor")
	ae := fs.Duration("anti-entropy", 10*time.Second, "anti-entropy period (0 disables)")
	hints := fs.Duration("hints", time.Second, "hinted-handoff period")
	verbose := fs.Bool("v", false, "log replica failures")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := NodeConfig{N: *n, AntiEntropyInterval: *ae, HintInterval: *hints, Logger: logger}

	var started []*Node
	defer func() {
		for _, nd := range started {
			nd.Close()
		}
	}()
	if *id != "" {
		pm, err := parsePeers(*peers)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		cfg.Name, cfg.Listener, cfg.Peers = *id, ln, pm
		nd, err := StartNode(cfg)
		if err != nil {
			ln.Close()
			return err
		}
		started = append(started, nd)
	} else {
		var err error
		started, err = StartCluster(*nodes, *port, cfg)
		if err != nil {
			return err
		}
	}
	for _, nd := range started {
		fmt.Printf("node %s: http://%s\n", nd.Name(), nd.Addr())
	}
	a := started[0].Addr()
	fmt.Printf(`try:
  curl -XPUT -d milk 'http://%[1]s/kv/cart?level=quorum'
  curl -XPUT -d eggs 'http://%[1]s/kv/cart'            # no context: a sibling
  curl -i 'http://%[1]s/kv/cart?level=all'             # both values, X-Causal-Context
  curl -XPUT -H 'X-Causal-Context: <from GET>' -d eggs,milk 'http://%[1]s/kv/cart'
Ctrl-C stops.
`, a)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// StartCluster starts count nodes named n1..n<count> on 127.0.0.1, on
// consecutive ports from port (or free ports if port is 0), all peers of
// each other. cfg supplies the shared settings.
func StartCluster(count, port int, cfg NodeConfig) ([]*Node, error) {
	if count < 1 {
		return nil, fmt.Errorf("need at least one node, got %d", count)
	}
	var lns []net.Listener
	peers := map[string]string{}
	names := make([]string, count)
	for i := range count {
		addr := "127.0.0.1:0"
		if port != 0 {
			addr = fmt.Sprintf("127.0.0.1:%d", port+i)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		names[i] = fmt.Sprintf("n%d", i+1)
		peers[names[i]] = ln.Addr().String()
	}
	var nodes []*Node
	for i, ln := range lns {
		c := cfg
		c.Name, c.Listener, c.Peers = names[i], ln, peers
		nd, err := StartNode(c)
		if err != nil {
			for _, l := range lns[i:] {
				l.Close()
			}
			for _, n := range nodes {
				n.Close()
			}
			return nil, err
		}
		nodes = append(nodes, nd)
	}
	return nodes, nil
}

func parsePeers(s string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("bad -peers entry %q, want name=host:port", part)
		}
		out[name] = addr
	}
	return out, nil
}
