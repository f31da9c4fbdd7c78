package consensus_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// storageMode is the Config.StorageMode of every member the tests start.
// TestMain runs the whole suite once per mode; DISTKIT_STORAGE_MODE=inline
// or =pipelined runs one.
var storageMode consensus.StorageMode

func TestMain(m *testing.M) {
	modes := []consensus.StorageMode{consensus.StoragePipelined, consensus.StorageInline}
	if s := os.Getenv("DISTKIT_STORAGE_MODE"); s != "" {
		modes = nil
		for _, mode := range []consensus.StorageMode{consensus.StoragePipelined, consensus.StorageInline} {
			if mode.String() == s {
				modes = append(modes, mode)
			}
		}
		if len(modes) == 0 {
			fmt.Fprintf(os.Stderr, "DISTKIT_STORAGE_MODE=%q: want pipelined or inline\n", s)
			os.Exit(2)
		}
	}
	code := 0
	for _, mode := range modes {
		storageMode = mode
		fmt.Printf("=== storage mode: %v\n", mode)
		if c := m.Run(); c != 0 {
			fmt.Printf("--- FAIL in storage mode %v\n", mode)
			code = c
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newCluster is consensustest.NewCluster with the storage mode under test.
func newCluster(t testing.TB, size int, opts consensustest.ClusterOptions) *consensustest.Cluster {
	t.Helper()
	configure := opts.Configure
	opts.Configure = func(cfg *consensus.Config) {
		cfg.StorageMode = storageMode
		if configure != nil {
			configure(cfg)
		}
	}
	return consensustest.NewCluster(t, size, opts)
}
