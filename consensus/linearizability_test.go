package consensus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// linSeeds is how many randomized runs TestLinearizability does:
// DISTKIT_LIN_SEEDS overrides the default (10, or 3 with -short).
func linSeeds(t *testing.T) int {
	if s := os.Getenv("DISTKIT_LIN_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("DISTKIT_LIN_SEEDS=%q", s)
		}
		return n
	}
	if testing.Short() {
		return 3
	}
	return 10
}

type kvInput struct {
	get   bool
	key   string
	value string // appended token
}

type kvOutput struct {
	value   string
	unknown bool // an append whose outcome is unknown
}

// appendModel is a map of keys to strings with append and get.
var appendModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvInput).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out, st := input.(kvInput), output.(kvOutput), state.(string)
		if in.get {
			return out.value == st, st
		}
		next := st + in.value
		return out.unknown || out.value == next, next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		if in.get {
			return fmt.Sprintf("get(%s) -> %q", in.key, out.value)
		}
		return fmt.Sprintf("append(%s, %s) -> %q unknown=%v", in.key, in.value, out.value, out.unknown)
	},
}

// TestLinearizability runs concurrent clients against a 3-member group
// while a nemesis partitions the network, crashes and restarts members, and
// the network drops, duplicates and reorders messages; the history of
// appends and linearizable reads must be linearizable.
func TestLinearizability(t *testing.T) {
	seeds := linSeeds(t)
	for seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			runLinearizability(t, uint64(seed))
		})
	}
}

func runLinearizability(t *testing.T, seed uint64) {
	c := newCluster(t, 3, consensustest.ClusterOptions{Seed: seed, Configure: func(cfg *consensus.Config) {
		cfg.SnapshotEntries = 64
		cfg.TrailingEntries = 16
	}})
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	c.Net.SetFaults(consensustest.Faults{Drop: 0.02, Duplicate: 0.02, Reorder: 0.05, MaxDelay: 5 * time.Millisecond})

	const (
		clients  = 6
		keys     = 3
		duration = 1200 * time.Millisecond
	)
	start := time.Now()
	stamp := func() int64 { return int64(time.Since(start)) }
	var mu sync.Mutex
	var history []porcupine.Operation
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(cl)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := uint64(rng.IntN(3) + 1)
				n, sm := c.Member(id)
				if n == nil {
					continue
				}
				kv := sm.(*consensustest.KV)
				key := fmt.Sprint("k", rng.IntN(keys))
				octx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				call := stamp()
				if rng.IntN(2) == 0 {
					err := n.ReadBarrier(octx)
					v, _ := kv.Get(key)
					ret := stamp()
					cancel()
					if err == nil {
						record(porcupine.Operation{ClientId: cl, Input: kvInput{get: true, key: key}, Call: call, Output: kvOutput{value: v}, Return: ret})
					}
					continue
				}
				token := fmt.Sprintf("[%d.%d]", cl, i)
				res, err := n.Propose(octx, consensustest.AppendCommand(key, token))
				ret := stamp()
				cancel()
				in := kvInput{key: key, value: token}
				switch {
				case err == nil:
					record(porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: kvOutput{value: string(res)}, Return: ret})
				case errors.Is(err, consensus.ErrDropped) || errors.Is(err, consensus.ErrBusy):
					// Never appended: not part of the history.
				default:
					// May have applied, at any time from now on.
					record(porcupine.Operation{ClientId: cl, Input: in, Call: call, Output: kvOutput{unknown: true}, Return: 1 << 62})
				}
			}
		}()
	}

	// Nemesis.
	rng := rand.New(rand.NewPCG(seed, 99))
	deadline := time.After(duration)
	down := uint64(0)
nemesis:
	for {
		select {
		case <-deadline:
			break nemesis
		case <-time.After(time.Duration(50+rng.IntN(100)) * time.Millisecond):
		}
		switch rng.IntN(4) {
		case 0:
			a := uint64(rng.IntN(3) + 1)
			var rest []uint64
			for id := uint64(1); id <= 3; id++ {
				if id != a {
					rest = append(rest, id)
				}
			}
			c.Net.Partition([]uint64{a}, rest)
		case 1:
			c.Net.Heal()
		case 2:
			if down == 0 {
				down = uint64(rng.IntN(3) + 1)
				c.Stop(down)
			}
		case 3:
			if down != 0 {
				c.Start(down)
				down = 0
			}
		}
	}
	close(stop)
	wg.Wait()
	c.Net.Heal()
	if down != 0 {
		c.Start(down)
	}

	ok, gets := 0, 0
	for _, op := range history {
		if op.Input.(kvInput).get {
			gets++
		} else if !op.Output.(kvOutput).unknown {
			ok++
		}
	}
	if ok == 0 || gets == 0 {
		t.Fatalf("history too thin: %d acknowledged appends, %d reads of %d ops", ok, gets, len(history))
	}
	res, info := porcupine.CheckOperationsVerbose(appendModel, history, 30*time.Second)
	switch res {
	case porcupine.Illegal:
		path := fmt.Sprintf("%s/lin-seed-%d.html", t.TempDir(), seed)
		_ = porcupine.VisualizePath(appendModel, info, path)
		t.Fatalf("history of %d ops is not linearizable (visualization: %s)", len(history), path)
	case porcupine.Unknown:
		t.Logf("linearizability check timed out on %d ops", len(history))
	}
	t.Logf("%d ops: %d acknowledged appends, %d reads", len(history), ok, gets)
}
