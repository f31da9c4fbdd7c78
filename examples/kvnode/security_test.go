package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/redis/go-redis/v9"
)

// testCluster is a 3-member cluster in the test process.
type testCluster struct {
	t       *testing.T
	members []*member
	tls     *tls.Config // client side, when the cluster uses TLS
	audit   *auditBuffer
}

// auditBuffer collects the audit log.
type auditBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (a *auditBuffer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.b.Write(p)
}

func (a *auditBuffer) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.b.String()
}

func startTestCluster(t *testing.T, auth authConfig, serverTLS, clientTLS *tls.Config) *testCluster {
	t.Helper()
	o, err := parseFlags([]string{"-ports", "0", "-timeout", "3s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, tls: clientTLS, audit: &auditBuffer{}}
	auth.Audit = slog.New(slog.NewJSONHandler(c.audit, nil))
	auth.TLS = serverTLS != nil
	o.auth = auth
	// The demo's members share one certificate, which names no member;
	// these tests are about the client ports.
	o.anyCert = serverTLS != nil
	members, cleanup, err := startDemo(o, serverTLS, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.members = members
	t.Cleanup(func() {
		for _, m := range members {
			m.Close()
		}
		cleanup()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range members {
		if err := m.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *testCluster) client(i int, user, pass string) *redis.Client {
	cl := redis.NewClient(&redis.Options{
		Addr: c.members[i].cfg.RedisLn.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		Username: user, Password: pass, TLSConfig: c.tls,
	})
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// http sends a request to member i as user (none if user is "").
func (c *testCluster) http(i int, user, pass, method, path string, body []byte, hdr ...string) (int, string) {
	c.t.Helper()
	scheme := "http://"
	hc := &http.Client{Timeout: 30 * time.Second}
	if c.tls != nil {
		scheme = "https://"
		hc.Transport = &http.Transport{TLSClientConfig: c.tls}
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, scheme+c.members[i].cfg.HTTPLn.Addr().String()+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for j := 0; j+1 < len(hdr); j += 2 {
		req.Header.Set(hdr[j], hdr[j+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls f until it returns nil or 20 seconds pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling replicated state on other members
	}
}

// waitUser waits until member i has applied user name with password
// pass. It reads the state rather than trying to authenticate, so that
// waiting does not count as failed authentications.
func (c *testCluster) waitUser(i int, name, pass string) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("member %d knows %s", i+1, name), func() error {
		if u := c.members[i].user(name); u == nil || !u.checkPassword(pass) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

func wantErr(t *testing.T, what string, err error, prefix string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("%s: error %v; want %q...", what, err, prefix)
	}
}

// TestACL: users defined at run time through the replicated state are
// enforced by every member over RESP and HTTP: authentication, command
// categories, key patterns, and a changed password.
func TestACL(t *testing.T) {
	c := startTestCluster(t, authConfig{RequirePass: "adminpw"}, nil, nil)
	ctx := t.Context()

	anon := c.client(1, "", "")
	wantErr(t, "GET without AUTH", anon.Get(ctx, "k").Err(), "NOAUTH Authentication required.")
	wantErr(t, "AUTH with a wrong password", anon.Do(ctx, "AUTH", "nope").Err(), "WRONGPASS invalid username-password pair or user is disabled.")
	for _, path := range []string{"/kv/k", "/status"} {
		if code, _ := c.http(1, "", "", "GET", path, nil); code != http.StatusUnauthorized {
			t.Fatalf("HTTP GET %s without credentials = %d; want 401", path, code)
		}
	}
	if code, _ := c.http(1, "", "", "DELETE", "/members/3", nil); code != http.StatusUnauthorized {
		t.Fatalf("HTTP DELETE /members/3 without credentials = %d; want 401", code)
	}

	admin := c.client(0, "", "adminpw") // AUTH adminpw: the default user
	if u, err := admin.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || u != "default" {
		t.Fatalf("ACL WHOAMI = %q, %v", u, err)
	}
	for _, cmd := range [][]any{
		{"ACL", "SETUSER", "reader", "on", ">rpw", "~app:*", "+@read"},
		{"ACL", "SETUSER", "writer", "on", ">wpw", "allkeys", "+@read", "+@write"},
	} {
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	wantErr(t, "ACL SETUSER with a bad rule", admin.Do(ctx, "ACL", "SETUSER", "x", "+get").Err(), "ERR Error in ACL SETUSER modifier")
	wantErr(t, "ACL DELUSER default", admin.Do(ctx, "ACL", "DELUSER", "default").Err(), "ERR The 'default' user cannot be removed")
	list, err := admin.Do(ctx, "ACL", "LIST").StringSlice()
	if err != nil || len(list) != 3 || strings.Contains(strings.Join(list, " "), "rpw") ||
		!strings.Contains(list[1], "user reader on #"+hashPassword("rpw")+" ~app:* -@all +@read") {
		t.Fatalf("ACL LIST = %q, %v; want 3 users with hashed passwords", list, err)
	}
	if err := admin.Set(ctx, "app:x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, "other:y", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}

	// Every member enforces the users once the change is applied there.
	for i := range c.members {
		c.waitUser(i, "reader", "rpw")
		reader := c.client(i, "reader", "rpw")
		if v, err := reader.Get(ctx, "app:x").Result(); err != nil || v != "1" {
			t.Fatalf("member %d: reader GET app:x = %q, %v", i+1, v, err)
		}
		wantErr(t, "reader SET", reader.Set(ctx, "app:x", "2", 0).Err(), "NOPERM User reader has no permissions to run the 'set' command")
		wantErr(t, "reader GET other:y", reader.Get(ctx, "other:y").Err(), "NOPERM No permissions to access a key")
		wantErr(t, "reader MGET app:x other:y", reader.MGet(ctx, "app:x", "other:y").Err(), "NOPERM No permissions to access a key")
		wantErr(t, "reader ACL SETUSER", reader.Do(ctx, "ACL", "SETUSER", "reader", "+@all").Err(), "NOPERM")
		wantErr(t, "reader IDEMPOTENT SET", reader.Do(ctx, "IDEMPOTENT", "k1", "SET", "app:x", "3").Err(), "NOPERM")
		// Pipelined writes are batched; they are checked too.
		pipe := reader.Pipeline()
		pipe.Set(ctx, "app:x", "4", 0)
		pipe.Set(ctx, "app:z", "5", 0)
		cmds, _ := pipe.Exec(ctx)
		for _, cmd := range cmds {
			wantErr(t, "pipelined reader SET", cmd.Err(), "NOPERM")
		}

		// HTTP: the same users, with Basic auth.
		if code, body := c.http(i, "reader", "rpw", "GET", "/kv/app:x", nil); code != 200 || body != "1" {
			t.Fatalf("member %d: HTTP reader GET app:x = %d %s", i+1, code, body)
		}
		for _, req := range []struct{ user, pass, method, path string }{
			{"reader", "rpw", "PUT", "/kv/app:x"},
			{"reader", "rpw", "GET", "/kv/other:y"},
			{"writer", "wpw", "DELETE", "/members/3"},
			{"writer", "wpw", "POST", "/transfer-leader"},
			{"writer", "wpw", "POST", "/members"},
		} {
			if code, body := c.http(i, req.user, req.pass, req.method, req.path, []byte("v")); code != http.StatusForbidden {
				t.Fatalf("member %d: %s %s as %s = %d %s; want 403", i+1, req.method, req.path, req.user, code, body)
			}
		}
		if code, _ := c.http(i, "reader", "bad", "GET", "/kv/app:x", nil); code != http.StatusUnauthorized {
			t.Fatalf("member %d: HTTP with a wrong password = %d; want 401", i+1, code)
		}
	}
	if code, body := c.http(2, "writer", "wpw", "PUT", "/kv/other:y", []byte("3")); code != 200 {
		t.Fatalf("HTTP writer PUT = %d %s", code, body)
	}

	// A password changed through member 1 takes effect on every member.
	if err := admin.Do(ctx, "ACL", "SETUSER", "reader", "resetpass", ">rpw2").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range c.members {
		c.waitUser(i, "reader", "rpw2")
		cl := c.client(i, "", "")
		if err := cl.Do(ctx, "AUTH", "reader", "rpw2").Err(); err != nil {
			t.Fatalf("member %d: AUTH with the new password: %v", i+1, err)
		}
		wantErr(t, "AUTH with the old password", cl.Do(ctx, "AUTH", "reader", "rpw").Err(), "WRONGPASS")
		if code, _ := c.http(i, "reader", "rpw", "GET", "/kv/app:x", nil); code != http.StatusUnauthorized {
			t.Fatalf("member %d: HTTP with the old password = %d; want 401", i+1, code)
		}
		if code, _ := c.http(i, "reader", "rpw2", "GET", "/kv/app:x", nil); code != 200 {
			t.Fatalf("member %d: HTTP with the new password = %d; want 200", i+1, code)
		}
	}
	// Deleting a user locks it out.
	if n, err := admin.Do(ctx, "ACL", "DELUSER", "reader", "nobody").Int(); err != nil || n != 1 {
		t.Fatalf("ACL DELUSER = %d, %v", n, err)
	}
	wantErr(t, "AUTH as a deleted user", c.client(0, "", "").Do(ctx, "AUTH", "reader", "rpw2").Err(), "WRONGPASS")

	audit := c.audit.String()
	for _, want := range []string{`"event":"acl-setuser"`, `"target":"reader"`, `"event":"auth","user":"default","remote":"127.0.0.1:`, `"outcome":"denied"`, `"event":"acl-deluser"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s:\n%s", want, audit)
		}
	}
	if strings.Contains(audit, "rpw") || strings.Contains(audit, hashPassword("rpw")) {
		t.Errorf("audit log shows a password or its hash:\n%s", audit)
	}
}

// TestDefaultUserChangedAtRunTime: the first ACL SETUSER default starts
// from the implicit default user; after it the replicated rules apply.
func TestDefaultUserChangedAtRunTime(t *testing.T) {
	c := startTestCluster(t, authConfig{}, nil, nil)
	ctx := t.Context()
	cl := c.client(0, "", "")
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "AUTH with no password set", cl.Do(ctx, "AUTH", "x").Err(), "ERR AUTH <password> called without any password configured")
	if err := cl.Do(ctx, "ACL", "SETUSER", "default", ">pw").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range c.members {
		eventually(t, "default user needs a password", func() error {
			err := c.client(i, "", "").Get(ctx, "k").Err()
			if err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
				return fmt.Errorf("GET without AUTH: %v", err)
			}
			return nil
		})
		if v, err := c.client(i, "", "pw").Get(ctx, "k").Result(); err != nil || v != "v" {
			t.Fatalf("member %d: GET after AUTH = %q, %v (the default user keeps ~* +@all)", i+1, v, err)
		}
	}
}

// TestAuthRateLimited: failed authentications from one address are
// limited; the limit refills with time.
func TestAuthRateLimited(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := startTestCluster(t, authConfig{RequirePass: "pw", Now: clock}, nil, nil)
	ctx := t.Context()
	cl := c.client(0, "", "")
	for range authBurst {
		wantErr(t, "wrong password", cl.Do(ctx, "AUTH", "bad").Err(), "WRONGPASS")
	}
	wantErr(t, "after the burst", cl.Do(ctx, "AUTH", "pw").Err(), "ERR too many failed authentication attempts")
	if code, _ := c.http(0, "default", "pw", "GET", "/status", nil); code != http.StatusTooManyRequests {
		t.Fatalf("HTTP after the burst = %d; want 429", code)
	}
	mu.Lock()
	now = now.Add(authRefill)
	mu.Unlock()
	if err := cl.Do(ctx, "AUTH", "pw").Err(); err != nil {
		t.Fatalf("AUTH after a refill: %v", err)
	}
	if !strings.Contains(c.audit.String(), `"outcome":"rate-limited"`) {
		t.Fatalf("audit log lacks the rate-limited attempt:\n%s", c.audit)
	}
}

func TestProtectedModeDecision(t *testing.T) {
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5000}
	local := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5000}
	local6 := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 5000}
	unix := &net.UnixAddr{Name: "/tmp/s", Net: "unix"}
	for _, tc := range []struct {
		protected, tls, nopass bool
		remote                 net.Addr
		want                   bool
	}{
		{true, false, true, remote, true},
		{true, false, true, local, false},
		{true, false, true, local6, false},
		{true, false, true, unix, false},
		{true, false, true, nil, true},
		{true, false, true, httpAddr("192.0.2.7:80"), true},
		{true, false, true, httpAddr("[::1]:80"), false},
		{true, true, true, remote, false},   // TLS
		{true, false, false, remote, false}, // a password
		{false, false, true, remote, false}, // protected mode off
	} {
		if got := protectedRefuses(tc.protected, tc.tls, tc.nopass, tc.remote); got != tc.want {
			t.Errorf("protectedRefuses(%v, %v, %v, %v) = %v; want %v", tc.protected, tc.tls, tc.nopass, tc.remote, got, tc.want)
		}
	}
}

// TestProtectedMode: with protected mode on, no password and no TLS, a
// client from a non-loopback address is refused on both ports with a
// message that says how to fix it; loopback clients are served, and once
// the default user has a password, remote clients are admitted to AUTH.
func TestProtectedMode(t *testing.T) {
	c := startTestCluster(t, authConfig{Protected: true}, nil, nil)
	m := c.members[0]
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5000}
	rep := m.admit(remote)
	if !bytes.HasPrefix(rep, []byte("-DENIED")) || !bytes.Contains(rep, []byte("-requirepass")) || !bytes.Contains(rep, []byte("-protected-mode=false")) {
		t.Fatalf("admit(remote) = %q; want a DENIED error explaining the fixes", rep)
	}
	req := httptest.NewRequest("GET", "/kv/k", nil)
	req.RemoteAddr = "192.0.2.7:5000"
	w := httptest.NewRecorder()
	m.httpHandler().ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "protected mode") {
		t.Fatalf("HTTP from a remote address = %d %s; want 403 protected mode", w.Code, w.Body)
	}
	// Loopback clients, over the real listener, are served.
	if err := c.client(0, "", "").Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("loopback client: %v", err)
	}
	if err := c.client(0, "", "").Do(t.Context(), "ACL", "SETUSER", "default", ">pw").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "remote admitted once a password is set", func() error {
		if rep := m.admit(remote); rep != nil {
			return fmt.Errorf("%s", rep)
		}
		return nil
	})
	if !strings.Contains(c.audit.String(), `"outcome":"denied: protected mode"`) {
		t.Fatalf("audit log lacks the refused connection:\n%s", c.audit)
	}
}

// tlsPair loads a test CA's certificate for the client side.
func clientTLS(t *testing.T, dir, name string, ca *testCA) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestTLSClientPorts: with -tls-* the Redis port speaks TLS (go-redis
// with a TLS config works; plain text gets nowhere), HTTP is HTTPS, and a
// certificate of the CA alone does not make an admin.
func TestTLSClientPorts(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "cluster")
	flags := ca.issue(t, dir, "member")
	o := &options{tlsCA: flags[1], tlsCert: flags[3], tlsKey: flags[5]}
	srvTLS, err := loadTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	c := startTestCluster(t, authConfig{}, srvTLS, clientTLS(t, dir, "member", ca))
	ctx := t.Context()
	cl := c.client(1, "", "")
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	if v, err := cl.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET over TLS = %q, %v", v, err)
	}
	// Plain text on the Redis port: no reply that reads a key.
	conn, err := net.DialTimeout("tcp", c.members[0].cfg.RedisLn.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
	got, _ := io.ReadAll(conn)
	conn.Close()
	if bytes.Contains(got, []byte("$1\r\nv")) {
		t.Fatalf("plain-text client read a key over the TLS port: %q", got)
	}
	if code, body := c.http(0, "", "", "GET", "/kv/k", nil); code != 200 || body != "v" {
		t.Fatalf("HTTPS GET = %d %s", code, body)
	}
	// A certificate alone: no membership changes.
	if code, body := c.http(0, "", "", "DELETE", "/members/3", nil); code != http.StatusForbidden {
		t.Fatalf("DELETE /members/3 with a certificate and no user = %d %s; want 403", code, body)
	}
	if code, _ := c.http(0, "", "", "POST", "/transfer-leader", nil); code != http.StatusForbidden {
		t.Fatalf("POST /transfer-leader with a certificate and no user = %d; want 403", code)
	}
}

// TestIdempotentKeysFingerprintedAndScoped: a key reused with another
// command is refused and applies nothing; keys of different users never
// meet, so one user cannot pre-claim another's key.
func TestIdempotentKeysFingerprintedAndScoped(t *testing.T) {
	c := startTestCluster(t, authConfig{RequirePass: "adminpw"}, nil, nil)
	ctx := t.Context()
	admin := c.client(0, "", "adminpw")
	for _, u := range []string{"alice", "mallory"} {
		if err := admin.Do(ctx, "ACL", "SETUSER", u, "on", ">"+u+"pw", "allkeys", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.waitUser(0, "mallory", "mallorypw")
	mallory := c.client(0, "mallory", "mallorypw")
	// Mallory claims the key Alice will use (the README's pay-42).
	if n, err := mallory.Do(ctx, "IDEMPOTENT", "pay-42", "INCRBY", "mallory:acct", "1").Int64(); err != nil || n != 1 {
		t.Fatalf("mallory: %d, %v", n, err)
	}
	c.waitUser(1, "alice", "alicepw")
	alice := c.client(1, "alice", "alicepw")
	if n, err := alice.Do(ctx, "IDEMPOTENT", "pay-42", "INCRBY", "alice:acct", "42").Int64(); err != nil || n != 42 {
		t.Fatalf("alice's first payment: %d, %v; want 42 (her key is hers)", n, err)
	}
	if n, err := alice.Do(ctx, "IDEMPOTENT", "pay-42", "incrby", "alice:acct", "42").Int64(); err != nil || n != 42 {
		t.Fatalf("alice's retry: %d, %v; want the first reply", n, err)
	}
	wantErr(t, "key reused with another command", alice.Do(ctx, "IDEMPOTENT", "pay-42", "INCRBY", "alice:acct", "1000").Err(),
		"ERR idempotency key reused with a different command")
	if v, err := alice.Get(ctx, "alice:acct").Result(); err != nil || v != "42" {
		t.Fatalf("alice:acct = %q, %v; want 42 (nothing applied)", v, err)
	}
	// HTTP: the same rules, 422 for a reused key.
	put := func(user, pass, key, body string) (int, string) {
		return c.http(2, user, pass, "PUT", "/kv/h", []byte(body), idempotencyHeader, key)
	}
	c.waitUser(2, "alice", "alicepw")
	c.waitUser(2, "mallory", "mallorypw")
	if code, body := put("alice", "alicepw", "put-1", "first"); code != 200 {
		t.Fatalf("alice's PUT = %d %s", code, body)
	}
	if code, body := put("alice", "alicepw", "put-1", "second"); code != http.StatusUnprocessableEntity {
		t.Fatalf("PUT with a reused key and another body = %d %s; want 422", code, body)
	}
	if code, body := put("mallory", "mallorypw", "put-1", "mine"); code != 200 {
		t.Fatalf("mallory's PUT with alice's key = %d %s; want 200 (own key space)", code, body)
	}
	if code, body := c.http(2, "alice", "alicepw", "GET", "/kv/h", nil); code != 200 || body != "mine" {
		t.Fatalf("GET h = %d %s", code, body)
	}
}

// TestRemovedMemberAndMembershipCodes: a removed member answers at once
// with one clear error and says so in INFO and /status; membership
// requests get precise status codes.
func TestRemovedMemberAndMembershipCodes(t *testing.T) {
	c := startTestCluster(t, authConfig{}, nil, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		method, path string
		body         string
		want         int
	}{
		{"DELETE", "/members/99", "", http.StatusNotFound},
		{"POST", "/transfer-leader?to=99", "", http.StatusNotFound},
		{"POST", "/members", `{"id": 9, "raft": "not an address"}`, http.StatusBadRequest},
		{"POST", "/members", `{"id": 9, "raft": "127.0.0.1:0"}`, http.StatusBadRequest},
		{"POST", "/members", `{"id": 9, "raft": ":7000"}`, http.StatusBadRequest},
	} {
		if code, body := c.http(0, "", "", tc.method, tc.path, []byte(tc.body)); code != tc.want {
			t.Errorf("%s %s %s = %d %s; want %d", tc.method, tc.path, tc.body, code, body, tc.want)
		}
	}
	if vs, _ := c.members[0].node.Status(), 0; len(vs.Members) != 3 {
		t.Fatalf("members after refused requests: %v", vs.Members)
	}

	victim := c.members[2]
	if code, body := c.http(0, "", "", "DELETE", "/members/3", nil); code != 200 {
		t.Fatalf("DELETE /members/3 = %d %s", code, body)
	}
	eventually(t, "member 3 knows it was removed", func() error {
		if !victim.removed.Load() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	eventually(t, "member 1 applied the removal", func() error {
		if _, ok := c.members[0].memberOf(3); ok {
			return fmt.Errorf("member 1 still lists member 3")
		}
		return nil
	})
	cl := c.client(2, "", "")
	start := time.Now()
	wantErr(t, "GET on a removed member", cl.Get(ctx, "k").Err(), "ERR this member was removed from the cluster")
	wantErr(t, "SET on a removed member", cl.Set(ctx, "k", "v", 0).Err(), "ERR this member was removed from the cluster")
	if d := time.Since(start); d > victim.cfg.Limits.Timeout {
		t.Fatalf("removed member took %v to answer; want at once", d)
	}
	if info, err := cl.Info(ctx).Result(); err != nil || !strings.Contains(info, "role:removed") || !strings.Contains(info, "removed:1") {
		t.Fatalf("INFO on a removed member: %q, %v", info, err)
	}
	code, body := c.http(2, "", "", "GET", "/status", nil)
	var st statusJSON
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || !st.Removed || st.Role != "removed" {
		t.Fatalf("/status on a removed member = %d %s", code, body)
	}
	if code, body := c.http(2, "", "", "GET", "/kv/k", nil); code != http.StatusGone {
		t.Fatalf("HTTP GET on a removed member = %d %s; want 410", code, body)
	}
	if code, body := c.http(0, "", "", "POST", "/transfer-leader?to=3", nil); code != http.StatusNotFound {
		t.Fatalf("transfer to a removed member = %d %s; want 404", code, body)
	}
	// Down to one voter: removing it is a conflict, and there is nobody
	// to transfer leadership to.
	if code, body := c.http(0, "", "", "DELETE", "/members/2", nil); code != 200 {
		t.Fatalf("DELETE /members/2 = %d %s", code, body)
	}
	if code, body := c.http(0, "", "", "DELETE", "/members/1", nil); code != http.StatusConflict {
		t.Fatalf("removing the last voter = %d %s; want 409", code, body)
	}
	if code, body := c.http(0, "", "", "POST", "/transfer-leader", nil); code != http.StatusConflict {
		t.Fatalf("transfer with no other voter = %d %s; want 409", code, body)
	}
	if !strings.Contains(c.audit.String(), `"event":"member-remove"`) {
		t.Fatalf("audit log lacks the removal:\n%s", c.audit)
	}
}

func TestPickTransferTarget(t *testing.T) {
	p := map[uint64]consensus.PeerProgress{
		1: {Match: 100, Active: true},          // the leader itself
		2: {Match: 90, Lag: 10, Active: false}, // dead, though furthest along
		3: {Match: 80, Lag: 20, Active: true},  // live and caught up
		4: {Match: 95, Lag: 5, Active: true, Learner: true},
		5: {Match: 10, Lag: 10000, Active: true}, // far behind
	}
	if got := pickTransferTarget(1, p); got != 3 {
		t.Fatalf("pickTransferTarget = %d; want 3, the live caught-up voter", got)
	}
	delete(p, 3)
	if got := pickTransferTarget(1, p); got != 0 {
		t.Fatalf("pickTransferTarget with no live caught-up voter = %d; want 0", got)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, k string
		want bool
	}{
		{"*", "", true}, {"*", "anything", true}, {"app:*", "app:x", true}, {"app:*", "other:x", false},
		{"app:*", "app", false}, {"a?c", "abc", true}, {"a?c", "ac", false}, {"[ab]x", "bx", true},
		{"[^ab]x", "bx", false}, {"[a-c]*", "cat", true}, {"[a-c]*", "dog", false}, {`a\*`, "a*", true},
		{`a\*`, "ab", false}, {"*:*:*", "a:b:c", true}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa", false},
		{"a/*", "a/b/c", true}, {"[", "[", true}, {"", "", true}, {"", "x", false},
	} {
		if got := globMatch(tc.p, []byte(tc.k)); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v; want %v", tc.p, tc.k, got, tc.want)
		}
	}
}

// FuzzACLRules: no rule list panics, and what applies round-trips through
// the snapshot encoding.
func FuzzACLRules(f *testing.F) {
	f.Add("alice", "on >pw ~app:* +@read -@write allkeys resetkeys nopass resetpass #"+hashPassword("x"))
	f.Add("default", "reset on nopass allcommands")
	f.Add("x", "+get ~[a-")
	f.Fuzz(func(t *testing.T, name, rules string) {
		u, err := applyRules(name, nil, strings.Fields(rules))
		if err != nil {
			return
		}
		for _, k := range u.keys {
			globMatch(k, []byte(name))
		}
		s := newStore()
		s.acl[u.name] = u
		if err := newStore().Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
			t.Fatalf("user %+v does not round-trip: %v", u, err)
		}
	})
}

// TestCertificateUsers: with -tls-cert-users, a client certificate whose
// Common Name names a user authenticates as that user, on both ports;
// before an admin creates the user the certificate grants nothing.
func TestCertificateUsers(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "cluster")
	flags := ca.issue(t, dir, "member")
	srvTLS, err := loadTLS(&options{tlsCA: flags[1], tlsCert: flags[3], tlsKey: flags[5]})
	if err != nil {
		t.Fatal(err)
	}
	ca.issue(t, dir, "ops") // a client certificate with CN "ops"
	c := startTestCluster(t, authConfig{RequirePass: "pw", CertUsers: true}, srvTLS, clientTLS(t, dir, "ops", ca))
	ctx := t.Context()
	wantErr(t, "certificate of no user", c.client(0, "", "").Get(ctx, "k").Err(), "NOAUTH")
	if code, _ := c.http(0, "", "", "DELETE", "/members/99", nil); code != http.StatusUnauthorized {
		t.Fatalf("HTTP with the certificate of no user = %d; want 401", code)
	}
	if err := c.client(0, "", "pw").Do(ctx, "ACL", "SETUSER", "ops", "on", "allkeys", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range c.members {
		eventually(t, "ops known", func() error {
			if c.members[i].user("ops") == nil {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if who, err := c.client(i, "", "").Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "ops" {
			t.Fatalf("member %d: ACL WHOAMI with the ops certificate = %q, %v", i+1, who, err)
		}
		if code, body := c.http(i, "", "", "DELETE", "/members/99", nil); code != http.StatusNotFound {
			t.Fatalf("member %d: admin request with the ops certificate = %d %s; want 404 (authorized, no such member)", i+1, code, body)
		}
	}
}
