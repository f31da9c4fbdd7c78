package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/tcp"
	"github.com/prometheus/client_golang/prometheus"
)

// memberConfig configures one cluster member: its raft node, its Redis
// protocol listener and its HTTP listener.
type memberConfig struct {
	ID        uint64
	Dir       string
	Bootstrap []consensus.Member // empty: join an existing group
	RaftLn    net.Listener
	RaftAddr  string
	RedisLn   net.Listener
	HTTPLn    net.Listener
	TLS       *tls.Config
	Limits    limits

	// TLSAnyMember lets any certificate of the CA speak for any member
	// (tcp.Config.InsecureAnyCertificate).
	TLSAnyMember bool
	// Secret authenticates raft connections (tcp.Config.Secret). With
	// neither TLS nor Secret, raft traffic is unauthenticated.
	Secret []byte
	Logger *slog.Logger
	Auth   authConfig // users, protected mode, audit (security.go)

	// SnapshotEntries: zero means the consensus default.
	SnapshotEntries uint64
	// Clock is the member's physical clock (nil: the system's). Tests and
	// -clock-skew shift it to play a member whose clock is wrong.
	Clock clock.Clock
}

// limits bound what clients can make a member do.
type limits struct {
	MaxValue   int           // bytes in one value (SET, APPEND, MSET)
	MaxConns   int           // open RESP connections
	MaxRequest int           // bytes of one RESP command
	Timeout    time.Duration // per request
	StaleReads bool          // GET on new connections reads this member's state
	Pprof      bool          // serve /debug/pprof on the HTTP address

	// MaxReply bounds one RESP reply; zero: 8 × MaxRequest, at least
	// what GET of the largest value the state allows needs.
	MaxReply int
	// RequestTimeout bounds the time from a RESP request's first byte
	// to its last; zero: respDefaultReadTimeout.
	RequestTimeout time.Duration
	// IdleTimeout closes RESP connections idle this long between
	// requests; zero: defaultIdleTimeout.
	IdleTimeout time.Duration
	// WriteTimeout closes RESP clients that do not take their replies
	// within it; zero: respDefaultWriteTimeout.
	WriteTimeout time.Duration
}

const (
	defaultMaxValue    = 512 << 10
	defaultMaxConns    = 10_000
	defaultMaxRequest  = 1 << 20
	defaultTimeout     = 5 * time.Second
	defaultIdleTimeout = 5 * time.Minute // RESP connections idle this long are closed
)

// member is one running kvnode member.
type member struct {
	cfg     memberConfig
	node    *consensus.Node
	store   *store
	trans   *tcp.Transport
	redis   *respServer
	http    *http.Server
	metrics *metrics
	log     *slog.Logger

	// Security state (security.go): the implicit default user, the
	// limiter of failed authentications, the audit log, and whether this
	// member was removed from the cluster.
	implicit  *aclUser
	limiter   *authLimiter
	audit     *slog.Logger
	removed   atomic.Bool
	wasMember atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup
	closeMu   sync.Once
}

func startMember(cfg memberConfig) (*member, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	m := &member{
		cfg:   cfg,
		store: newStore(),
		log:   log.With("member", cfg.ID),
		stop:  make(chan struct{}),

		implicit: cfg.Auth.implicitDefault(),
		limiter:  newAuthLimiter(cfg.Auth.Now),
		audit:    cfg.Auth.Audit,
	}
	if m.audit == nil {
		m.audit = slog.New(slog.DiscardHandler)
	}
	m.metrics = newMetrics(m)
	maxEntry := max(consensus.DefaultMaxEntryBytes, 2*cfg.Limits.MaxRequest)
	unauthenticated := cfg.TLS == nil && cfg.Secret == nil
	if unauthenticated {
		m.log.Warn("kvnode: raft traffic is unauthenticated: use mutual TLS or -raft-secret-file outside trusted networks")
	}
	trans, err := tcp.New(tcp.Config{
		ID:                     cfg.ID,
		Listener:               cfg.RaftLn,
		AdvertiseAddr:          cfg.RaftAddr,
		TLS:                    cfg.TLS,
		InsecureAnyCertificate: cfg.TLS != nil && cfg.TLSAnyMember,
		Secret:                 cfg.Secret,
		AllowUnauthenticated:   unauthenticated,
		// One message carries up to MaxMsgBytes of entries plus one entry.
		MaxFrameBytes: max(tcp.DefaultMaxFrameBytes, 2*maxEntry+64<<10),
		Logger:        m.log,
	})
	if err != nil {
		cfg.RaftLn.Close()
		return nil, err
	}
	m.trans = trans
	node, err := consensus.Start(consensus.Config{
		ID:              cfg.ID,
		Dir:             filepath.Join(cfg.Dir, "raft"),
		Bootstrap:       cfg.Bootstrap,
		Transport:       m.trans,
		SnapshotEntries: cfg.SnapshotEntries,
		// A value may be up to MaxValue; MSET carries several.
		MaxEntryBytes: maxEntry,
		MaxMsgBytes:   uint64(maxEntry),
		Logger:        m.log,
		// Expiry runs on the leader's hybrid clock, bounded against
		// members whose clocks are off (fsm.go).
		Timestamps: true,
		Clock:      cfg.Clock,
		OnEvent:    m.onEvent,
	}, m.store)
	if err != nil {
		m.trans.Close()
		return nil, err
	}
	m.node = node
	m.noteMembership(node.Members(), node.Status().Removed)
	m.redis = newRESPServer(m.respConfig(), m.serveRESP, m.newConnState)
	m.http = &http.Server{
		Handler:           m.httpHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      max(cfg.Limits.Timeout+5*time.Second, 45*time.Second), // membership changes wait for catch-up
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		ln := cfg.RedisLn
		if cfg.TLS != nil {
			ln = tls.NewListener(ln, cfg.TLS) // redis-cli --tls, go-redis TLSConfig
		}
		m.redis.Serve(ln)
	}()
	go func() {
		defer m.wg.Done()
		ln := cfg.HTTPLn
		if cfg.TLS != nil {
			// With mutual TLS the HTTP API (membership included) also
			// requires a certificate from the cluster's CA.
			ln = tls.NewListener(ln, cfg.TLS)
		}
		m.http.Serve(ln)
	}()
	go func() {
		defer m.wg.Done()
		m.background()
	}()
	return m, nil
}

// background publishes this member's client addresses in the replicated
// state, and, while this member leads and keys with an expiry exist,
// advances the replicated clock every second.
func (m *member) background() {
	published := false
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if !published {
			published = m.publish() == nil
		}
		if !m.removed.Load() && m.node.Status().Removed {
			m.noteMembership(nil, true)
		}
		if m.isLeader() && m.store.needTicks() {
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Limits.Timeout)
			m.node.Propose(ctx, newCommand(opTick, m.nowMs()).b)
			cancel()
		}
		select {
		case <-m.stop:
			return
		case <-m.node.Done():
			return
		case <-t.C:
		}
	}
}

func (m *member) publish() error {
	want := memberAddrs{Redis: m.cfg.RedisLn.Addr().String(), HTTP: m.cfg.HTTPLn.Addr().String()}
	if got, ok := m.store.addrs(m.cfg.ID); ok && got == want {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Limits.Timeout)
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cmd := newCommand(opMeta, m.nowMs()).uvarint(m.cfg.ID).bytes([]byte(want.Redis)).bytes([]byte(want.HTTP))
	_, err := m.node.Propose(ctx, cmd.b)
	return err
}

func (m *member) isLeader() bool {
	l, ok := m.node.Leader()
	return ok && l == m.cfg.ID
}

// nowMs is the member's physical time in Unix milliseconds: the proposer's
// time a command carries.
func (m *member) nowMs() int64 {
	if m.cfg.Clock == nil {
		return time.Now().UnixMilli()
	}
	return m.cfg.Clock.Now().UnixMilli()
}

// waitReady waits until a leader is known and a write through this member
// has been applied.
func (m *member) waitReady(ctx context.Context) error {
	for {
		if _, ok := m.node.Leader(); ok {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := m.node.Propose(wctx, newCommand(opTick, m.nowMs()).b)
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.node.Done():
			return fmt.Errorf("kvnode: member %d stopped: %w", m.cfg.ID, m.node.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops accepting clients, then stops the raft node.
func (m *member) Close() error {
	var err error
	m.closeMu.Do(func() {
		close(m.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.http.Shutdown(ctx)
		m.redis.Close()
		m.cfg.RedisLn.Close() // in case Serve had not started yet
		err = m.node.Close()
		m.trans.Close()
		m.wg.Wait()
	})
	return err
}

// respConfig is the RESP server's configuration from the member's limits.
func (m *member) respConfig() respConfig {
	l := m.cfg.Limits
	idle := l.IdleTimeout
	if idle <= 0 {
		idle = defaultIdleTimeout
	}
	maxReply := l.MaxReply
	if maxReply <= 0 {
		maxReply = max(8*l.MaxRequest, maxValueBytes+1024)
	}
	return respConfig{
		MaxConns:     l.MaxConns,
		MaxRequest:   l.MaxRequest,
		MaxReply:     maxReply,
		ReadTimeout:  l.RequestTimeout,
		IdleTimeout:  idle,
		WriteTimeout: l.WriteTimeout,
	}
}

// metrics are a member's Prometheus metrics, in its own registry.
type metrics struct {
	reg      *prometheus.Registry
	commands *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(m *member) *metrics {
	x := &metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvnode_commands_total", Help: "Commands received, by name.",
		}, []string{"command"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvnode_command_errors_total", Help: "Error replies, by command and kind.",
		}, []string{"command", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kvnode_command_seconds", Help: "Command latency, by kind (read, write).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"kind"}),
	}
	status := func(f func(consensus.Status) float64) func() float64 {
		return func() float64 { return f(m.node.Status()) }
	}
	x.reg.MustRegister(x.commands, x.errors, x.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_connections", Help: "Open RESP connections."},
			func() float64 { return float64(m.redis.open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_raft_term", Help: "Current raft term."},
			status(func(s consensus.Status) float64 { return float64(s.Term) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_raft_commit_index", Help: "Highest committed index known here."},
			status(func(s consensus.Status) float64 { return float64(s.Commit) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_raft_applied_index", Help: "Highest applied index here."},
			status(func(s consensus.Status) float64 { return float64(s.Applied) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_raft_is_leader", Help: "1 on the leader."},
			status(func(s consensus.Status) float64 {
				if s.Role == consensus.RoleLeader {
					return 1
				}
				return 0
			})),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_raft_leader_changes_total", Help: "Leader changes seen."},
			status(func(s consensus.Status) float64 { return float64(s.Stats.LeaderChanges) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvnode_keys", Help: "Keys in the state (including expired ones not yet removed)."},
			func() float64 {
				m.store.mu.RLock()
				defer m.store.mu.RUnlock()
				return float64(len(m.store.data))
			}),
	)
	return x
}
