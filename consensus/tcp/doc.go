// Package tcp carries the messages of a [consensus] group over TCP, with
// optional mutual TLS. A [Transport] plugs into consensus.Config.Transport:
//
//	tlsConfig, err := tcp.LoadTLSConfig("ca.crt", "member1.crt", "member1.key")
//	if err != nil { ... }
//	tr, err := tcp.New(tcp.Config{
//		ID:           1,
//		ListenAddr:   "10.0.0.1:7001",
//		TLS:          tlsConfig,                   // nil: plain TCP
//		PeerIdentity: tcp.MemberIDFromCertificate, // certificates name their member
//	})
//	if err != nil { ... }
//	node, err := consensus.Start(consensus.Config{
//		ID:        1,
//		Dir:       "/var/lib/app/raft",
//		Transport: tr, // started and closed by the node
//		Bootstrap: []consensus.Member{
//			{ID: 1, Addr: "10.0.0.1:7001"},
//			{ID: 2, Addr: "10.0.0.2:7001"},
//			{ID: 3, Addr: "10.0.0.3:7001"},
//		},
//	}, stateMachine)
//
// Members are addressed by id; the node tells the transport each member's
// address (Member.Addr) and tells it again when membership or an address
// changes.
//
// # How traffic flows
//
// Each member keeps one long-lived outbound connection per peer. Send only
// appends to that peer's bounded queue (Config.MaxQueueMessages and
// MaxQueueBytes) and returns; a writer goroutine per peer drains everything
// queued into one buffered write and one flush, and pipelines without
// waiting for replies. When a queue is full, or the peer's connection is
// down, messages are dropped and Handler.Unreachable is called: raft
// retransmits, so a slow or dead peer costs bounded memory and never blocks
// the raft loop. Log appends may fill only 7/8 of a queue, so heartbeats,
// votes and responses still get through a burst of appends. Lost connections are redialed with jittered exponential
// backoff (Config.MinBackoff, MaxBackoff). On the receiving side, a reader
// goroutine per connection hands everything that arrived together to
// Handler.HandleMessages in one batch.
//
// Snapshots travel on a connection of their own, so a large one never
// delays log replication: a header, the body in chunks of
// Config.SnapshotChunkBytes (never whole in memory), then the body's length
// and CRC-32C. The receiver's Handler.HandleSnapshot sees io.EOF only if
// both match; SendSnapshot returns nil only after that handler returned
// nil. A broken, truncated or corrupted stream is an error on both sides.
//
// # Wire protocol and bad input
//
// Every connection opens with a handshake: magic, protocol version, stream
// kind, cluster id, sender id, receiver id and the sender's advertised
// address. The acceptor refuses a connection for another receiver, another
// cluster (Config.ClusterID), a removed member, or a certificate that does
// not match the sender. Then come length-prefixed frames whose type byte
// also carries the protocol version. A frame larger than
// Config.MaxFrameBytes, a malformed frame or garbage closes that connection
// with a log line; the transport keeps serving everyone else. Whatever a
// peer sends, a connection buffers at most about twice the larger of
// Config.MaxFrameBytes and 1 MiB, and at most Config.MaxConns inbound
// connections are open at once.
//
// A member that was never told about a peer (a new member catching up) can
// still answer it: the peer's handshake advertises its address
// (Config.AdvertiseAddr), which is dialed when needed.
//
// # Mutual TLS
//
// Set Config.TLS to a tls.Config with this member's certificate and the
// cluster's CA pool in RootCAs. Every connection then runs TLS 1.2+ with
// certificates checked in both directions: a peer without a certificate,
// or with one from another CA, cannot connect, so it cannot inject
// messages or snapshots. With Config.PeerIdentity set to
// MemberIDFromCertificate, a certificate is moreover bound to one member
// id, so a compromised member cannot impersonate another.
//
// To issue member certificates (for example in a deployment tool):
//
//  1. Create one CA for the cluster, kept offline; every member trusts
//     only it (RootCAs).
//  2. For member id, issue a certificate whose subject alternative names
//     hold the IP addresses or DNS names peers dial (Member.Addr's host;
//     it is verified like a server name) and the URI MemberURI(id), with
//     extended key usages ServerAuth and ClientAuth (each member is both).
//  3. Keep certificates short-lived and rotate them. LoadTLSConfig reads
//     the CA, certificate and key from PEM files and re-reads the pair
//     when the files change; new connections use the new pair. (With a
//     hand-built tls.Config, use GetCertificate and GetClientCertificate.)
//
// # Goroutines and shutdown
//
// New opens the listener and starts nothing. Start (called by
// consensus.Start) starts the accept loop and one writer per peer; each
// connection has one reader. Close stops every goroutine, closes the
// listener and all connections, and returns once they are gone; it is
// idempotent. Stats reports per-peer queue depth, messages and bytes sent,
// batches, drops and reconnects, and inbound counters.
//
// The transport does not encrypt without TLS, compress, or multiplex
// several groups on one port; each group needs its own listener (and
// ClusterID guards against crossed wires).
package tcp
