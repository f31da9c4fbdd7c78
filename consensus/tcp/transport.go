package tcp

import (
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/consensus"
)

// maxLearned bounds the addresses remembered from handshakes of members
// this transport was not told about.
const maxLearned = 1024

// Transport is a consensus.Transport over TCP, optionally with mutual TLS.
// Create it with New, hand it to consensus.Config.Transport, and let the
// node Start and Close it. It is safe for concurrent use.
//
// Goroutines: New starts none. Start starts the accept loop; each known
// peer has one writer goroutine and, while connected, one goroutine that
// watches its connection; each inbound connection has one reader
// goroutine. Close stops them all and waits for them.
type Transport struct {
	cfg       Config
	log       *slog.Logger
	ln        net.Listener
	advertise string
	flushEach bool // benchmarks only: one write per message

	started atomic.Bool
	stopped atomic.Bool       // Close has begun: Send does nothing
	h       consensus.Handler // set once by Start, before started

	mu      sync.Mutex
	closed  bool
	cancel  context.CancelFunc // ends the accept loop and inbound streams
	peers   map[uint64]*peer
	learned map[uint64]string // advertised addresses of members nobody told us about
	removed map[uint64]bool
	members map[uint64]bool       // named by AddPeer and not removed since: admitted
	told    bool                  // AddPeer was called: only members are admitted
	inbound int                   // inbound connections open
	conns   map[net.Conn]connInfo // open inbound and outbound snapshot connections

	wg sync.WaitGroup

	received, bytesReceived        atomic.Uint64
	accepted, refused, badFrames   atomic.Uint64
	authFailures, idleTimeouts     atomic.Uint64
	snapsSent, snapsRecv, snapsBad atomic.Uint64
}

var _ consensus.Transport = (*Transport)(nil)

// New validates cfg and opens the listener. The transport accepts
// connections once Start is called (normally by consensus.Start).
func New(cfg Config) (*Transport, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln := c.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", c.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("tcp: listen: %w", err)
		}
	}
	c.Listener = nil
	t := &Transport{
		cfg:       c,
		log:       c.Logger,
		ln:        ln,
		advertise: c.AdvertiseAddr,
		peers:     make(map[uint64]*peer),
		learned:   make(map[uint64]string),
		removed:   make(map[uint64]bool),
		members:   make(map[uint64]bool),
		conns:     make(map[net.Conn]connInfo),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("member", c.ID)
	if t.advertise == "" {
		if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
			t.advertise = a.String()
		}
	}
	return t, nil
}

// Addr returns the address the transport listens on (useful with
// "127.0.0.1:0").
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Start begins accepting connections and delivering inbound traffic to h,
// and starts connecting to the peers added so far.
func (t *Transport) Start(h consensus.Handler) error {
	if h == nil {
		return fmt.Errorf("tcp: nil Handler: %w", ErrInvalidConfig)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.started.Load() {
		return errors.New("tcp: transport already started")
	}
	t.h = h
	t.started.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.wg.Add(1)
	go t.acceptLoop(ctx)
	for _, p := range t.peers {
		t.runPeerLocked(p)
	}
	return nil
}

// AddPeer records how to reach member id, admits its inbound connections
// and starts connecting to it. A new address for a known member closes the
// current stream and dials the new one. An empty addr means "no address
// information": a known member keeps its address, a new one is dialed at
// the address it advertised in a handshake, if any, and stays unreachable
// until one is known.
//
// Once AddPeer was called, the transport accepts connections only from
// the members named by AddPeer and not removed since. Before (a new member
// that knows nobody, waiting to be contacted), it accepts any sender that
// passes authentication.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == 0 || id == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	delete(t.removed, id)
	t.members[id] = true
	t.told = true
	if addr == "" {
		addr = t.learned[id]
	}
	if p := t.peers[id]; p != nil {
		if addr != "" {
			p.setAddr(addr)
		}
		return
	}
	t.addPeerLocked(id, addr)
}

func (t *Transport) addPeerLocked(id uint64, addr string) *peer {
	p := newPeer(t, id, addr)
	t.peers[id] = p
	if t.started.Load() {
		t.runPeerLocked(p)
	}
	return p
}

func (t *Transport) runPeerLocked(p *peer) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.run(ctx)
	}()
}

// RemovePeer forgets member id: its stream is closed, queued messages are
// dropped, and its inbound connections are closed and refused from now on
// (until AddPeer names it again).
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	p := t.peers[id]
	delete(t.peers, id)
	delete(t.learned, id)
	delete(t.members, id)
	t.removed[id] = true
	var conns []net.Conn
	for c, ci := range t.conns {
		if ci.from == id && ci.inbound {
			conns = append(conns, c)
		}
	}
	t.mu.Unlock()
	if p != nil && p.cancel != nil {
		p.cancel()
	}
	for _, c := range conns {
		c.Close()
	}
}

// Send queues msgs on their peers' streams and returns at once. Messages
// to a peer whose queue is full or whose connection is down are dropped and
// reported with Handler.Unreachable. Messages that do not come from this
// member, are addressed to it, or are snapshots (see SendSnapshot) are
// dropped.
func (t *Transport) Send(msgs []consensus.Message) {
	if !t.started.Load() || t.stopped.Load() {
		return
	}
	// Each peer's messages are queued in one operation (one lock, one
	// wake-up of its writer), in their order in msgs, even when msgs
	// interleaves peers as raft's messages usually do.
	var doneBuf [8]uint64
	done := doneBuf[:0]
	var unreachable []uint64
	for i := range msgs {
		to := msgs[i].To
		if slices.Contains(done, to) {
			continue // queued with the first message to that peer
		}
		done = append(done, to)
		p := t.peerFor(to)
		if p == nil {
			if to != t.cfg.ID && to != 0 {
				unreachable = append(unreachable, to)
			}
			continue
		}
		if !p.enqueue(msgs[i:]) {
			unreachable = append(unreachable, to)
		}
	}
	for _, id := range unreachable {
		t.h.Unreachable(id)
	}
}

// peerFor returns the peer for id, creating it from an advertised address
// if the member was never added but has connected to us.
func (t *Transport) peerFor(id uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if p := t.peers[id]; p != nil {
		return p
	}
	if addr, ok := t.learned[id]; ok && t.knownLocked(id) {
		t.log.Info("tcp: dialing member at its advertised address", "peer", id, "addr", addr)
		return t.addPeerLocked(id, addr)
	}
	return nil
}

// knownLocked reports whether member id may connect: it was added and not
// removed since, or nobody was added yet and it was never removed.
func (t *Transport) knownLocked(id uint64) bool {
	if t.told {
		return t.members[id]
	}
	return !t.removed[id]
}

// Close stops every goroutine, closes the listener and all connections,
// and drops queued messages. It is safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.stopped.Store(true)
	peers := t.peers
	t.peers = map[uint64]*peer{}
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	cancel := t.cancel
	t.mu.Unlock()

	err := t.ln.Close()
	if cancel != nil {
		cancel()
	}
	for _, p := range peers {
		if p.cancel != nil {
			p.cancel()
		}
	}
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// connInfo describes a tracked connection.
type connInfo struct {
	inbound bool
	from    uint64 // inbound: the sender, once the handshake passed
	stream  byte   // inbound: the stream kind, once the handshake passed
}

// track registers a connection so Close and RemovePeer can close it. It
// returns false (and the caller must close c) if the transport is closed
// or, for inbound connections, if MaxConns are open.
func (t *Transport) track(c net.Conn, inbound bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || (inbound && t.inbound >= t.cfg.MaxConns) {
		return false
	}
	if inbound {
		t.inbound++
	}
	t.conns[c] = connInfo{inbound: inbound}
	return true
}

func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	if t.conns[c].inbound {
		t.inbound--
	}
	delete(t.conns, c)
	t.mu.Unlock()
}

// dial connects to member id at addr for stream, with TLS and the
// handshake, within the dial timeout. Authentication failures are counted.
func (t *Transport) dial(ctx context.Context, id uint64, addr string, stream byte) (net.Conn, error) {
	conn, err := t.dialConn(ctx, id, addr, stream)
	if errors.Is(err, ErrAuth) {
		t.authFailures.Add(1)
		t.log.Warn("tcp: peer failed authentication", "peer", id, "addr", addr, "err", err)
	}
	return conn, err
}

func (t *Transport) dialConn(ctx context.Context, id uint64, addr string, stream byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: dial member %d at %s: %w", id, addr, err)
	}
	t.tuneConn(raw)
	conn := raw
	ok := false
	defer func() {
		if !ok {
			raw.Close()
		}
	}()
	deadline, _ := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if t.cfg.TLS != nil {
		tc := t.cfg.TLS.Clone()
		if tc.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("tcp: member %d address %q: %w", id, addr, err)
			}
			tc.ServerName = host
		}
		c := tls.Client(raw, tc)
		conn = c
		if err := c.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tcp: TLS with member %d at %s: %w", id, addr, err)
		}
		if err := t.checkIdentity(c, id); err != nil {
			return nil, err
		}
	}
	raw.SetDeadline(deadline)
	if err := t.clientHandshake(conn, stream, id); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("tcp: handshake with member %d at %s: %w", id, addr, err))
	}
	if !stop() {
		return nil, ctxErr(ctx, ctx.Err())
	}
	raw.SetDeadline(time.Time{})
	ok = true
	return conn, nil
}

// clientHandshake runs the dialer's side of the handshake: hello, then,
// with a Secret, checking the acceptor's proof and sending ours, then the
// verdict.
func (t *Transport) clientHandshake(conn net.Conn, stream byte, id uint64) error {
	hs := handshake{stream: stream, cluster: t.cfg.ClusterID, from: t.cfg.ID, to: id, nonce: newNonce(), addr: t.advertise}
	secret := t.cfg.Secret
	if secret != nil {
		hs.auth = authSecret
	}
	hello := hs.append(make([]byte, 0, handshakeMax))
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	status, err := readStatus(conn)
	if err != nil {
		return err
	}
	if secret != nil {
		if status != statusChallenge {
			return fmt.Errorf("tcp: peer did not prove it holds the Secret: %w", ErrAuth)
		}
		var b [challengeLen]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			return fmt.Errorf("tcp: read challenge: %w", err)
		}
		ch, err := decodeChallenge(b[:])
		if err != nil {
			return err
		}
		expect := acceptorMAC(secret, hello, &ch.nonce)
		if !hmac.Equal(ch.mac[:], expect[:]) {
			return fmt.Errorf("tcp: peer's proof of the Secret is wrong: %w", ErrAuth)
		}
		proof := dialerMAC(secret, hello, &ch)
		if _, err := conn.Write(proof[:]); err != nil {
			return err
		}
		if status, err = readStatus(conn); err != nil {
			return err
		}
	}
	if status != statusOK {
		return fmt.Errorf("tcp: unexpected %s: %w", statusText[status], ErrMalformed)
	}
	return nil
}

// tuneConn sets TCP keepalive and (on Linux) TCP_USER_TIMEOUT on a TCP
// connection, so the kernel gives up on a peer that stopped acknowledging
// within about LivenessTimeout (IOTimeout, if longer) instead of after
// minutes of retransmissions.
func (t *Transport) tuneConn(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	lt := t.cfg.LivenessTimeout
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: lt, Interval: max(lt/4, time.Second), Count: 4})
	setUserTimeout(tc, max(lt, t.cfg.IOTimeout))
}

// rawConn returns the TCP connection under c.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// ctxErr prefers the context's error when it ended.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// checkIdentity verifies that the peer's certificate may speak for id.
func (t *Transport) checkIdentity(c *tls.Conn, id uint64) error {
	if t.cfg.PeerIdentity == nil {
		return nil // InsecureAnyCertificate
	}
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("tcp: no peer certificate: %w", errors.Join(ErrAuth, ErrRefused))
	}
	got, err := t.cfg.PeerIdentity(certs[0])
	if err != nil {
		return fmt.Errorf("tcp: peer certificate: %w", errors.Join(err, ErrAuth, ErrRefused))
	}
	if got != id {
		return fmt.Errorf("tcp: certificate is for member %d, not %d: %w", got, id, errors.Join(ErrAuth, ErrRefused))
	}
	return nil
}

// PeerStats describes the outbound stream to one peer.
type PeerStats struct {
	Addr        string // address dialed
	Connected   bool   // a stream is established
	Queued      int    // messages waiting to be written
	QueuedBytes int    // their payload bytes
	Sent        uint64 // messages written and flushed
	Batches     uint64 // batches written, each with one flush (Sent/Batches is the batching factor)
	BytesSent   uint64 // frame bytes written and flushed
	Dropped     uint64 // messages dropped: queue full, peer down, write failed
	Stalls      uint64 // streams closed because the peer sent no keepalive for LivenessTimeout
	Connects    uint64 // streams established
	Reconnects  uint64 // streams established after the first
	DialErrors  uint64 // failed connection attempts (refusals included)
}

// Stats is a snapshot of the transport's counters.
type Stats struct {
	Peers map[uint64]PeerStats // outbound streams by member id

	Received      uint64 // inbound messages handed to the Handler
	BytesReceived uint64 // their frame bytes
	Accepted      uint64 // inbound connections that passed the handshake
	Refused       uint64 // inbound connections refused at TLS or handshake
	AuthFailures  uint64 // handshakes that failed authentication (wrong Secret, replay, certificate naming another member), either direction
	BadFrames     uint64 // inbound connections closed for a malformed or oversized frame
	IdleTimeouts  uint64 // inbound streams closed after LivenessTimeout (IOTimeout on snapshots) without traffic

	SnapshotsSent     uint64 // SendSnapshot calls acknowledged by the receiver
	SnapshotsReceived uint64 // snapshots stored by the Handler and acknowledged
	SnapshotFailures  uint64 // snapshot streams that failed, either direction
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := Stats{
		Peers:             map[uint64]PeerStats{},
		Received:          t.received.Load(),
		BytesReceived:     t.bytesReceived.Load(),
		Accepted:          t.accepted.Load(),
		Refused:           t.refused.Load(),
		AuthFailures:      t.authFailures.Load(),
		BadFrames:         t.badFrames.Load(),
		IdleTimeouts:      t.idleTimeouts.Load(),
		SnapshotsSent:     t.snapsSent.Load(),
		SnapshotsReceived: t.snapsRecv.Load(),
		SnapshotFailures:  t.snapsBad.Load(),
	}
	t.mu.Lock()
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	for _, p := range peers {
		s.Peers[p.id] = p.stats()
	}
	return s
}
