package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
)

// HTTP requests authenticate as the same users as RESP clients, with
// HTTP Basic authentication; a request without credentials is the
// default user, if that user needs no password. Each route needs a
// command category (read, write or admin, see httpHandler), and /kv
// routes also a key the user may touch.

type httpConnKey struct{}

// httpAddr is a remote address as net/http reports it.
type httpAddr string

func (a httpAddr) Network() string { return "tcp" }
func (a httpAddr) String() string  { return string(a) }

// httpConn returns a fresh connection state for r's authenticated user.
func httpConn(r *http.Request) *connState {
	if st, ok := r.Context().Value(httpConnKey{}).(*connState); ok {
		c := *st
		return &c
	}
	return &connState{user: "\x00"} // not through guard: no user
}

// guard wraps h with authentication and authorization for category cat
// (0: any authenticated user); keyed routes check the {key} path value.
func (m *member) guard(cat uint8, keyed bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote := httpAddr(r.RemoteAddr)
		if protectedRefuses(m.cfg.Auth.Protected, m.cfg.Auth.TLS, m.defaultNoPass(), remote) {
			m.auditEvent("connect", defaultUser, r.RemoteAddr, "http", "denied: protected mode")
			httpError(w, http.StatusForbidden, "%s", deniedText)
			return
		}
		st := &connState{remote: remote}
		var u *aclUser
		if name, pass, ok := r.BasicAuth(); ok {
			if name == "" {
				name = defaultUser
			}
			var rep []byte
			if u, rep = m.authenticate(name, pass, r.RemoteAddr, "http"); rep != nil {
				if bytes.HasPrefix(rep, []byte("-ERR too many")) {
					w.Header().Set("Retry-After", strconv.Itoa(int(authRefill.Seconds())))
					httpError(w, http.StatusTooManyRequests, "%s", bytes.TrimSpace(rep[5:]))
					return
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="kvnode", charset="UTF-8"`)
				httpError(w, http.StatusUnauthorized, "%s", bytes.TrimSpace(rep[1:]))
				return
			}
			st.user = name
		} else if cn := m.httpCertUser(r); cn != nil {
			u, st.user = cn, cn.name
		} else if u = m.connUser(st); u == nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="kvnode", charset="UTF-8"`)
			httpError(w, http.StatusUnauthorized, "Authentication required.")
			return
		}
		var keys [][]byte
		if keyed {
			keys = [][]byte{[]byte(r.PathValue("key"))}
		}
		if rep := permit(u, r.Method+" "+r.URL.Path, cat, keys); rep != nil {
			if cat == catAdmin {
				m.auditEvent("http", u.name, r.RemoteAddr, "http", "denied: no @admin", slog.String("request", r.Method+" "+r.URL.Path))
			}
			httpError(w, http.StatusForbidden, "%s", bytes.TrimSpace(rep[1:]))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), httpConnKey{}, st)))
	})
}

// auditHTTP writes the audit line of an admin request.
func (m *member) auditHTTP(r *http.Request, what string, err error, attrs ...slog.Attr) {
	st := httpConn(r)
	out := "ok"
	if err != nil {
		out = "error: " + err.Error()
	}
	m.auditEvent(what, m.connUserName(st), r.RemoteAddr, "http", out, attrs...)
}

var _ net.Addr = httpAddr("")

// httpCertUser is the user named by the client certificate's Common Name
// under -tls-cert-users, or nil.
func (m *member) httpCertUser(r *http.Request) *aclUser {
	if !m.cfg.Auth.CertUsers || r.TLS == nil {
		return nil
	}
	cn := peerCN(*r.TLS)
	if cn == "" {
		return nil
	}
	if u := m.user(cn); u != nil && u.on {
		return u
	}
	return nil
}
