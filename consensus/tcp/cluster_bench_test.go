package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// BenchmarkClusterPropose measures proposals per second through a
// 3-member in-process group (in-memory logs) whose members talk over this
// transport, plain and with mutual TLS, beside the in-memory test network
// in the same run: the transport's cost on the replication path. Each
// operation is one 256-byte proposal; proposers run concurrently.
func BenchmarkClusterPropose(b *testing.B) {
	for _, net := range []string{"memory", "tcp", "tcp+tls"} {
		for _, proposers := range []int{1, 64} {
			b.Run(fmt.Sprintf("net=%s/proposers=%d", net, proposers), func(b *testing.B) {
				nodes := benchCluster(b, net)
				benchPropose(b, nodes, proposers)
			})
		}
	}
}

func benchCluster(b *testing.B, kind string) []*consensus.Node {
	var (
		network = consensustest.NewNetwork(1)
		ca      *testCA
		lns     []net.Listener
		boot    []consensus.Member
	)
	if kind == "tcp+tls" {
		ca = newCA(b, "bench CA")
	}
	for id := uint64(1); id <= 3; id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns = append(lns, ln)
		boot = append(boot, consensus.Member{ID: id, Addr: ln.Addr().String()})
	}
	var nodes []*consensus.Node
	for i, ln := range lns {
		id := uint64(i + 1)
		var tr consensus.Transport = network.Transport(id)
		if kind == "memory" {
			ln.Close()
		} else {
			cfg := Config{ID: id, Listener: ln, Secret: benchSecret}
			if ca != nil {
				cfg.Secret = nil
				withTLS(ca, ca.issue(b, id, time.Time{}))(&cfg)
			}
			t, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			tr = t
		}
		n, err := consensus.Start(consensus.Config{
			ID: id, Memory: consensus.NewMemoryStore(), Bootstrap: boot,
			Transport: tr, TickInterval: 10 * time.Millisecond,
		}, consensustest.NewKV())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	return nodes
}

// benchPropose runs b.N proposals through the leader from proposers
// goroutines.
func benchPropose(b *testing.B, nodes []*consensus.Node, proposers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var leader *consensus.Node
	waitFor(b, "a leader", nil, func() bool {
		l, ok := nodes[0].Leader()
		if ok {
			leader = nodes[l-1]
		}
		return ok
	})
	val := string(make([]byte, 256-16))
	propose := func(key string) {
		for {
			_, err := leader.Propose(ctx, consensustest.PutCommand(key, val))
			if err == nil {
				return
			}
			if !errors.Is(err, consensus.ErrDropped) && !errors.Is(err, consensus.ErrBusy) {
				b.Error(err)
				return
			}
		}
	}
	propose("warm-up")
	work := make(chan int, proposers)
	var wg sync.WaitGroup
	for range proposers {
		wg.Go(func() {
			for i := range work {
				propose(fmt.Sprintf("key-%011d", i%100_000))
			}
		})
	}
	b.ReportAllocs()
	start := time.Now()
	n := 0
	for b.Loop() {
		work <- n
		n++
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "proposals/s")
}
