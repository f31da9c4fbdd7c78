package main

import (
	"net"
	"net/http"
	"testing"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/quorum/quorumtest"
)

// The HTTP replica (a peer as another node reaches it) keeps the Replica
// contract end to end: JSON encoding, validation and the node's local store.
func TestHTTPReplicaConformance(t *testing.T) {
	quorumtest.TestReplica(t, func(t *testing.T, name string, ring *quorum.Ring) quorum.Replica[string] {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nd, err := StartNode(NodeConfig{
			Name: name, Listener: ln, Partitions: ring.Partitions(),
			Peers: map[string]string{name: ln.Addr().String()},
		})
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{}}
		t.Cleanup(func() {
			client.CloseIdleConnections()
			nd.Close()
		})
		from := &Node{name: "client", blocked: map[string]bool{}}
		return &peer{from: from, name: name, base: "http://" + nd.Addr(), client: client}
	})
}
