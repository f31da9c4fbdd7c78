package quorumtest_test

import (
	"testing"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/quorum/quorumtest"
)

func TestMemReplica(t *testing.T) {
	quorumtest.TestReplica(t, func(_ *testing.T, name string, ring *quorum.Ring) quorum.Replica[string] {
		return quorum.NewMemReplica[string](name, ring)
	})
}
