package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/tcp"
)

// Defaults of the no-flags mode.
const (
	demoRedisBase = 6381
	demoHTTPBase  = 8081
	demoRaftBase  = 7001
	demoMembers   = 3
)

type options struct {
	id      uint64
	peers   string
	raft    string
	redis   string
	http    string
	data    string
	join    string
	tlsCA   string
	tlsCert string
	tlsKey  string
	anyCert bool
	secret  string
	ports   int

	secretKey []byte // read from secret
	snapN     uint64
	verbose   bool
	limits    limits
	// clockSkew shifts this process's physical clock (fault injection).
	clockSkew time.Duration

	requirePass string
	protected   bool
	certUsers   bool
	auditLog    string
	auth        authConfig // built from the three above by run
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kvnode:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("kvnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&o.id, "id", 0, "this member's id (non-zero, never reused); without -id, run a 3-member demo cluster in this process")
	fs.StringVar(&o.peers, "peers", "", "initial members as id=host:port,... (raft addresses); used on the first start only")
	fs.StringVar(&o.raft, "raft", "", "raft listen address (default: this member's entry in -peers)")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis protocol listen address")
	fs.StringVar(&o.http, "http", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&o.data, "data", "", "data directory (required with -id); a restart with the same flags resumes from it")
	fs.StringVar(&o.join, "join", "", "HTTP URL of a running member: join its cluster (as a learner, then a voter)")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate (PEM) for mutual TLS between members")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "this member's certificate (PEM), signed by -tls-ca")
	fs.StringVar(&o.tlsKey, "tls-key", "", "this member's private key (PEM)")
	fs.BoolVar(&o.anyCert, "tls-any-member", false, "let any certificate of -tls-ca speak for any member (by default a member's certificate must name it with a distkit://member/<id> URI)")
	fs.StringVar(&o.secret, "raft-secret-file", "", "file holding the group's shared secret (at least 16 bytes) that authenticates raft connections; without it or mutual TLS, raft traffic is unauthenticated")
	fs.IntVar(&o.limits.MaxValue, "max-value", defaultMaxValue, "largest value in bytes")
	fs.IntVar(&o.limits.MaxConns, "max-conns", defaultMaxConns, "most open Redis connections")
	fs.IntVar(&o.limits.MaxRequest, "max-request", defaultMaxRequest, "largest Redis command in bytes")
	fs.DurationVar(&o.limits.Timeout, "timeout", defaultTimeout, "request timeout")
	fs.BoolVar(&o.limits.StaleReads, "stale-reads", false, "serve GET/MGET/EXISTS from this member's state without a read barrier (not linearizable)")
	fs.Uint64Var(&o.snapN, "snapshot-entries", consensus.DefaultSnapshotEntries, "take a snapshot (and compact the log) every this many applied entries")
	fs.BoolVar(&o.verbose, "v", false, "log raft events to stderr")
	fs.StringVar(&o.requirePass, "requirepass", "", "password of the default user until ACL SETUSER default changes it (clients: AUTH <password>, HTTP Basic auth as user default)")
	fs.BoolVar(&o.certUsers, "tls-cert-users", false, "with TLS, a client certificate whose Common Name names an ACL user authenticates as that user")
	fs.BoolVar(&o.protected, "protected-mode", true, "while the default user has no password and TLS is off, refuse clients that are not on the loopback interface")
	fs.StringVar(&o.auditLog, "audit-log", "-", "where to write the audit log of security events (JSON lines): - for stderr, a file path to append to, or off")
	fs.BoolVar(&o.limits.Pprof, "pprof", false, "serve Go profiles at /debug/pprof/ on the HTTP address")
	// -ports is for tests: 0 puts the demo cluster on free ports.
	fs.IntVar(&o.ports, "ports", -1, "")
	// -clock-skew is for tests: it shifts the member's physical clock.
	fs.DurationVar(&o.clockSkew, "clock-skew", 0, "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: kvnode [flags]   (no flags: a 3-member demo cluster in one process)")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "ports" || f.Name == "clock-skew" {
				return // for tests only
			}
			fmt.Fprintf(stderr, "  -%s\n    \t%s", f.Name, f.Usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.limits.MaxValue <= 0 || o.limits.MaxConns <= 0 || o.limits.Timeout <= 0 {
		return nil, errors.New("-max-value, -max-conns and -timeout must be positive")
	}
	if o.limits.MaxRequest < o.limits.MaxValue+1024 {
		o.limits.MaxRequest = o.limits.MaxValue + 1024
	}
	if o.certUsers && o.tlsCA == "" {
		return nil, errors.New("-tls-cert-users needs -tls-ca, -tls-cert and -tls-key")
	}
	if o.id == 0 && (o.peers != "" || o.join != "" || o.data != "") {
		return nil, errors.New("-peers, -join and -data need -id")
	}
	if o.id != 0 {
		if o.data == "" {
			return nil, errors.New("-data is required with -id")
		}
		if (o.peers == "") == (o.join == "") {
			return nil, errors.New("give either -peers (a new or restarting cluster member) or -join (a new member of a running cluster)")
		}
	}
	return o, nil
}

// parsePeers parses id=host:port,...
func parsePeers(s string) ([]consensus.Member, error) {
	var out []consensus.Member
	for part := range strings.SplitSeq(s, ",") {
		idStr, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, fmt.Errorf("bad -peers entry %q: want id=host:port with a non-zero id", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("bad -peers address %q: %v", addr, err)
		}
		if slices.ContainsFunc(out, func(m consensus.Member) bool { return m.ID == id }) {
			return nil, fmt.Errorf("member %d listed twice in -peers", id)
		}
		out = append(out, consensus.Member{ID: id, Addr: addr})
	}
	return out, nil
}

func loadTLS(o *options) (*tls.Config, error) {
	if o.tlsCA == "" && o.tlsCert == "" && o.tlsKey == "" {
		return nil, nil
	}
	if o.tlsCA == "" || o.tlsCert == "" || o.tlsKey == "" {
		return nil, errors.New("mutual TLS needs all of -tls-ca, -tls-cert and -tls-key")
	}
	// The pair is re-read when the files change (certificate rotation).
	cfg, err := tcp.LoadTLSConfig(o.tlsCA, o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, err
	}
	// The HTTP server asks for and checks client certificates too.
	cfg.ClientCAs = cfg.RootCAs
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.MinVersion = tls.VersionTLS12
	return cfg, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	tlsCfg, err := loadTLS(o)
	if err != nil {
		return err
	}
	if o.secret != "" {
		if o.secretKey, err = os.ReadFile(o.secret); err != nil {
			return err
		}
		o.secretKey = bytes.TrimSpace(o.secretKey)
	}
	audit, closeAudit, err := openAudit(o.auditLog, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	o.auth = authConfig{RequirePass: o.requirePass, TLS: tlsCfg != nil, Protected: o.protected, CertUsers: o.certUsers, Audit: audit}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var members []*member
	var cleanup func()
	if o.id == 0 {
		members, cleanup, err = startDemo(o, tlsCfg, logger)
	} else {
		var m *member
		m, err = startOne(ctx, o, tlsCfg, logger)
		members = []*member{m}
	}
	if err != nil {
		return err
	}
	closeAll := func() error {
		var errs []error
		for _, m := range members {
			errs = append(errs, m.Close())
		}
		if cleanup != nil {
			cleanup()
		}
		return errors.Join(errs...)
	}
	for _, m := range members {
		fmt.Fprintf(stdout, "member %d: redis %s http %s raft %s\n", m.cfg.ID,
			m.cfg.RedisLn.Addr(), m.cfg.HTTPLn.Addr(), m.cfg.RaftAddr)
	}
	// Ready: a leader is known and a write through every local member applied.
	readyErr := make(chan error, 1)
	go func() {
		for _, m := range members {
			if err := m.waitReady(ctx); err != nil {
				readyErr <- err
				return
			}
		}
		readyErr <- nil
	}()
	select {
	case err := <-readyErr:
		if err != nil && ctx.Err() == nil {
			closeAll()
			return err
		}
		if err == nil {
			fmt.Fprintln(stdout, "ready")
		}
	case <-ctx.Done():
	}
	// Run until a signal, or until a member stops by itself.
	done := make(chan struct{})
	for _, m := range members {
		go func() {
			select {
			case <-m.node.Done():
			case <-done:
				return
			}
			stop()
		}()
	}
	<-ctx.Done()
	close(done)
	var failed error
	for _, m := range members {
		if err := m.node.Err(); err != nil {
			failed = errors.Join(failed, fmt.Errorf("member %d failed: %w", m.cfg.ID, err))
		}
	}
	err = closeAll()
	if failed != nil {
		return failed
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "stopped")
	return nil
}

// listenAll opens the listeners of one member, closing them all on error.
func listenAll(addrs ...string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// startDemo starts the no-flags cluster: 3 members in this process, raft
// over loopback TCP, data in a temporary directory removed on exit.
func startDemo(o *options, tlsCfg *tls.Config, logger *slog.Logger) ([]*member, func(), error) {
	dir, err := os.MkdirTemp("", "kvnode-*")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	secret := o.secretKey
	if tlsCfg == nil && secret == nil {
		// The demo's members live in one process: a fresh random key
		// keeps everyone else off their raft ports.
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	type lnset struct{ raft, redis, http net.Listener }
	var sets []lnset
	fail := func(err error) ([]*member, func(), error) {
		for _, s := range sets {
			s.raft.Close()
			s.redis.Close()
			s.http.Close()
		}
		cleanup()
		return nil, nil, err
	}
	var boot []consensus.Member
	for i := range demoMembers {
		addr := func(base int) string {
			if o.ports == 0 {
				return "127.0.0.1:0"
			}
			if o.ports > 0 { // raft, redis and http at ports+0.., +10.., +20..
				base = o.ports + map[int]int{demoRaftBase: 0, demoRedisBase: 10, demoHTTPBase: 20}[base]
			}
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i))
		}
		lns, err := listenAll(addr(demoRaftBase), addr(demoRedisBase), addr(demoHTTPBase))
		if err != nil {
			return fail(err)
		}
		sets = append(sets, lnset{lns[0], lns[1], lns[2]})
		boot = append(boot, consensus.Member{ID: uint64(i + 1), Addr: lns[0].Addr().String()})
	}
	var members []*member
	for i, s := range sets {
		m, err := startMember(memberConfig{
			ID: uint64(i + 1), Dir: fmt.Sprintf("%s/%d", dir, i+1), Bootstrap: boot,
			RaftLn: s.raft, RaftAddr: s.raft.Addr().String(), RedisLn: s.redis, HTTPLn: s.http,
			TLS: tlsCfg, TLSAnyMember: o.anyCert, Secret: secret, Limits: o.limits, Logger: logger, SnapshotEntries: o.snapN, Auth: o.auth,
			Clock: skewedClock(o.clockSkew),
		})
		if err != nil {
			for _, m := range members {
				m.Close()
			}
			sets = sets[i:]
			return fail(err)
		}
		members = append(members, m)
	}
	return members, cleanup, nil
}

// startOne starts the member of this process, and joins it to a running
// cluster with -join.
func startOne(ctx context.Context, o *options, tlsCfg *tls.Config, logger *slog.Logger) (*member, error) {
	var boot []consensus.Member
	raftAddr := o.raft
	if o.peers != "" {
		peers, err := parsePeers(o.peers)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(peers, func(m consensus.Member) bool { return m.ID == o.id })
		if i < 0 {
			return nil, fmt.Errorf("-peers does not list this member's id %d", o.id)
		}
		if raftAddr == "" {
			raftAddr = peers[i].Addr
		}
		boot = peers
	}
	if raftAddr == "" {
		return nil, errors.New("-raft is required with -join")
	}
	if err := os.MkdirAll(o.data, 0o755); err != nil {
		return nil, err
	}
	lns, err := listenAll(raftAddr, o.redis, o.http)
	if err != nil {
		return nil, err
	}
	m, err := startMember(memberConfig{
		ID: o.id, Dir: o.data, Bootstrap: boot,
		RaftLn: lns[0], RaftAddr: raftAddr, RedisLn: lns[1], HTTPLn: lns[2],
		TLS: tlsCfg, TLSAnyMember: o.anyCert, Secret: o.secretKey, Limits: o.limits, Logger: logger, SnapshotEntries: o.snapN, Auth: o.auth,
		Clock: skewedClock(o.clockSkew),
	})
	if err != nil {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	if o.join != "" && len(m.node.Members()) == 0 {
		if err := join(ctx, o.join, o.id, raftAddr, tlsCfg, m.trans); err != nil {
			m.Close()
			return nil, err
		}
	}
	return m, nil
}

// join asks a running member to add this one, retrying until ctx ends.
// It first learns the members' raft addresses from GET /status so this
// member can answer the leader before it has applied any membership.
func join(ctx context.Context, url string, id uint64, raftAddr string, tlsCfg *tls.Config, trans *tcp.Transport) error {
	body, _ := json.Marshal(joinRequest{ID: id, Raft: raftAddr})
	url, user, pass, hasAuth, err := splitUserinfo(url)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 45 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		if hasAuth { // the leader's address: the same cluster, the same credentials
			req.SetBasicAuth(user, pass)
		}
		return nil
	}}
	if tlsCfg != nil {
		client.Transport = &http.Transport{TLSClientConfig: tlsCfg}
	}
	var last error
	for attempt := 0; ; attempt++ {
		if err := learnPeers(ctx, client, url, trans, func(r *http.Request) {
			if hasAuth {
				r.SetBasicAuth(user, pass)
			}
		}); err != nil {
			var certErr *tls.CertificateVerificationError
			var alert tls.AlertError
			if errors.As(err, &certErr) || errors.As(err, &alert) {
				return fmt.Errorf("join via %s: %w", url, err) // retrying cannot help
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(url, "/")+"/members", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if hasAuth {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		var certErr *tls.CertificateVerificationError
		var alert tls.AlertError
		if errors.As(err, &certErr) || errors.As(err, &alert) {
			return fmt.Errorf("join via %s: %w", url, err) // retrying cannot help
		}
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("join via %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
			switch resp.StatusCode {
			case http.StatusBadRequest, http.StatusConflict, http.StatusUnauthorized, http.StatusForbidden:
				return err
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
		if attempt >= 60 {
			return last
		}
	}
}

// learnPeers tells trans the raft addresses of the members listed by
// url's GET /status.
func learnPeers(ctx context.Context, client *http.Client, url string, trans *tcp.Transport, auth func(*http.Request)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/status", nil)
	if err != nil {
		return err
	}
	auth(req)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var s statusJSON
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s); err != nil {
		return err
	}
	for _, m := range s.Members {
		if m.ID != 0 && m.Raft != "" {
			trans.AddPeer(m.ID, m.Raft)
		}
	}
	return nil
}

// skewClock is a physical clock shifted by a fixed offset: a member whose
// clock is wrong. Timers are unaffected.
type skewClock struct {
	clock.Clock
	skew time.Duration
}

func (c skewClock) Now() time.Time                  { return c.Clock.Now().Add(c.skew) }
func (c skewClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// skewedClock returns the system clock shifted by d.
func skewedClock(d time.Duration) clock.Clock {
	if d == 0 {
		return clock.Real
	}
	return skewClock{Clock: clock.Real, skew: d}
}

// splitUserinfo takes the credentials out of a -join URL
// (http://user:password@host:port), which are sent as HTTP Basic auth.
func splitUserinfo(raw string) (url string, user, pass string, ok bool, err error) {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "", "", "", false, fmt.Errorf("bad -join URL: %w", err)
	}
	if u.User == nil {
		return raw, "", "", false, nil
	}
	user = u.User.Username()
	pass, _ = u.User.Password()
	if user == "" {
		user = defaultUser
	}
	u.User = nil
	return u.String(), user, pass, true, nil
}
