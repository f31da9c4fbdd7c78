package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

// NodeConfig configures one apkv node.
type NodeConfig struct {
	Name     string            // this node's name on the ring
	Listener net.Listener      // where the node serves HTTP
	Peers    map[string]string // every node's name to its address (host:port), this one included
	N        int               // replication factor (default quorum.DefaultN)
	// Partitions of the ring (default quorum.DefaultPartitions); every node
	// must use the same.
	Partitions int

	HintInterval        time.Duration // see quorum.Config (default quorum.DefaultHintInterval)
	AntiEntropyInterval time.Duration // zero: only on POST /admin/sync
	Timeout             time.Duration // per request (default quorum.DefaultTimeout)
	Clock               clock.Clock   // default clock.Real
	Logger              *slog.Logger  // nil: silent
}

// Node is one apkv node: a local replica, a coordinator for client requests
// and an HTTP server for clients and peers.
type Node struct {
	name   string
	local  *quorum.MemReplica[string]
	ring   *quorum.Ring
	coord  *quorum.Coordinator[string]
	peers  map[string]*peer
	srv    *http.Server
	ln     net.Listener
	served chan error
	client *http.Client

	mu      sync.Mutex
	blocked map[string]bool // peers this node cannot talk to (a simulated partition)
}

// StartNode starts serving on cfg.Listener. Close stops it.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.Name == "" || cfg.Listener == nil || cfg.Peers[cfg.Name] == "" {
		return nil, errors.New("apkv: node needs a name, a listener and itself among the peers")
	}
	ring := quorum.NewRing(quorum.WithPartitions(cfg.Partitions))
	n := &Node{
		name:    cfg.Name,
		ring:    ring,
		local:   quorum.NewMemReplica[string](cfg.Name, ring),
		peers:   map[string]*peer{},
		ln:      cfg.Listener,
		blocked: map[string]bool{},
		served:  make(chan error, 1),
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	n.client = client
	for name, addr := range cfg.Peers {
		ring.Add(name)
		if name != cfg.Name {
			n.peers[name] = &peer{from: n, name: name, base: "http://" + addr, client: client}
		}
	}
	coord, err := quorum.NewCoordinator(quorum.Config[string]{
		Ring:                ring,
		Replica:             n.replica,
		N:                   cfg.N,
		Timeout:             cfg.Timeout,
		HintInterval:        cfg.HintInterval,
		AntiEntropyInterval: cfg.AntiEntropyInterval,
		Clock:               cfg.Clock,
		Logger:              cfg.Logger,
		Repair:              quorum.RepairAsync,
	})
	if err != nil {
		return nil, err
	}
	n.coord = coord
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{key}", n.handleGet)
	mux.HandleFunc("PUT /kv/{key}", n.handlePut)
	mux.HandleFunc("DELETE /kv/{key}", n.handleDelete)
	mux.HandleFunc("GET /replica/object", n.internal(n.handleReplicaGet))
	mux.HandleFunc("POST /replica/object", n.internal(n.handleReplicaPut))
	mux.HandleFunc("POST /replica/update", n.internal(n.handleReplicaUpdate))
	mux.HandleFunc("GET /replica/digests", n.internal(n.handleDigests))
	mux.HandleFunc("GET /replica/hashes", n.internal(n.handleHashes))
	mux.HandleFunc("POST /admin/block", n.handleBlock)
	mux.HandleFunc("POST /admin/heal", n.handleHeal)
	mux.HandleFunc("POST /admin/sync", n.handleSync)
	mux.HandleFunc("GET /admin/stats", n.handleStats)
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { n.served <- n.srv.Serve(n.ln) }()
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Addr returns the address the node serves on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Close stops the server and the coordinator and waits for both.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.srv.Shutdown(ctx)
	if serr := <-n.served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	n.coord.Close()
	n.client.CloseIdleConnections()
	return err
}

// Block makes the named peers unreachable from this node, in both
// directions, until Heal.
func (n *Node) Block(peers ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range peers {
		if p != n.name {
			n.blocked[p] = true
		}
	}
}

// Heal makes every peer reachable again.
func (n *Node) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.blocked)
}

func (n *Node) isBlocked(p string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.blocked[p]
}

// Sync delivers this node's hints and runs one anti-entropy pass.
func (n *Node) Sync(ctx context.Context) (hints int, ae quorum.AntiEntropyResult, err error) {
	hints = n.coord.DeliverHints(ctx)
	ae, err = n.coord.AntiEntropy(ctx)
	return hints, ae, err
}

func (n *Node) replica(name string) (quorum.Replica[string], error) {
	if name == n.name {
		return n.local, nil
	}
	p, ok := n.peers[name]
	if !ok {
		return nil, fmt.Errorf("apkv: unknown node %q", name)
	}
	return p, nil
}

// getResponse is the JSON body of GET /kv/{key}.
type getResponse struct {
	Key      string   `json:"key"`
	Values   []string `json:"values"`   // all siblings, in dot order
	Siblings int      `json:"siblings"` // live siblings
	Deleted  bool     `json:"deleted"`  // the key's latest versions are deletes
}

func level(r *http.Request) (quorum.Level, error) {
	return quorum.ParseLevel(r.URL.Query().Get("level"))
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	l, err := level(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	key := r.PathValue("key")
	opts := []quorum.Option{quorum.WithLevel(l)}
	if r.URL.Query().Get("repair") == "sync" {
		opts = append(opts, quorum.WithRepair(quorum.RepairSync))
	}
	v, err := n.coord.Get(r.Context(), key, opts...)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	hdr, err := encodeContext(v.Context)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set(ContextHeader, hdr)
	status := http.StatusOK
	if !v.Found() {
		status = http.StatusNotFound
	}
	writeJSON(w, status, getResponse{Key: key, Values: nonNil(v.Values), Siblings: len(v.Values), Deleted: v.Object.Deleted()})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request)    { n.write(w, r, false) }
func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request) { n.write(w, r, true) }

func (n *Node) write(w http.ResponseWriter, r *http.Request, del bool) {
	l, err := level(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	causal, err := decodeContext(r.Header.Get(ContextHeader))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	key := r.PathValue("key")
	var out clock.Vector
	if del {
		out, err = n.coord.Delete(r.Context(), key, causal, quorum.WithLevel(l))
	} else {
		body, rerr := readBody(r.Body)
		if rerr != nil {
			writeError(w, http.StatusRequestEntityTooLarge, rerr)
			return
		}
		out, err = n.coord.Put(r.Context(), key, string(body), causal, quorum.WithLevel(l))
	}
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	hdr, err := encodeContext(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set(ContextHeader, hdr)
	w.WriteHeader(http.StatusNoContent)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, quorum.ErrNeed):
		return http.StatusBadRequest
	case errors.Is(err, quorum.ErrNoQuorum), errors.Is(err, quorum.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// internal wraps the replica endpoints: peers this node is partitioned from
// are refused.
func (n *Node) internal(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.isBlocked(r.Header.Get(fromHeader)) {
			writeError(w, http.StatusServiceUnavailable, errors.New("apkv: partitioned"))
			return
		}
		h(w, r)
	}
}

func (n *Node) handleReplicaGet(w http.ResponseWriter, r *http.Request) {
	o, err := n.local.Get(r.Context(), r.URL.Query().Get("key"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (n *Node) handleReplicaPut(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	o, err := decodeObject(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err := n.local.Put(r.Context(), r.URL.Query().Get("key"), o); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleReplicaUpdate(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r.Body)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	wr, err := decodeWrite(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	o, err := n.local.Update(r.Context(), r.URL.Query().Get("key"), wr)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (n *Node) handleDigests(w http.ResponseWriter, r *http.Request) {
	d, err := n.local.Digests(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (n *Node) handleHashes(w http.ResponseWriter, r *http.Request) {
	p, err := strconv.Atoi(r.URL.Query().Get("p"))
	if err != nil || p < 0 || p >= n.ring.Partitions() {
		writeError(w, http.StatusBadRequest, fmt.Errorf("apkv: bad partition %q", r.URL.Query().Get("p")))
		return
	}
	h, err := n.local.Hashes(r.Context(), p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (n *Node) handleBlock(w http.ResponseWriter, r *http.Request) {
	var peers []string
	for p := range strings.SplitSeq(r.URL.Query().Get("peers"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	n.Block(peers...)
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleHeal(w http.ResponseWriter, r *http.Request) {
	n.Heal()
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleSync(w http.ResponseWriter, r *http.Request) {
	hints, ae, err := n.Sync(r.Context())
	res := map[string]any{"hintsDelivered": hints, "antiEntropy": ae}
	if err != nil {
		res["error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, res)
}

func (n *Node) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.coord.Stats())
}

// peer is a remote node's replica, reached over HTTP.
type peer struct {
	from   *Node
	name   string
	base   string
	client *http.Client
}

var (
	_ quorum.Replica[string] = (*peer)(nil)
	_ quorum.Syncer          = (*peer)(nil)
)

func (p *peer) do(ctx context.Context, method, path string, body any, decode func([]byte) error) error {
	if p.from.isBlocked(p.name) {
		return fmt.Errorf("apkv: %s unreachable from %s (partitioned)", p.name, p.from.name)
	}
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set(fromHeader, p.from.name)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := readBody(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("apkv: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if decode != nil {
		return decode(b)
	}
	return nil
}

func keyQuery(key string) string { return "?key=" + url.QueryEscape(key) }

func (p *peer) Get(ctx context.Context, key string) (quorum.Object[string], error) {
	var o quorum.Object[string]
	err := p.do(ctx, http.MethodGet, "/replica/object"+keyQuery(key), nil, func(b []byte) (err error) {
		o, err = decodeObject(b)
		return err
	})
	return o, err
}

func (p *peer) Put(ctx context.Context, key string, o quorum.Object[string]) error {
	return p.do(ctx, http.MethodPost, "/replica/object"+keyQuery(key), o, nil)
}

func (p *peer) Update(ctx context.Context, key string, w quorum.Write[string]) (quorum.Object[string], error) {
	var o quorum.Object[string]
	err := p.do(ctx, http.MethodPost, "/replica/update"+keyQuery(key), w, func(b []byte) (err error) {
		o, err = decodeObject(b)
		return err
	})
	return o, err
}

func (p *peer) Digests(ctx context.Context) (map[int]uint64, error) {
	var d map[int]uint64
	err := p.do(ctx, http.MethodGet, "/replica/digests", nil, func(b []byte) error { return json.Unmarshal(b, &d) })
	return d, err
}

func (p *peer) Hashes(ctx context.Context, part int) (map[string]uint64, error) {
	var h map[string]uint64
	err := p.do(ctx, http.MethodGet, "/replica/hashes?p="+strconv.Itoa(part), nil, func(b []byte) error { return json.Unmarshal(b, &h) })
	return h, err
}
