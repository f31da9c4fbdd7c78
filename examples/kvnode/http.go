package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statusJSON is the body of GET /status.
type statusJSON struct {
	ID      uint64       `json:"id"`
	Role    string       `json:"role"`
	Leader  uint64       `json:"leader"`
	Term    uint64       `json:"term"`
	Commit  uint64       `json:"commit"`
	Applied uint64       `json:"applied"`
	Removed bool         `json:"removed,omitempty"` // this member was removed from the cluster
	Members []memberJSON `json:"members"`
}

type memberJSON struct {
	ID      uint64 `json:"id"`
	Raft    string `json:"raft"`
	Redis   string `json:"redis,omitempty"`
	HTTP    string `json:"http,omitempty"`
	Learner bool   `json:"learner,omitempty"`
}

// joinRequest is the body of POST /members.
type joinRequest struct {
	ID   uint64 `json:"id"`
	Raft string `json:"raft"`
}

const idempotencyHeader = "Idempotency-Key"

// maxJoinBody bounds the body of POST /members.
const maxJoinBody = 4096

func (m *member) httpHandler() http.Handler {
	mux := http.NewServeMux()
	// Every route names the category it needs (security.go): 0 is any
	// authenticated user; /kv routes also check the key.
	mux.Handle("GET /status", m.guard(0, false, m.handleStatus))
	mux.Handle("POST /members", m.guard(catAdmin, false, m.handleJoin))
	mux.Handle("DELETE /members/{id}", m.guard(catAdmin, false, m.handleRemove))
	mux.Handle("POST /transfer-leader", m.guard(catAdmin, false, m.handleTransfer))
	mux.Handle("GET /metrics", m.guard(0, false, promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP))
	mux.Handle("GET /kv/{key...}", m.guard(catRead, true, m.handleGet))
	mux.Handle("PUT /kv/{key...}", m.guard(catWrite, true, m.handlePut))
	mux.Handle("DELETE /kv/{key...}", m.guard(catWrite, true, m.handleDelete))
	if m.cfg.Limits.Pprof {
		mux.Handle("GET /debug/pprof/", m.guard(catAdmin, false, pprof.Index))
		mux.Handle("GET /debug/pprof/profile", m.guard(catAdmin, false, pprof.Profile))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (m *member) handleStatus(w http.ResponseWriter, r *http.Request) {
	s := m.node.Status()
	out := statusJSON{ID: s.ID, Role: s.Role.String(), Leader: s.Leader, Term: s.Term, Commit: s.Commit, Applied: s.Applied}
	if s.Removed || m.removed.Load() {
		out.Role, out.Removed = "removed", true
	}
	for _, mem := range s.Members {
		a, _ := m.store.addrs(mem.ID)
		out.Members = append(out.Members, memberJSON{ID: mem.ID, Raft: mem.Addr, Redis: a.Redis, HTTP: a.HTTP, Learner: mem.Learner})
	}
	writeJSON(w, http.StatusOK, out)
}

// toLeader redirects a membership request to the leader's HTTP address
// (307 keeps the method and body) and reports whether it did.
func (m *member) toLeader(w http.ResponseWriter, r *http.Request) bool {
	leader, ok := m.node.Leader()
	if !ok {
		httpError(w, http.StatusServiceUnavailable, "no leader; retry")
		return true
	}
	if leader == m.cfg.ID {
		return false
	}
	a, ok := m.store.addrs(leader)
	if !ok || a.HTTP == "" {
		httpError(w, http.StatusServiceUnavailable, "leader %d has not published its address yet; retry", leader)
		return true
	}
	scheme := "http://"
	if m.cfg.TLS != nil {
		scheme = "https://"
	}
	http.Redirect(w, r, scheme+a.HTTP+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	return true
}

func (m *member) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJoinBody)).Decode(&req); err != nil || req.ID == 0 || req.Raft == "" {
		httpError(w, http.StatusBadRequest, `want {"id": <non-zero>, "raft": "host:port"}`)
		return
	}
	if err := checkRaftAddr(req.Raft); err != nil {
		httpError(w, http.StatusBadRequest, "bad raft address %q: %v", req.Raft, err)
		return
	}
	if m.toLeader(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	wasMember := m.isMember(req.ID)
	err := m.node.AddVoter(ctx, req.ID, req.Raft)
	m.auditHTTP(r, "member-add", err, slog.Uint64("target", req.ID), slog.String("raft", req.Raft))
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, consensus.ErrUnknownMember) {
			code = http.StatusConflict
		}
		if !wasMember && m.isMember(req.ID) {
			// Added as a learner but never promoted (it did not catch up):
			// take it out again rather than keep a learner nobody runs.
			rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
			rerr := m.node.RemoveMember(rctx, req.ID)
			rcancel()
			m.auditHTTP(r, "member-remove", rerr, slog.Uint64("target", req.ID), slog.String("reason", "join failed"))
		}
		httpError(w, code, "add member %d: %v", req.ID, err)
		return
	}
	m.handleStatus(w, r)
}

func (m *member) handleRemove(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		httpError(w, http.StatusBadRequest, "bad member id %q", r.PathValue("id"))
		return
	}
	if m.toLeader(w, r) {
		return
	}
	if !m.isMember(id) {
		m.auditHTTP(r, "member-remove", errNotMember, slog.Uint64("target", id))
		httpError(w, http.StatusNotFound, "member %d is not a member of the cluster", id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	err = m.node.RemoveMember(ctx, id)
	m.auditHTTP(r, "member-remove", err, slog.Uint64("target", id))
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, consensus.ErrUnknownMember) { // the last voter
			code = http.StatusConflict
		}
		httpError(w, code, "remove member %d: %v", id, err)
		return
	}
	m.handleStatus(w, r)
}

// handleTransfer moves leadership to ?to=ID, or to the live voter whose
// log is furthest along.
func (m *member) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var to uint64
	if v := r.URL.Query().Get("to"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil || id == 0 {
			httpError(w, http.StatusBadRequest, "bad member id %q", v)
			return
		}
		to = id
		mem, ok := m.memberOf(to)
		switch {
		case !ok:
			m.auditHTTP(r, "leader-transfer", errNotMember, slog.Uint64("target", to))
			httpError(w, http.StatusNotFound, "member %d is not a member of the cluster", to)
			return
		case mem.Learner:
			m.auditHTTP(r, "leader-transfer", errNotMember, slog.Uint64("target", to))
			httpError(w, http.StatusBadRequest, "member %d is a learner; only a voter can lead", to)
			return
		}
	} else {
		if m.toLeader(w, r) {
			return
		}
		to = m.transferTarget()
		if to == 0 {
			m.auditHTTP(r, "leader-transfer", errNoTarget)
			httpError(w, http.StatusConflict, "no other voter is live and caught up; name one with ?to=ID")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := m.node.TransferLeadership(ctx, to)
	m.auditHTTP(r, "leader-transfer", err, slog.Uint64("target", to))
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "transfer to %d: %v", to, err)
		return
	}
	m.handleStatus(w, r)
}

// transferLag is how far behind the leader's log a voter may be and still
// be picked to lead by POST /transfer-leader without ?to.
const transferLag = 100

var (
	errNotMember = errors.New("kvnode: not a member")
	errNoTarget  = errors.New("kvnode: no live caught-up voter")
)

// transferTarget picks the other voter that the leader heard from
// recently and whose log is furthest along (within transferLag), or 0.
func (m *member) transferTarget() uint64 {
	return pickTransferTarget(m.cfg.ID, m.node.Status().Progress)
}

func pickTransferTarget(self uint64, progress map[uint64]consensus.PeerProgress) uint64 {
	var to, best uint64
	for id, p := range progress {
		if id == self || p.Learner || !p.Active || p.Lag > transferLag {
			continue
		}
		if to == 0 || p.Match > best || (p.Match == best && id < to) {
			to, best = id, p.Match
		}
	}
	return to
}

func (m *member) memberOf(id uint64) (consensus.Member, bool) {
	for _, mem := range m.node.Members() {
		if mem.ID == id {
			return mem, true
		}
	}
	return consensus.Member{}, false
}

func (m *member) isMember(id uint64) bool {
	_, ok := m.memberOf(id)
	return ok
}

// checkRaftAddr checks a joining member's raft address: host:port with a
// host and a port from 1 to 65535.
func checkRaftAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || strings.ContainsAny(host, " /\\") {
		return errors.New("missing or malformed host")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return errors.New("port must be 1 to 65535")
	}
	return nil
}

// respToHTTP turns a state machine reply into an HTTP answer.
func respToHTTP(w http.ResponseWriter, reply []byte) {
	switch {
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")), bytes.HasPrefix(reply, []byte("-UNCERTAIN")):
		httpError(w, http.StatusServiceUnavailable, "%s", bytes.TrimSpace(reply[1:]))
	case bytes.Equal(reply, removedReply):
		httpError(w, http.StatusGone, "%s", bytes.TrimSpace(reply[1:]))
	case bytes.Equal(reply, errKeyReused):
		httpError(w, http.StatusUnprocessableEntity, "%s", bytes.TrimSpace(reply[1:]))
	case bytes.HasPrefix(reply, []byte("-NOPERM")):
		httpError(w, http.StatusForbidden, "%s", bytes.TrimSpace(reply[1:]))
	case bytes.HasPrefix(reply, []byte("-")):
		httpError(w, http.StatusBadRequest, "%s", bytes.TrimSpace(reply[1:]))
	case bytes.Equal(reply, replyNil):
		httpError(w, http.StatusNotFound, "no such key")
	case bytes.HasPrefix(reply, []byte("$")):
		_, body, _ := bytes.Cut(reply, []byte("\r\n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body[:len(body)-2])
	default:
		w.Header().Set("Content-Type", "text/plain")
		w.Write(bytes.TrimLeft(bytes.TrimSpace(reply), "+:"))
		w.Write([]byte("\n"))
	}
}

func (m *member) handleGet(w http.ResponseWriter, r *http.Request) {
	st := httpConn(r)
	st.stale = r.URL.Query().Get("stale") == "1"
	respToHTTP(w, m.execute(st, "get", [][]byte{[]byte("get"), []byte(r.PathValue("key"))}, ""))
}

func (m *member) handlePut(w http.ResponseWriter, r *http.Request) {
	// MaxBytesReader also closes the connection after the answer, so
	// the rest of an oversized body is never read.
	val, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(m.cfg.Limits.MaxValue)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpError(w, http.StatusRequestEntityTooLarge, "value exceeds the limit of %d bytes", m.cfg.Limits.MaxValue)
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	m.httpWrite(w, r, [][]byte{[]byte("set"), []byte(r.PathValue("key")), val})
}

func (m *member) handleDelete(w http.ResponseWriter, r *http.Request) {
	m.httpWrite(w, r, [][]byte{[]byte("del"), []byte(r.PathValue("key"))})
}

func (m *member) httpWrite(w http.ResponseWriter, r *http.Request, args [][]byte) {
	key := r.Header.Get(idempotencyHeader)
	if len(key) > maxRequestIDLen {
		httpError(w, http.StatusBadRequest, "%s longer than %d bytes", idempotencyHeader, maxRequestIDLen)
		return
	}
	if m.removed.Load() {
		respToHTTP(w, removedReply)
		return
	}
	cmd, errRep := m.buildWrite(string(args[0]), args)
	if errRep != nil {
		respToHTTP(w, errRep)
		return
	}
	if key != "" {
		respToHTTP(w, m.idempotentWrite(m.connUserName(httpConn(r)), args, cmd, key))
		return
	}
	respToHTTP(w, m.write(cmd, ""))
}
