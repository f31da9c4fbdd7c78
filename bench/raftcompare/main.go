// Command raftcompare measures a 3-member consensus group of distkit beside
// hashicorp/raft with raft-wal, in one run, in the same shape: three members
// in one process on loopback TCP, durable logs in a temporary directory,
// 256-byte commands proposed to the leader by 1, 16, 64 and 256 concurrent
// proposers. It also measures the disk's raw fsync rate, the ceiling of
// unbatched durable writes. It prints one table.
//
//	go run . [-dur 3s] [-clients 1,16,64,256] [-dir /tmp]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"

	"github.com/distkit/distkit/consensus"
)

const cmdSize = 256

type result struct {
	system  string
	clients int
	ops     int
	errs    int
	dur     time.Duration
	p50     time.Duration
	p99     time.Duration
}

func (r result) rate() float64 { return float64(r.ops) / r.dur.Seconds() }

func main() {
	dur := flag.Duration("dur", 3*time.Second, "measured duration per configuration")
	warm := flag.Duration("warmup", 300*time.Millisecond, "unmeasured warm-up per configuration")
	clientList := flag.String("clients", "1,16,64,256", "proposer counts")
	base := flag.String("dir", "", "directory for data (default: a temporary directory)")
	snapEntries := flag.Uint64("snapshot-entries", 0, "distkit Config.SnapshotEntries (0: library default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the first mode's distkit runs to this file")
	modeList := flag.String("modes", "pipelined,inline", "distkit Config.StorageMode values to run, in order")
	flag.Parse()
	var modes []consensus.StorageMode
	for _, s := range strings.Split(*modeList, ",") {
		switch strings.TrimSpace(s) {
		case "pipelined":
			modes = append(modes, consensus.StoragePipelined)
		case "inline":
			modes = append(modes, consensus.StorageInline)
		default:
			log.Fatalf("bad -modes %q: want pipelined and/or inline", *modeList)
		}
	}
	var clients []int
	for _, s := range strings.Split(*clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad -clients %q", *clientList)
		}
		clients = append(clients, n)
	}
	dir, err := os.MkdirTemp(*base, "raftcompare-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	fs := measureFsync(filepath.Join(dir, "fsync"), time.Second)

	var ours []*oursCluster
	for _, m := range modes {
		c, err := startOurs(filepath.Join(dir, "distkit-"+m.String()), *snapEntries, m)
		if err != nil {
			log.Fatal(err)
		}
		ours = append(ours, c)
	}
	theirs, err := startHashicorp(filepath.Join(dir, "hashicorp"))
	if err != nil {
		log.Fatal(err)
	}
	// Per proposer count: one result per distkit mode, then hashicorp's.
	var results [][]result
	for _, c := range clients {
		var row []result
		for i, o := range ours {
			if *cpuprofile != "" && i == 0 {
				f, err := os.Create(fmt.Sprintf("%s.%d", *cpuprofile, c))
				if err != nil {
					log.Fatal(err)
				}
				_ = pprof.StartCPUProfile(f)
			}
			row = append(row, run("distkit "+o.mode.String(), c, *warm, *dur, o.propose))
			if *cpuprofile != "" && i == 0 {
				pprof.StopCPUProfile()
			}
		}
		row = append(row, run("hashicorp/raft+raft-wal", c, *warm, *dur, theirs.propose))
		results = append(results, row)
	}
	for _, o := range ours {
		o.close()
	}
	theirs.close()

	fmt.Printf("disk fsync (4 KiB write + fdatasync, 1 writer): %.0f/s, p50 %v\n\n", fs.rate(), fs.p50)
	fmt.Printf("%-24s %8s %12s %10s %10s %7s\n", "system", "clients", "proposals/s", "p50", "p99", "errors")
	for _, row := range results {
		for _, r := range row {
			fmt.Printf("%-24s %8d %12.0f %10v %10v %7d\n", r.system, r.clients, r.rate(), r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.errs)
		}
	}
	fmt.Println()
	for _, row := range results {
		h := row[len(row)-1]
		for _, r := range row[:len(row)-1] {
			fmt.Printf("clients %3d: %-18s throughput %.2fx, p99 %.2fx of hashicorp's\n",
				r.clients, r.system, r.rate()/h.rate(), float64(r.p99)/float64(h.p99))
		}
		if len(row) == 3 {
			a, b := row[0], row[1]
			fmt.Printf("clients %3d: %s/%s throughput %.2fx, p99 %.2fx\n",
				a.clients, ours[0].mode, ours[1].mode, a.rate()/b.rate(), float64(a.p99)/float64(b.p99))
		}
	}
	fmt.Println()
	for _, o := range ours {
		fmt.Printf("distkit %s: %s\n", o.mode, o.batchInfo())
	}
}

// run drives propose from n goroutines for warm+dur and measures dur.
func run(system string, n int, warm, dur time.Duration, propose func(context.Context, []byte) error) result {
	start := time.Now()
	measureFrom := start.Add(warm)
	end := measureFrom.Add(dur)
	var mu sync.Mutex
	var lats []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := make([]byte, cmdSize)
			cmd[0] = byte(g)
			var mine []time.Duration
			myErrs := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := propose(ctx, cmd)
				cancel()
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(end) {
					continue
				}
				if err != nil {
					myErrs++
					continue
				}
				mine = append(mine, t1.Sub(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += myErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lats)
	r := result{system: system, clients: n, ops: len(lats), errs: errs, dur: dur}
	if len(lats) > 0 {
		r.p50 = lats[len(lats)/2]
		r.p99 = lats[len(lats)*99/100]
	}
	return r
}

type fsyncResult struct {
	ops int
	dur time.Duration
	p50 time.Duration
}

func (f fsyncResult) rate() float64 { return float64(f.ops) / f.dur.Seconds() }

// measureFsync overwrites one 4 KiB block and fdatasyncs, as fast as it can.
func measureFsync(path string, d time.Duration) fsyncResult {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.WriteAt(buf, 0); err != nil {
		log.Fatal(err)
	}
	_ = syscall.Fdatasync(int(f.Fd()))
	var lats []time.Duration
	start := time.Now()
	for time.Since(start) < d {
		t0 := time.Now()
		buf[0]++
		if _, err := f.WriteAt(buf, 0); err != nil {
			log.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			log.Fatal(err)
		}
		lats = append(lats, time.Since(t0))
	}
	slices.Sort(lats)
	return fsyncResult{ops: len(lats), dur: time.Since(start), p50: lats[len(lats)/2]}
}

// --- distkit/consensus ---

type nopSM struct {
	mu sync.Mutex
	n  uint64
}

func (s *nopSM) Apply(cmds []consensus.Command) error {
	s.mu.Lock()
	s.n += uint64(len(cmds))
	s.mu.Unlock()
	return nil
}

type emptySnap struct{}

func (emptySnap) WriteTo(io.Writer) (int64, error) { return 0, nil }
func (emptySnap) Release()                         {}

func (s *nopSM) Snapshot() (consensus.SnapshotWriter, error) { return emptySnap{}, nil }
func (s *nopSM) Restore(r io.Reader) error                   { _, err := io.Copy(io.Discard, r); return err }

type oursCluster struct {
	mode  consensus.StorageMode
	nodes []*consensus.Node
}

func startOurs(dir string, snapEntries uint64, mode consensus.StorageMode) (*oursCluster, error) {
	var trs []*tcpTransport
	var members []consensus.Member
	for id := uint64(1); id <= 3; id++ {
		tr, err := listenTCP(id)
		if err != nil {
			return nil, err
		}
		trs = append(trs, tr)
		members = append(members, consensus.Member{ID: id, Addr: tr.Addr()})
	}
	c := &oursCluster{mode: mode}
	for i, tr := range trs {
		n, err := consensus.Start(consensus.Config{
			ID:              uint64(i + 1),
			Dir:             filepath.Join(dir, fmt.Sprint(i+1)),
			Bootstrap:       members,
			Transport:       tr,
			SnapshotEntries: snapEntries,
			StorageMode:     mode,
		}, &nopSM{})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.leader(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *oursCluster) leader(ctx context.Context) (*consensus.Node, error) {
	for {
		for _, n := range c.nodes {
			if l, ok := n.Leader(); ok && l == n.ID() {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("distkit: no leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *oursCluster) propose(ctx context.Context, cmd []byte) error {
	n, err := c.leader(ctx)
	if err != nil {
		return err
	}
	_, err = n.Propose(ctx, cmd)
	return err
}

func (c *oursCluster) batchInfo() string {
	var s consensus.Stats
	for _, n := range c.nodes {
		if l, ok := n.Leader(); ok && l == n.ID() {
			s = n.Stats()
		}
	}
	if s.Syncs == 0 || s.ProposalBatches == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f commands per proposal batch, %.1f entries per log sync, mean sync %v",
		float64(s.Proposals)/float64(s.ProposalBatches), float64(s.SyncedEntries)/float64(s.Syncs),
		(s.SyncTotal / time.Duration(s.Syncs)).Round(time.Microsecond))
}

func (c *oursCluster) close() {
	for _, n := range c.nodes {
		n.Close()
	}
}

// --- hashicorp/raft ---

type hFSM struct {
	mu sync.Mutex
	n  uint64
}

func (f *hFSM) Apply(*hraft.Log) any {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	return nil
}

type hSnap struct{}

func (hSnap) Persist(sink hraft.SnapshotSink) error { return sink.Close() }
func (hSnap) Release()                              {}

func (f *hFSM) Snapshot() (hraft.FSMSnapshot, error) { return hSnap{}, nil }
func (f *hFSM) Restore(rc io.ReadCloser) error       { return rc.Close() }

type hashicorpCluster struct {
	rafts []*hraft.Raft
	trs   []*hraft.NetworkTransport
	wals  []*raftwal.WAL
}

func startHashicorp(dir string) (*hashicorpCluster, error) {
	c := &hashicorpCluster{}
	var servers []hraft.Server
	for i := range 3 {
		tr, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
		if err != nil {
			return nil, err
		}
		c.trs = append(c.trs, tr)
		servers = append(servers, hraft.Server{ID: hraft.ServerID(fmt.Sprint(i + 1)), Address: tr.LocalAddr()})
	}
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprint(i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		w, err := raftwal.Open(d)
		if err != nil {
			return nil, err
		}
		c.wals = append(c.wals, w)
		conf := hraft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = hclog.NewNullLogger()
		snaps := hraft.NewInmemSnapshotStore()
		if err := hraft.BootstrapCluster(conf, w, w, snaps, c.trs[i], hraft.Configuration{Servers: servers}); err != nil {
			return nil, err
		}
		r, err := hraft.NewRaft(conf, &hFSM{}, w, w, snaps, c.trs[i])
		if err != nil {
			return nil, err
		}
		c.rafts = append(c.rafts, r)
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.leader() == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("hashicorp: no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, nil
}

func (c *hashicorpCluster) leader() *hraft.Raft {
	for _, r := range c.rafts {
		if r.State() == hraft.Leader {
			return r
		}
	}
	return nil
}

func (c *hashicorpCluster) propose(ctx context.Context, cmd []byte) error {
	r := c.leader()
	if r == nil {
		return fmt.Errorf("hashicorp: no leader")
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return r.Apply(cmd, timeout).Error()
}

func (c *hashicorpCluster) close() {
	for _, r := range c.rafts {
		_ = r.Shutdown().Error()
	}
	for _, t := range c.trs {
		_ = t.Close()
	}
	for _, w := range c.wals {
		_ = w.Close()
	}
}
