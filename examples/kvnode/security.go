package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/consensus"
)

// authConfig is a member's local security settings (flags).
type authConfig struct {
	// RequirePass, if set, is the implicit default user's password (as
	// Redis's requirepass).
	RequirePass string
	// TLS is on for the client ports: the implicit default user without a
	// password then lacks @admin.
	TLS bool
	// Protected refuses non-loopback clients while the default user needs
	// no password and TLS is off (protected mode).
	Protected bool
	// CertUsers: with TLS, a client whose certificate's Common Name names
	// an existing user that is on is authenticated as that user without
	// a password (-tls-cert-users). The mapping is explicit twice over:
	// the flag, and the user an admin created.
	CertUsers bool
	// Audit receives one line per security-relevant event; nil discards.
	Audit *slog.Logger
	// Now is the time source of the failed-authentication limiter
	// (time.Now when nil).
	Now func() time.Time
}

// Failed authentications are limited per remote IP by a token bucket:
// authBurst failures at once, then one per authRefill.
const (
	authBurst      = 10
	authRefill     = time.Second
	authLimitedIPs = 4096 // buckets kept; full buckets are dropped first
)

// authLimiter is a token bucket per remote IP, consumed by failed
// authentications.
type authLimiter struct {
	now func() time.Time
	mu  sync.Mutex
	ips map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newAuthLimiter(now func() time.Time) *authLimiter {
	if now == nil {
		now = time.Now
	}
	return &authLimiter{now: now, ips: make(map[string]*bucket)}
}

// refill brings b up to date. l.mu is held.
func (l *authLimiter) refill(b *bucket, now time.Time) {
	b.tokens = min(authBurst, b.tokens+float64(now.Sub(b.last))/float64(authRefill))
	b.last = now
}

// allow reports whether ip may try to authenticate now.
func (l *authLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.ips[ip]
	if b == nil {
		return true
	}
	l.refill(b, l.now())
	return b.tokens >= 1
}

// fail records a failed authentication from ip.
func (l *authLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.ips[ip]
	if b == nil {
		if len(l.ips) >= authLimitedIPs {
			for k, x := range l.ips {
				if l.refill(x, now); x.tokens >= authBurst {
					delete(l.ips, k)
				}
			}
			for k := range l.ips { // still full: forget one
				if len(l.ips) < authLimitedIPs {
					break
				}
				delete(l.ips, k)
			}
		}
		b = &bucket{tokens: authBurst, last: now}
		l.ips[ip] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// remoteIP is the IP of addr ("host:port"), or addr itself.
func remoteIP(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// isLoopback reports whether the remote address addr is on the loopback
// interface (or a Unix socket).
func isLoopback(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	if addr.Network() == "unix" {
		return true
	}
	ip := net.ParseIP(remoteIP(addr.String()))
	return ip != nil && ip.IsLoopback()
}

// protectedRefuses is the protected-mode decision: a client from a
// non-loopback address is refused while protected mode is on, TLS is off
// and the default user needs no password.
func protectedRefuses(protected, tls, defaultNoPass bool, remote net.Addr) bool {
	return protected && !tls && defaultNoPass && !isLoopback(remote)
}

// deniedText explains protected mode and how to leave it.
const deniedText = "DENIED kvnode is running in protected mode: the default user has no password and TLS is off, " +
	"so only clients on the loopback interface are accepted. To accept remote clients, either " +
	"1) start every member with -requirepass <password>, or give the default user a password from a loopback client " +
	"(ACL SETUSER default >password), and authenticate with AUTH; " +
	"2) use TLS (-tls-ca, -tls-cert, -tls-key); or " +
	"3) if every client that can reach this address is trusted, start with -protected-mode=false."

// implicitDefault is the default user while the replicated ACL does not
// define it.
func (a *authConfig) implicitDefault() *aclUser {
	u := &aclUser{name: defaultUser, on: true, cats: catAll, keys: []string{"*"}}
	switch {
	case a.RequirePass != "":
		u.passwords = []string{hashPassword(a.RequirePass)}
	case a.TLS:
		u.nopass = true
		u.cats &^= catAdmin // a certificate alone does not make an admin
	default:
		u.nopass = true
	}
	return u
}

// implicitDefaultRules are the rules that rebuild implicitDefault, used
// as the starting point of the first ACL SETUSER default.
func (a *authConfig) implicitDefaultRules() []string {
	r := []string{"on", "~*", "+@all"}
	switch {
	case a.RequirePass != "":
		r = append(r, "#"+hashPassword(a.RequirePass))
	case a.TLS:
		r = append(r, "nopass", "-@admin")
	default:
		r = append(r, "nopass")
	}
	return r
}

// user returns the user called name, or nil.
func (m *member) user(name string) *aclUser {
	m.store.mu.RLock()
	u := m.store.acl[name]
	m.store.mu.RUnlock()
	if u == nil && name == defaultUser {
		return m.implicit
	}
	return u
}

// users returns every user, the implicit default included, by name.
func (m *member) users() []*aclUser {
	m.store.mu.RLock()
	all := maps.Clone(m.store.acl)
	m.store.mu.RUnlock()
	if all[defaultUser] == nil {
		all[defaultUser] = m.implicit
	}
	var out []*aclUser
	for _, name := range slices.Sorted(maps.Keys(all)) {
		out = append(out, all[name])
	}
	return out
}

// defaultNoPass reports whether the default user lets anyone in.
func (m *member) defaultNoPass() bool {
	u := m.user(defaultUser)
	return u != nil && u.on && u.nopass
}

// authenticate checks a user name and password from remote, applying the
// per-IP limit on failures, and returns the user or the RESP error reply.
func (m *member) authenticate(name, password, remote, via string) (*aclUser, []byte) {
	ip := remoteIP(remote)
	if !m.limiter.allow(ip) {
		m.auditEvent("auth", name, remote, via, "rate-limited")
		return nil, errReply("ERR too many failed authentication attempts from %s; wait and retry", ip)
	}
	u := m.user(name)
	if u == nil || !u.checkPassword(password) {
		m.limiter.fail(ip)
		m.auditEvent("auth", name, remote, via, "denied")
		return nil, []byte("-WRONGPASS invalid username-password pair or user is disabled.\r\n")
	}
	if via != "http" { // HTTP authenticates every request: log failures only
		m.auditEvent("auth", name, remote, via, "ok")
	}
	return u, nil
}

// auditEvent writes one audit line: who did what, from where, and how it
// ended.
func (m *member) auditEvent(what, who, from, via, outcome string, extra ...slog.Attr) {
	attrs := append([]slog.Attr{
		slog.String("event", what), slog.String("user", who), slog.String("remote", from),
		slog.String("via", via), slog.String("outcome", outcome), slog.Uint64("member", m.cfg.ID),
	}, extra...)
	m.audit.LogAttrs(context.Background(), slog.LevelInfo, "audit", attrs...)
}

// commandCategory is the category a command needs (0: any authenticated
// user may run it).
func commandCategory(name string, args [][]byte) uint8 {
	switch name {
	case "get", "mget", "exists", "ttl", "pttl":
		return catRead
	case "acl":
		if len(args) > 1 {
			switch strings.ToLower(string(args[1])) {
			case "whoami", "cat", "help":
				return 0
			}
		}
		return catAdmin
	}
	if isWrite(name) {
		return catWrite
	}
	return 0
}

// commandKeys returns the keys a command touches.
func commandKeys(name string, args [][]byte) [][]byte {
	switch name {
	case "get", "set", "incr", "decr", "incrby", "decrby", "append", "ttl", "pttl":
		if len(args) > 1 {
			return args[1:2]
		}
	case "del", "mget", "exists":
		return args[1:]
	case "mset":
		var ks [][]byte
		for i := 1; i < len(args); i += 2 {
			ks = append(ks, args[i])
		}
		return ks
	}
	return nil
}

// permit checks that u may run a command of category cat on keys, and
// returns the NOPERM reply if not.
func permit(u *aclUser, name string, cat uint8, keys [][]byte) []byte {
	if cat != 0 && u.cats&cat == 0 {
		return errReply("NOPERM User %s has no permissions to run the '%s' command", u.name, truncate(name, 64))
	}
	for _, k := range keys {
		if !u.canKey(k) {
			return errReply("NOPERM No permissions to access a key")
		}
	}
	return nil
}

var errNoAuth = []byte("-NOAUTH Authentication required.\r\n")

// connUser returns the connection's user: the one it authenticated as,
// or the default user if that needs no password; nil if none.
func (m *member) connUser(st *connState) *aclUser {
	if st.user == "" && m.cfg.Auth.CertUsers {
		if cn := certName(st.conn); cn != "" {
			if u := m.user(cn); u != nil && u.on {
				st.user = cn
				m.auditEvent("auth", cn, st.remoteString(), "resp-certificate", "ok")
			}
		}
	}
	name := st.user
	if name == "" {
		name = defaultUser
	}
	u := m.user(name)
	if u == nil || !u.on || (st.user == "" && !u.nopass) {
		return nil
	}
	return u
}

// removedReply answers every command on a member removed from the
// cluster.
var removedReply = []byte("-ERR this member was removed from the cluster; connect to a current member\r\n")

// precheck runs before every command (execute): it refuses commands on a
// removed member, unauthenticated clients and commands the user may not
// run, and answers AUTH and ACL. It returns the reply and true if it
// answered the command.
func (m *member) precheck(st *connState, name string, args [][]byte) ([]byte, bool) {
	if m.removed.Load() && name != "info" && name != "quit" {
		return removedReply, true
	}
	switch name {
	case "auth":
		return m.cmdAuth(st, args), true
	case "quit", "hello":
		return nil, false
	}
	u := m.connUser(st)
	if u == nil {
		return errNoAuth, true
	}
	if rep := permit(u, name, commandCategory(name, args), commandKeys(name, args)); rep != nil {
		return rep, true
	}
	if name == "acl" {
		return m.cmdACL(st, u, args), true
	}
	return nil, false
}

// remoteString is st's remote address for logs.
func (st *connState) remoteString() string {
	if st.remote == nil {
		return "unknown"
	}
	return st.remote.String()
}

func (m *member) cmdAuth(st *connState, args [][]byte) []byte {
	var name, pass string
	switch len(args) {
	case 2:
		name, pass = defaultUser, string(args[1])
		if m.defaultNoPass() {
			return errReply("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		}
	case 3:
		name, pass = string(args[1]), string(args[2])
	default:
		return wrongArgs("auth")
	}
	if _, rep := m.authenticate(name, pass, st.remoteString(), "resp"); rep != nil {
		return rep
	}
	st.user = name
	return replyOK
}

func (m *member) cmdACL(st *connState, u *aclUser, args [][]byte) []byte {
	if len(args) < 2 {
		return wrongArgs("acl")
	}
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "whoami":
		return appendBulk(nil, []byte(u.name))
	case "cat":
		b := []byte("*" + strconv.Itoa(len(categoryNames)) + "\r\n")
		for _, c := range categoryNames {
			b = appendBulk(b, []byte(c.name))
		}
		return b
	case "users", "list":
		all := m.users()
		b := []byte("*" + strconv.Itoa(len(all)) + "\r\n")
		for _, x := range all {
			if sub == "users" {
				b = appendBulk(b, []byte(x.name))
			} else {
				b = appendBulk(b, []byte(x.describe()))
			}
		}
		return b
	case "setuser":
		if len(args) < 3 {
			return wrongArgs("acl|setuser")
		}
		name := string(args[2])
		rules := make([]string, 0, len(args)-3)
		for _, r := range args[3:] {
			rules = append(rules, string(r))
		}
		return m.setUser(u.name, st.remoteString(), "resp", name, rules)
	case "deluser":
		if len(args) < 3 {
			return wrongArgs("acl|deluser")
		}
		names := make([]string, 0, len(args)-2)
		for _, n := range args[2:] {
			names = append(names, string(n))
		}
		res := m.writeACL(aclDelUserCmd(m.nowMs(), names))
		m.auditEvent("acl-deluser", u.name, st.remoteString(), "resp", outcome(res), slog.Any("target", names))
		return res
	case "help":
		return appendBulk(nil, []byte("ACL WHOAMI | CAT | USERS | LIST | SETUSER <user> [rule ...] | DELUSER <user> [user ...]; "+
			"rules: on off nopass resetpass >password <password #sha256 !sha256 ~pattern allkeys resetkeys +@read +@write +@admin +@all -@... allcommands nocommands reset"))
	}
	return errReply("ERR unknown subcommand '%s'. Try ACL HELP.", truncate(sub, 64))
}

// setUser validates and replicates ACL SETUSER name rules.
func (m *member) setUser(who, from, via, name string, rules []string) []byte {
	hashed := hashRules(rules)
	var base []string
	if name == defaultUser {
		base = m.cfg.Auth.implicitDefaultRules()
	}
	// Check the rules here, against this member's view, so that a typo is
	// answered at once; Apply checks them again against the state.
	start := m.user(name)
	if _, err := applyRules(name, start, hashed); err != nil {
		m.auditEvent("acl-setuser", who, from, via, "invalid", slog.String("target", name))
		return errReply("ERR Error in ACL SETUSER modifier: %s", strings.TrimPrefix(err.Error(), errACL.Error()+": "))
	}
	res := m.writeACL(aclSetUserCmd(m.nowMs(), name, hashed, base))
	m.auditEvent("acl-setuser", who, from, via, outcome(res), slog.String("target", name), slog.Any("rules", redactRules(hashed)))
	return res
}

// redactRules hides password hashes (unsalted, so guessable for weak
// passwords) from the audit log.
func redactRules(rules []string) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		if strings.HasPrefix(r, "#") || strings.HasPrefix(r, "!") {
			r = r[:1] + "<password>"
		}
		out[i] = r
	}
	return out
}

// writeACL replicates an ACL change. It is not retried after an unknown
// outcome: ACL changes are not idempotent in general.
func (m *member) writeACL(cmd []byte) []byte { return m.write(cmd, "") }

func outcome(reply []byte) string {
	if len(reply) > 0 && reply[0] == '-' {
		s, _, _ := strings.Cut(string(reply[1:]), "\r\n")
		return "error: " + s
	}
	return "ok"
}

// connUserName is the name idempotency keys of st are scoped to.
func (m *member) connUserName(st *connState) string {
	if st.user == "" {
		return defaultUser
	}
	return st.user
}

// admit decides whether a new client connection from remote is served,
// returning the reply to send before closing it if not (protected mode).
func (m *member) admit(remote net.Addr) []byte {
	if protectedRefuses(m.cfg.Auth.Protected, m.cfg.Auth.TLS, m.defaultNoPass(), remote) {
		m.auditEvent("connect", defaultUser, addrString(remote), "resp", "denied: protected mode")
		return []byte("-" + deniedText + "\r\n")
	}
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}

// onEvent watches membership changes for this member's removal.
func (m *member) onEvent(ev consensus.Event) {
	if ev.Kind != consensus.EventMembershipChanged {
		return
	}
	m.noteMembership(ev.Members, false)
}

// noteMembership records this member's removal: removed is the node's
// own flag, members a membership it applied (a member that was in the
// cluster and is no longer listed was removed).
func (m *member) noteMembership(members []consensus.Member, removed bool) {
	if slices.ContainsFunc(members, func(x consensus.Member) bool { return x.ID == m.cfg.ID }) {
		m.wasMember.Store(true)
	} else if m.wasMember.Load() && len(members) > 0 {
		removed = true
	}
	if removed && !m.removed.Swap(true) {
		m.auditEvent("removed", "", "", "raft", "this member was removed from the cluster")
	}
}

// openAudit opens the audit log named by -audit-log.
func openAudit(dest string, stderr io.Writer) (*slog.Logger, func(), error) {
	switch dest {
	case "off", "":
		return slog.New(slog.DiscardHandler), func() {}, nil
	case "-":
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() {}, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }, nil
}

// certName returns the Common Name of the client certificate of c (a
// TLS connection, possibly wrapped), or "".
func certName(c net.Conn) string {
	for c != nil {
		switch x := c.(type) {
		case *tls.Conn:
			return peerCN(x.ConnectionState())
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return ""
		}
	}
	return ""
}

func peerCN(cs tls.ConnectionState) string {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}
