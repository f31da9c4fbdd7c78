package tcp

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/distkit/distkit/clock"
)

// Errors returned by the transport. Test for them with errors.Is; most are
// wrapped with detail.
var (
	// ErrInvalidConfig is returned by New for a Config it cannot run.
	ErrInvalidConfig = errors.New("tcp: invalid config")
	// ErrInvalidMessage is returned by SendSnapshot for a header that is
	// not a snapshot from this member.
	ErrInvalidMessage = errors.New("tcp: invalid message")
	// ErrClosed is returned by calls on a closed transport.
	ErrClosed = errors.New("tcp: transport closed")
	// ErrNotStarted is returned by SendSnapshot before Start.
	ErrNotStarted = errors.New("tcp: transport not started")
	// ErrUnknownPeer is returned by SendSnapshot for a member with no
	// known address.
	ErrUnknownPeer = errors.New("tcp: unknown peer")
	// ErrRefused means the remote end refused the handshake: wrong
	// cluster, wrong receiver, an unknown or removed sender, a certificate
	// that does not match the sender id, or an unsupported protocol
	// version.
	ErrRefused = errors.New("tcp: handshake refused")
	// ErrAuth means a handshake failed authentication: the peer does not
	// hold the group's Secret, replayed an old handshake, or its
	// certificate does not name the member it claims to be.
	ErrAuth = errors.New("tcp: authentication failed")
	// ErrMalformed means bytes on a connection are not a valid frame; the
	// connection is closed.
	ErrMalformed = errors.New("tcp: malformed frame")
	// ErrFrameTooLarge means a frame exceeds Config.MaxFrameBytes; the
	// connection is closed.
	ErrFrameTooLarge = errors.New("tcp: frame too large")
	// ErrSnapshotRejected means the receiver's Handler.HandleSnapshot
	// returned an error (its text is included) or the stream it received
	// failed its checksum.
	ErrSnapshotRejected = errors.New("tcp: snapshot rejected by receiver")
	// ErrChecksum means a received snapshot stream does not match the
	// length and CRC-32C its sender declared.
	ErrChecksum = errors.New("tcp: snapshot checksum mismatch")
)

// errVersion is a handshake from a peer speaking another protocol version.
var errVersion = fmt.Errorf("unsupported protocol version: %w", ErrMalformed)

// Defaults applied to zero fields of Config.
const (
	DefaultDialTimeout        = 2 * time.Second
	DefaultIOTimeout          = 5 * time.Second
	DefaultSnapshotAckTimeout = time.Minute
	DefaultMaxQueueMessages   = 4096
	DefaultMaxQueueBytes      = 64 << 20
	DefaultMaxFrameBytes      = 16 << 20
	DefaultSnapshotChunkBytes = 256 << 10
	DefaultMinBackoff         = 50 * time.Millisecond
	DefaultMaxBackoff         = 250 * time.Millisecond
	DefaultMaxBatchMessages   = 512
	DefaultMaxConns           = 1024
	DefaultKeepaliveInterval  = 250 * time.Millisecond
	DefaultLivenessTimeout    = 2 * time.Second

	// MinSecretBytes is the shortest Config.Secret accepted.
	MinSecretBytes = 16
)

// Config configures a Transport. Zero fields take the documented defaults;
// New copies the Config and never modifies the caller's value.
type Config struct {
	// ID is the local member id: non-zero. Required. Connections that
	// name another receiver are refused.
	ID uint64

	// ClusterID, when non-zero, names the group: connections from a
	// transport with another ClusterID are refused, so two clusters that
	// share hosts cannot talk to each other by mistake. Zero is a cluster
	// id like any other (it only matches zero).
	ClusterID uint64

	// ListenAddr is the TCP address to listen on, such as "10.0.0.1:7001"
	// or "127.0.0.1:0". Exactly one of ListenAddr and Listener is required.
	ListenAddr string
	// Listener, if set, is used instead of ListenAddr; the transport owns
	// it and closes it on Close. It must deliver plain TCP connections: the
	// transport adds TLS itself when TLS is set.
	Listener net.Listener
	// AdvertiseAddr is the address peers should dial to reach this member,
	// sent in every handshake so a member that does not know this one yet
	// (a new member catching up) can answer. Default: the listener's
	// address when it names a specific host, otherwise none. At most 255
	// bytes.
	AdvertiseAddr string

	// TLS, when set, turns on mutual TLS (see the package documentation,
	// "Security"). It must hold this member's
	// certificate (Certificates or GetCertificate) and the CA pool peers'
	// certificates chain to (RootCAs; ClientCAs defaults to RootCAs).
	// Inbound connections must present a client certificate that verifies
	// against ClientCAs; outbound connections verify the server against
	// RootCAs and, when ServerName is empty, the host of the dialed address
	// (so certificates need the member's IP or DNS name as a SAN).
	// The transport clones it and never modifies the caller's value.
	TLS *tls.Config
	// PeerIdentity maps a peer's verified leaf certificate to the one
	// member id it may speak for. The handshake's sender id (inbound) and
	// the dialed member id (outbound) must match it, so a member cannot
	// impersonate another even with a valid certificate. Default, with
	// TLS: MemberIDFromCertificate, which reads the id issued with
	// MemberURI, so a certificate without one is refused. It requires TLS.
	PeerIdentity func(cert *x509.Certificate) (uint64, error)
	// InsecureAnyCertificate, with TLS and no PeerIdentity, lets any
	// certificate that chains to the CA speak for any member: whoever
	// holds one certificate of the CA can impersonate every member. Use it
	// only with certificates that cannot name their member.
	InsecureAnyCertificate bool

	// Secret, when set, is a key shared by every member of the group
	// (at least MinSecretBytes; 32 random bytes are recommended). Every
	// connection then opens with a challenge-response handshake
	// (HMAC-SHA256 over fresh nonces from both ends) in which each end
	// proves it holds the key, so a party without it can neither send
	// nor receive raft traffic, and a recorded handshake cannot be
	// replayed. It authenticates connection set-up only: it does not
	// encrypt, and it does not bind a member to its id (any holder of the
	// key may claim any member id) or protect a connection against
	// someone on the path; TLS does. It may be combined with TLS. The
	// transport copies it.
	Secret []byte
	// AllowUnauthenticated must be set to run with neither TLS nor
	// Secret. Then nothing is authenticated: anyone who can reach the
	// listener can claim to be any member this transport knows and inject
	// raft messages and snapshots, and any listener at a peer's address
	// receives its traffic. Only for tests and networks where every host
	// that can reach the port is trusted. It changes nothing when TLS or
	// Secret is set.
	AllowUnauthenticated bool

	// DialTimeout bounds connecting to a peer, TLS and handshake included.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// IOTimeout bounds each write to a peer and each read of a snapshot
	// stream frame: a peer that stops reading is disconnected instead of
	// stalling the stream. Default DefaultIOTimeout.
	IOTimeout time.Duration
	// KeepaliveInterval is how often a quiet message stream carries a
	// keepalive frame in each direction: the sender sends one when it
	// wrote nothing for an interval, the receiver answers the traffic it
	// gets at most about once per half interval. Default
	// DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
	// LivenessTimeout bounds the silence on a message stream: a sender that
	// heard nothing from the receiver for this long (its link stalled, its
	// writes piling up in kernel buffers) closes the stream and redials,
	// and a receiver closes an inbound stream idle for this long. It also
	// sets TCP_USER_TIMEOUT (Linux) and TCP keepalive on every connection.
	// At least 4 KeepaliveIntervals. Default DefaultLivenessTimeout, or 4
	// KeepaliveIntervals if that is longer.
	LivenessTimeout time.Duration

	// SnapshotAckTimeout bounds how long SendSnapshot waits, after the last
	// byte, for the receiver to store the snapshot. Default
	// DefaultSnapshotAckTimeout.
	SnapshotAckTimeout time.Duration

	// MaxQueueMessages bounds the messages queued for one peer; beyond it,
	// Send drops. Log appends may use 7/8 of it (and of MaxQueueBytes),
	// the rest is kept for other messages. Default DefaultMaxQueueMessages.
	MaxQueueMessages int
	// MaxQueueBytes bounds the payload bytes queued for one peer; beyond
	// it, Send drops. Default DefaultMaxQueueBytes.
	MaxQueueBytes int
	// MaxFrameBytes bounds one frame (one raft message, or one snapshot
	// chunk) in both directions; a larger inbound frame closes the
	// connection, a larger outbound message is dropped. It must exceed the
	// node's largest message (consensus.Config.MaxMsgBytes plus one entry).
	// Default DefaultMaxFrameBytes.
	MaxFrameBytes int
	// SnapshotChunkBytes is the size of the chunks a snapshot body is
	// streamed in; at most MaxFrameBytes. Default DefaultSnapshotChunkBytes
	// (or MaxFrameBytes if smaller).
	SnapshotChunkBytes int
	// MaxBatchMessages bounds the messages handed to Handler.HandleMessages
	// in one call. Default DefaultMaxBatchMessages.
	MaxBatchMessages int

	// MaxConns bounds the inbound connections open at once (handshakes in
	// progress included); more are closed at once. Each member needs one
	// per peer plus one per snapshot in flight. Default DefaultMaxConns.
	MaxConns int

	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between reconnection attempts to a peer. Defaults DefaultMinBackoff
	// and DefaultMaxBackoff. However long an outage lasts, a healed link
	// is retried within MaxBackoff (after an attempt that went unanswered,
	// within DialTimeout + MaxBackoff), so keep MaxBackoff well under the
	// group's election timeout: a follower is then back within two
	// election timeouts of its links healing.
	MinBackoff, MaxBackoff time.Duration

	// Clock times reconnection backoff. Default clock.Real.
	Clock clock.Clock
	// Logger receives connection events and refusals. Nil is silent.
	Logger *slog.Logger
}

// withDefaults returns a validated copy of c with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("tcp: "+format+": %w", append(args, ErrInvalidConfig)...)
	}
	if c.ID == 0 {
		return bad("ID is required")
	}
	if (c.ListenAddr == "") == (c.Listener == nil) {
		return bad("exactly one of ListenAddr and Listener is required")
	}
	if len(c.AdvertiseAddr) > 255 {
		return bad("AdvertiseAddr longer than 255 bytes")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.IOTimeout, DefaultIOTimeout)
	def(&c.SnapshotAckTimeout, DefaultSnapshotAckTimeout)
	def(&c.KeepaliveInterval, DefaultKeepaliveInterval)
	def(&c.LivenessTimeout, max(DefaultLivenessTimeout, 4*c.KeepaliveInterval))
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	defInt(&c.MaxQueueMessages, DefaultMaxQueueMessages)
	defInt(&c.MaxQueueBytes, DefaultMaxQueueBytes)
	defInt(&c.MaxFrameBytes, DefaultMaxFrameBytes)
	defInt(&c.SnapshotChunkBytes, min(DefaultSnapshotChunkBytes, c.MaxFrameBytes))
	defInt(&c.MaxBatchMessages, DefaultMaxBatchMessages)
	defInt(&c.MaxConns, DefaultMaxConns)
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	switch {
	case c.DialTimeout < 0, c.IOTimeout < 0, c.SnapshotAckTimeout < 0, c.MinBackoff < 0, c.MaxBackoff < 0,
		c.KeepaliveInterval < 0, c.LivenessTimeout < 0:
		return bad("timeouts and backoffs must be positive")
	case c.MinBackoff > c.MaxBackoff:
		return bad("MinBackoff %v exceeds MaxBackoff %v", c.MinBackoff, c.MaxBackoff)
	case c.MaxQueueMessages < 0, c.MaxQueueBytes < 0, c.MaxBatchMessages < 0, c.MaxConns < 0:
		return bad("queue, batch and connection bounds must be positive")
	case c.MaxFrameBytes < 64 || c.MaxFrameBytes > math.MaxInt32:
		return bad("MaxFrameBytes %d outside [64, %d]", c.MaxFrameBytes, math.MaxInt32)
	case c.SnapshotChunkBytes < 0 || c.SnapshotChunkBytes > c.MaxFrameBytes:
		return bad("SnapshotChunkBytes %d outside (0, MaxFrameBytes=%d]", c.SnapshotChunkBytes, c.MaxFrameBytes)
	case c.LivenessTimeout < 4*c.KeepaliveInterval:
		return bad("LivenessTimeout %v under 4 KeepaliveIntervals (%v)", c.LivenessTimeout, c.KeepaliveInterval)
	case c.PeerIdentity != nil && c.TLS == nil:
		return bad("PeerIdentity requires TLS")
	case c.InsecureAnyCertificate && (c.TLS == nil || c.PeerIdentity != nil):
		return bad("InsecureAnyCertificate requires TLS and no PeerIdentity")
	case c.Secret != nil && len(c.Secret) < MinSecretBytes:
		return bad("Secret of %d bytes, want at least %d", len(c.Secret), MinSecretBytes)
	case c.TLS == nil && c.Secret == nil && !c.AllowUnauthenticated:
		return bad("no authentication: set TLS or Secret (or AllowUnauthenticated)")
	}
	if c.Secret != nil {
		c.Secret = bytes.Clone(c.Secret)
	}
	if c.TLS != nil && c.PeerIdentity == nil && !c.InsecureAnyCertificate {
		c.PeerIdentity = MemberIDFromCertificate
	}
	if c.TLS != nil {
		t := c.TLS.Clone()
		if len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetClientCertificate == nil {
			return bad("TLS needs this member's certificate")
		}
		if t.RootCAs == nil {
			return bad("TLS.RootCAs is required to verify peers")
		}
		if t.ClientCAs == nil {
			t.ClientCAs = t.RootCAs
		}
		if t.InsecureSkipVerify {
			return bad("TLS.InsecureSkipVerify defeats mutual TLS")
		}
		t.ClientAuth = tls.RequireAndVerifyClientCert
		if t.MinVersion < tls.VersionTLS12 {
			t.MinVersion = tls.VersionTLS12
		}
		c.TLS = t
	}
	return c, nil
}
