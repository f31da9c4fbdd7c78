package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
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
	mux.HandleFunc("GET /status", m.handleStatus)
	mux.HandleFunc("POST /members", m.handleJoin)
	mux.HandleFunc("DELETE /members/{id}", m.handleRemove)
	mux.HandleFunc("POST /transfer-leader", m.handleTransfer)
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /kv/{key...}", m.handleGet)
	mux.HandleFunc("PUT /kv/{key...}", m.handlePut)
	mux.HandleFunc("DELETE /kv/{key...}", m.handleDelete)
	if m.cfg.Limits.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
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
	if s.Removed {
		out.Role = "removed"
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
	if m.toLeader(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := m.node.AddVoter(ctx, req.ID, req.Raft); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, consensus.ErrUnknownMember) {
			code = http.StatusConflict
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
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := m.node.RemoveMember(ctx, id); err != nil {
		httpError(w, http.StatusServiceUnavailable, "remove member %d: %v", id, err)
		return
	}
	m.handleStatus(w, r)
}

// handleTransfer moves leadership to ?to=ID, or to the most caught-up
// other voter.
func (m *member) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var to uint64
	if v := r.URL.Query().Get("to"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil || id == 0 {
			httpError(w, http.StatusBadRequest, "bad member id %q", v)
			return
		}
		to = id
	} else {
		if m.toLeader(w, r) {
			return
		}
		s := m.node.Status()
		var best uint64
		for id, p := range s.Progress {
			if id != m.cfg.ID && !p.Learner && p.Match >= best {
				to, best = id, p.Match
			}
		}
		if to == 0 {
			httpError(w, http.StatusConflict, "no other voter to transfer to")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := m.node.TransferLeadership(ctx, to); err != nil {
		httpError(w, http.StatusServiceUnavailable, "transfer to %d: %v", to, err)
		return
	}
	m.handleStatus(w, r)
}

// respToHTTP turns a state machine reply into an HTTP answer.
func respToHTTP(w http.ResponseWriter, reply []byte) {
	switch {
	case bytes.HasPrefix(reply, []byte("-TRYAGAIN")), bytes.HasPrefix(reply, []byte("-UNCERTAIN")):
		httpError(w, http.StatusServiceUnavailable, "%s", bytes.TrimSpace(reply[1:]))
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
	st := &connState{stale: r.URL.Query().Get("stale") == "1"}
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
	cmd, errRep := m.buildWrite(string(args[0]), args)
	if errRep != nil {
		respToHTTP(w, errRep)
		return
	}
	respToHTTP(w, m.write(cmd, key))
}
