// Package tcp carries the messages of a [consensus] group over TCP, with
// optional mutual TLS. A [Transport] plugs into consensus.Config.Transport:
//
//	tlsConfig, err := tcp.LoadTLSConfig("ca.crt", "member1.crt", "member1.key")
//	if err != nil { ... }
//	tr, err := tcp.New(tcp.Config{
//		ID:         1,
//		ListenAddr: "10.0.0.1:7001",
//		TLS:        tlsConfig, // certificates name their member (MemberURI)
//		// or, without TLS: Secret: groupKey (32 random bytes shared by all members)
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
// changes. New refuses a Config with neither TLS nor Secret unless
// AllowUnauthenticated says so (see Security).
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
// A link can stall without breaking: after a partition, writes still
// succeed into kernel buffers for minutes while nothing arrives. So the
// receiver of a message stream answers with a small keepalive frame
// (at most one per half Config.KeepaliveInterval, only when it has read
// something, and never per message), and the sender sends one whenever it
// wrote nothing for an interval. A sender that hears nothing for
// Config.LivenessTimeout closes the stream, reports the peer unreachable
// and redials; a receiver closes a stream idle for as long. Every
// connection also gets TCP keepalive and, on Linux, TCP_USER_TIMEOUT, so
// the kernel gives up on unacknowledged data after about LivenessTimeout
// (IOTimeout, if longer). A stalled link is thus replaced within about
// LivenessTimeout + DialTimeout + MaxBackoff once a path works again.
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
// Every connection opens (after TLS, when configured) with a handshake:
// magic, protocol version (2), stream kind, authentication mode, cluster
// id, sender id, receiver id, a fresh nonce and the sender's advertised
// address; with a Secret, the challenge-response described under Security
// follows. The acceptor refuses a connection that fails authentication,
// for another receiver or another cluster (Config.ClusterID), or from a
// member it does not know; it reads no frame before that, and counts
// (Stats.Refused, Stats.AuthFailures) and logs every refusal. The whole
// handshake, TLS included, must finish within Config.DialTimeout. Then
// come length-prefixed frames whose type byte also carries the protocol
// version. A frame larger than Config.MaxFrameBytes, a malformed frame or
// garbage closes that connection with a log line; the transport keeps
// serving everyone else.
//
// Memory follows what peers actually send, not what they announce: a
// frame's buffer grows in 64 KiB steps as its bytes arrive, so a peer that
// announces a MaxFrameBytes frame and stalls holds about 128 KiB, and the
// stalled stream is closed after LivenessTimeout (message streams) or
// IOTimeout (snapshot streams). A connection buffers at most about twice
// the larger of Config.MaxFrameBytes and 1 MiB of what arrived, and at
// most Config.MaxConns inbound connections are open at once.
//
// # Security
//
// What is authenticated depends on the Config:
//
//   - TLS (mutual): every connection runs TLS 1.2+ with certificates from
//     the cluster's CA checked in both directions, and each certificate is
//     bound to one member id: by default PeerIdentity is
//     MemberIDFromCertificate, so an inbound sender must hold a certificate
//     naming the id it claims, a dialed server must hold one naming the
//     member dialed, and a certificate without a MemberURI is refused. A
//     compromised member cannot impersonate another, and traffic is
//     encrypted and integrity-protected. Config.InsecureAnyCertificate
//     turns the binding off (any CA certificate speaks for any member).
//   - Secret: every connection opens with a challenge-response in which
//     each end proves it holds the group's key: HMAC-SHA256 over the
//     hello (with the dialer's fresh nonce) and the acceptor's fresh
//     nonce, compared in constant time. A party without the key can
//     neither inject traffic nor receive any, and recorded handshakes do
//     not verify again. It does not encrypt, does not protect an
//     established connection from someone on the path who can inject
//     into TCP streams, and does not bind members to ids (every key
//     holder may claim any id): use TLS where that matters. Secret and
//     TLS may be combined. Generate the key with 32 random bytes (for
//     example "head -c 32 /dev/urandom > raft.key"), give every member
//     the same one, and keep it as secret as a private key; changing it
//     needs every member restarted with the new one.
//   - Neither (Config.AllowUnauthenticated must be set): nothing is
//     authenticated. Anyone who can reach the listener can claim to be any
//     member the transport knows and inject raft messages and snapshots,
//     which can corrupt the group's state; anyone who can take over a
//     peer's address receives its traffic. Use it only where every host
//     that can reach the port is trusted.
//
// Whatever the mode, a transport admits only the members it knows:
// those named by AddPeer (the node names every member of its
// configuration, and each new one as its membership change is applied)
// and not removed since by RemovePeer. A transport that was never told
// about any member (a new member with empty state, waiting to be
// contacted) admits any sender that passes authentication, learns its
// address from the handshake (Config.AdvertiseAddr) and dials it when
// needed; once it learns its configuration (from the leader's snapshot,
// or from AddPeer calls made by the application, as a joining member
// learning the members' addresses from a running one does), only members
// are admitted.
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
// batches, drops, reconnects and stalls, and inbound counters.
//
// The transport does not encrypt without TLS, compress, or multiplex
// several groups on one port; each group needs its own listener (and
// ClusterID guards against crossed wires).
package tcp
