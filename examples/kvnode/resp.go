package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/distkit/distkit/consensus"
)

// connState is the per-connection mode.
type connState struct {
	stale  bool     // READONLY: reads are served from this member's state
	fresh  bool     // a read barrier was passed while serving the current pipeline
	user   string   // user authenticated with AUTH; "" = default, if it needs no password (security.go)
	remote net.Addr // the client's address, for protected mode, limits and audit
	conn   net.Conn // the connection, for its TLS client certificate (-tls-cert-users)
	multi  bool     // MULTI was refused: commands up to EXEC or DISCARD are refused too
}

// maxRequestIDLen bounds an idempotency key.
const maxRequestIDLen = 1000

// newConnState is the state of a new RESP connection, or the reply that
// refuses it (protected mode).
func (m *member) newConnState(nc net.Conn) (*connState, []byte) {
	if rep := m.admit(nc.RemoteAddr()); rep != nil {
		return nil, rep
	}
	return &connState{stale: m.cfg.Limits.StaleReads, remote: nc.RemoteAddr(), conn: nc}, nil
}

// serveRESP answers a batch of commands that arrived together on one
// connection, in order; the server writes the replies together.
// Linearizable reads in one batch share a read barrier: every command of
// the batch was sent before the barrier started, so state at least as
// new as the barrier is a valid answer for each of them.
func (m *member) serveRESP(c *respConn, cmds [][][]byte) {
	st := c.state
	st.fresh = false
	defer func() { st.fresh = false }()
	// Consecutive plain writes of the pipeline are replicated as one
	// command (one raft entry), applied in order.
	var batch [][]byte
	batchBytes := 0
	flush := func() {
		switch len(batch) {
		case 0:
			return
		case 1:
			c.reply(m.write(batch[0], ""))
		default:
			e := newCommand(opBatch, m.nowMs()).uvarint(uint64(len(batch)))
			for _, b := range batch {
				e.bytes(b)
			}
			reply, err := m.propose(e.b, "")
			if err != nil {
				// The batch as a whole failed: every write gets the error.
				reply = bytes.Repeat(proposeError(err), len(batch))
			}
			c.reply(reply)
		}
		batch, batchBytes = batch[:0], 0
	}
	defer flush()
	for _, args := range cmds {
		if c.broken() {
			return // the client is gone: the rest of its commands are not run
		}
		name := strings.ToLower(string(args[0]))
		m.metrics.commands.WithLabelValues(metricName(name)).Inc()
		if reply, ok := transaction(st, name); ok {
			flush()
			m.metrics.errors.WithLabelValues(metricName(name), "ERR").Inc()
			c.reply(reply)
			continue
		}
		// A write batched with others gets a short reply; SET ... GET
		// answers with a whole value, so it is replicated on its own.
		if isWrite(name) && len(cmds) > 1 && !setWithGet(name, args) {
			enc, errRep := m.buildWrite(name, args)
			if rep, done := m.precheck(st, name, args); done {
				enc, errRep = nil, rep
			}
			if errRep == nil {
				if batchBytes+len(enc) > m.cfg.Limits.MaxRequest {
					flush()
				}
				batch = append(batch, enc)
				batchBytes += len(enc)
				continue
			}
			flush()
			m.metrics.errors.WithLabelValues(metricName(name), "ERR").Inc()
			c.reply(errRep)
			continue
		}
		flush()
		reply := m.execute(st, name, args, "")
		if bytes.HasPrefix(reply, []byte("-")) {
			kind, _, _ := bytes.Cut(reply[1:], []byte(" "))
			m.metrics.errors.WithLabelValues(metricName(name), string(kind)).Inc()
		}
		c.reply(reply)
		if name == "quit" {
			c.closeAfterReply()
			return
		}
	}
}

// transaction answers MULTI, EXEC and DISCARD, and every command between
// MULTI and EXEC or DISCARD, without executing anything: kvnode has no
// transactions, and a client that queued writes after a refused MULTI
// must not find them applied (it would apply them again on retry).
// ok is false for the commands it leaves to execute.
func transaction(st *connState, name string) (reply []byte, ok bool) {
	switch name {
	case "multi":
		if st.multi {
			return errReply("ERR MULTI calls can not be nested"), true
		}
		st.multi = true
		return errReply("ERR MULTI is not supported by kvnode; commands up to EXEC or DISCARD will be refused"), true
	case "exec":
		if !st.multi {
			return errReply("ERR EXEC without MULTI"), true
		}
		st.multi = false
		return errReply("EXECABORT Transaction discarded because of previous errors."), true
	case "discard":
		if !st.multi {
			return errReply("ERR DISCARD without MULTI"), true
		}
		st.multi = false
		return replyOK, true
	case "quit":
		return nil, false
	}
	if st.multi {
		return errReply("ERR command refused after MULTI (transactions are not supported by kvnode); nothing was executed"), true
	}
	return nil, false
}

// setWithGet reports whether args is SET with the GET option.
func setWithGet(name string, args [][]byte) bool {
	if name != "set" {
		return false
	}
	for _, a := range args[min(3, len(args)):] {
		if strings.EqualFold(string(a), "get") {
			return true
		}
	}
	return false
}

// metricName keeps metric label values bounded: unknown command names
// are counted together.
func metricName(name string) string {
	switch name {
	case "ping", "echo", "get", "set", "del", "exists", "incr", "incrby", "decr", "decrby",
		"append", "mget", "mset", "info", "idempotent", "auth", "acl", "readonly", "readwrite", "quit", "ttl", "pttl":
		return name
	}
	return "other"
}

func errReply(format string, args ...any) []byte {
	return []byte("-" + fmt.Sprintf(format, args...) + "\r\n")
}

func wrongArgs(name string) []byte {
	return errReply("ERR wrong number of arguments for '%s' command", name)
}

// execute runs one command and returns its RESP reply. reqID, when set,
// makes a write idempotent (see IDEMPOTENT).
func (m *member) execute(st *connState, name string, args [][]byte, reqID string) []byte {
	if rep, done := m.precheck(st, name, args); done {
		return rep
	}
	switch name {
	case "ping":
		switch len(args) {
		case 1:
			return []byte("+PONG\r\n")
		case 2:
			return appendBulk(nil, args[1])
		}
		return wrongArgs(name)
	case "echo":
		if len(args) != 2 {
			return wrongArgs(name)
		}
		return appendBulk(nil, args[1])
	case "quit":
		return replyOK
	case "readonly":
		st.stale = true
		return replyOK
	case "readwrite":
		st.stale = false
		return replyOK
	case "info":
		return appendBulk(nil, m.info())
	case "get":
		if len(args) != 2 {
			return wrongArgs(name)
		}
		// Values are never modified once stored: the reply is built
		// after the lock is released, so a large value does not hold up
		// the state machine.
		var val []byte
		if rep := m.read(st, func(s *store) []byte {
			it, ok := s.get(string(args[1]))
			if !ok {
				return replyNil
			}
			val = it.val
			return nil
		}); rep != nil {
			return rep
		}
		return appendBulk(nil, val)
	case "mget":
		if len(args) < 2 {
			return wrongArgs(name)
		}
		vals := make([][]byte, len(args)-1) // nil: no such key
		if rep := m.read(st, func(s *store) []byte {
			if mgetReplySize(s, args[1:]) > m.maxReply() {
				return respErrReplyTooLarge
			}
			for i, k := range args[1:] {
				if it, ok := s.get(string(k)); ok {
					vals[i] = it.val
					if vals[i] == nil {
						vals[i] = []byte{}
					}
				}
			}
			return nil
		}); rep != nil {
			return rep
		}
		b := []byte("*" + strconv.Itoa(len(vals)) + "\r\n")
		for _, v := range vals {
			if v != nil {
				b = appendBulk(b, v)
			} else {
				b = append(b, replyNil...)
			}
		}
		return b
	case "ttl", "pttl":
		if len(args) != 2 {
			return wrongArgs(name)
		}
		// Time left against the replicated clock, which trails the
		// members' clocks by up to about a second.
		return m.read(st, func(s *store) []byte {
			it, ok := s.get(string(args[1]))
			switch {
			case !ok:
				return appendInt(nil, -2)
			case it.expireAt == 0:
				return appendInt(nil, -1)
			case name == "ttl":
				return appendInt(nil, (it.expireAt-s.now+500)/1000)
			}
			return appendInt(nil, it.expireAt-s.now)
		})
	case "exists":
		if len(args) < 2 {
			return wrongArgs(name)
		}
		return m.read(st, func(s *store) []byte {
			var n int64
			for _, k := range args[1:] {
				if _, ok := s.get(string(k)); ok {
					n++
				}
			}
			return appendInt(nil, n)
		})
	case "idempotent":
		if reqID != "" {
			return errReply("ERR IDEMPOTENT cannot be nested")
		}
		if len(args) < 3 {
			return wrongArgs(name)
		}
		if len(args[1]) == 0 || len(args[1]) > maxRequestIDLen {
			return errReply("ERR idempotency key must be 1 to %d bytes", maxRequestIDLen)
		}
		inner := strings.ToLower(string(args[2]))
		if !isWrite(inner) {
			return errReply("ERR IDEMPOTENT applies to writes (SET, DEL, INCR, INCRBY, DECR, DECRBY, APPEND, MSET), not '%s'", inner)
		}
		return m.execute(st, inner, args[2:], string(args[1]))
	}
	if isWrite(name) {
		cmd, errRep := m.buildWrite(name, args)
		if errRep != nil {
			return errRep
		}
		if reqID != "" {
			return m.idempotentWrite(m.connUserName(st), args, cmd, reqID)
		}
		return m.write(cmd, "")
	}
	switch name {
	case "hello", "client", "config", "select", "command", "cluster", "monitor", "subscribe", "psubscribe", "multi", "exec", "watch":
		return errReply("ERR unknown command '%s' (not supported by kvnode)", name)
	}
	return errReply("ERR unknown command '%s'", truncate(name, 64))
}

// maxReply is the largest RESP reply this member builds.
func (m *member) maxReply() int { return m.respConfig().MaxReply }

// mgetReplySize is the size of MGET's reply for keys, found before
// building it.
func mgetReplySize(s *store, keys [][]byte) int {
	n := 16
	for _, k := range keys {
		n += 5 // "$-1\r\n"
		if it, ok := s.get(string(k)); ok {
			n += len(it.val) + 16
		}
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func isWrite(name string) bool {
	switch name {
	case "set", "del", "incr", "incrby", "decr", "decrby", "append", "mset":
		return true
	}
	return false
}

// buildWrite validates a write and encodes it as a replicated command.
// Relative expiry times become absolute ones here, on the proposer.
func (m *member) buildWrite(name string, args [][]byte) ([]byte, []byte) {
	now := m.nowMs()
	maxValue := m.cfg.Limits.MaxValue
	tooBig := errReply("ERR value exceeds the limit of %d bytes", maxValue)
	switch name {
	case "set":
		if len(args) < 3 {
			return nil, wrongArgs(name)
		}
		if len(args[2]) > maxValue {
			return nil, tooBig
		}
		var flags uint64
		var exp int64
		for i := 3; i < len(args); i++ {
			opt := strings.ToUpper(string(args[i]))
			switch opt {
			case "NX":
				flags |= setNX
			case "XX":
				flags |= setXX
			case "GET":
				flags |= setGet
			case "KEEPTTL":
				flags |= setKeepTTL
			case "EX", "PX", "EXAT", "PXAT":
				if exp != 0 || i+1 >= len(args) {
					return nil, errReply("ERR syntax error")
				}
				i++
				n, err := strconv.ParseInt(string(args[i]), 10, 64)
				if err != nil || n <= 0 || n > 1<<50 {
					return nil, errReply("ERR invalid expire time in 'set' command")
				}
				switch opt {
				case "EX": // relative: made absolute at the command's timestamp
					exp, flags = n*1000, flags|setRelative
				case "PX":
					exp, flags = n, flags|setRelative
				case "EXAT":
					exp = n * 1000
				case "PXAT":
					exp = n
				}
			default:
				return nil, errReply("ERR syntax error")
			}
		}
		if flags&setNX != 0 && flags&setXX != 0 || exp != 0 && flags&setKeepTTL != 0 {
			return nil, errReply("ERR syntax error")
		}
		return newCommand(opSet, now).bytes(args[1]).bytes(args[2]).uvarint(flags).varint(exp).b, nil
	case "del":
		if len(args) < 2 {
			return nil, wrongArgs(name)
		}
		if len(args)-1 > maxKeys {
			return nil, errReply("ERR too many keys")
		}
		e := newCommand(opDel, now).uvarint(uint64(len(args) - 1))
		for _, k := range args[1:] {
			e.bytes(k)
		}
		return e.b, nil
	case "incr", "decr":
		if len(args) != 2 {
			return nil, wrongArgs(name)
		}
		d := int64(1)
		if name == "decr" {
			d = -1
		}
		return newCommand(opIncrBy, now).bytes(args[1]).varint(d).b, nil
	case "incrby", "decrby":
		if len(args) != 3 {
			return nil, wrongArgs(name)
		}
		d, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil || (name == "decrby" && d == -1<<63) {
			return nil, errNotInteger
		}
		if name == "decrby" {
			d = -d
		}
		return newCommand(opIncrBy, now).bytes(args[1]).varint(d).b, nil
	case "append":
		if len(args) != 3 {
			return nil, wrongArgs(name)
		}
		if len(args[2]) > maxValue {
			return nil, tooBig
		}
		return newCommand(opAppend, now).bytes(args[1]).bytes(args[2]).uvarint(uint64(maxValue)).b, nil
	case "mset":
		if len(args) < 3 || len(args)%2 != 1 {
			return nil, wrongArgs(name)
		}
		if (len(args)-1)/2 > maxKeys {
			return nil, errReply("ERR too many keys")
		}
		e := newCommand(opMSet, now).uvarint(uint64((len(args) - 1) / 2))
		for i := 1; i < len(args); i += 2 {
			if len(args[i+1]) > maxValue {
				return nil, tooBig
			}
			e.bytes(args[i]).bytes(args[i+1])
		}
		return e.b, nil
	}
	return nil, errReply("ERR unknown command '%s'", name)
}

// write replicates cmd and returns the state machine's reply. Proposals
// that will never apply (no leader yet, leadership moving, overload)
// are retried until the request timeout; a proposal whose outcome is
// unknown is not, unless it carries an idempotency key.
func (m *member) write(cmd []byte, reqID string) []byte {
	res, err := m.propose(cmd, reqID)
	if err != nil {
		return proposeError(err)
	}
	return res
}

// propose replicates cmd and returns the state machine's reply, or the
// error that kept the proposal from completing.
func (m *member) propose(cmd []byte, reqID string) ([]byte, error) {
	start := time.Now()
	defer func() { m.metrics.latency.WithLabelValues("write").Observe(time.Since(start).Seconds()) }()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Limits.Timeout)
	defer cancel()
	var opts []consensus.ProposeOption
	if reqID != "" {
		opts = append(opts, consensus.WithRequestID("kv:"+reqID))
	}
	backoff := 5 * time.Millisecond
	for {
		res, err := m.node.Propose(ctx, cmd, opts...)
		if err == nil {
			return res, nil
		}
		retry := errors.Is(err, consensus.ErrDropped) || errors.Is(err, consensus.ErrBusy) ||
			(reqID != "" && errors.Is(err, consensus.ErrUnknownOutcome))
		if !retry || errors.Is(err, consensus.ErrStopped) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func proposeError(err error) []byte {
	switch {
	case errors.Is(err, consensus.ErrUnknownOutcome):
		return errReply("UNCERTAIN the write may or may not have been applied; retry it as IDEMPOTENT <key> ... to apply it once")
	case errors.Is(err, consensus.ErrStopped):
		return errReply("ERR member is shutting down; the write was not acknowledged")
	case errors.Is(err, consensus.ErrTooLarge):
		return errReply("ERR command too large")
	case errors.Is(err, consensus.ErrRemoved):
		return errReply("ERR this member was removed from the cluster")
	case errors.Is(err, consensus.ErrDropped), errors.Is(err, consensus.ErrBusy):
		return errReply("TRYAGAIN the write was not applied (no leader or overloaded within the timeout); retry")
	}
	// Anything else: do not claim the write was not applied.
	return errReply("UNCERTAIN %s; the write may or may not have been applied", strings.ReplaceAll(err.Error(), "\r\n", " "))
}

// read runs f on the state after a linearizable read barrier (ReadIndex,
// batched across concurrent readers), or at once in stale mode.
func (m *member) read(st *connState, f func(*store) []byte) []byte {
	if !st.stale && !st.fresh {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Limits.Timeout)
		err := m.node.ReadBarrier(ctx)
		cancel()
		m.metrics.latency.WithLabelValues("read").Observe(time.Since(start).Seconds())
		if err != nil {
			if errors.Is(err, consensus.ErrStopped) {
				return errReply("ERR member is shutting down")
			}
			return errReply("TRYAGAIN no linearizable read point within the timeout (no leader?); retry, or READONLY for stale reads")
		}
		st.fresh = true
	}
	m.store.mu.RLock()
	defer m.store.mu.RUnlock()
	return f(m.store)
}

// info is the INFO text.
func (m *member) info() []byte {
	s := m.node.Status()
	role := "follower"
	switch s.Role {
	case consensus.RoleLeader:
		role = "leader"
	case consensus.RoleCandidate, consensus.RolePreCandidate:
		role = "candidate"
	}
	if s.Removed || m.removed.Load() {
		role = "removed"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Replication\r\nrole:%s\r\nid:%d\r\nleader_id:%d\r\n", role, s.ID, s.Leader)
	if role == "removed" {
		b.WriteString("removed:1\r\nremoved_note:this member was removed from the cluster and serves no commands; connect to a current member\r\n")
	}
	if a, ok := m.store.addrs(s.Leader); ok && s.Leader != 0 {
		fmt.Fprintf(&b, "leader_redis:%s\r\nleader_http:%s\r\n", a.Redis, a.HTTP)
	}
	fmt.Fprintf(&b, "term:%d\r\ncommit_index:%d\r\napplied_index:%d\r\nmembers:%d\r\n", s.Term, s.Commit, s.Applied, len(s.Members))
	m.store.mu.RLock()
	keys := len(m.store.data)
	m.store.mu.RUnlock()
	st := s.Stats
	var avgSync time.Duration
	if st.Syncs > 0 {
		avgSync = st.SyncTotal / time.Duration(st.Syncs)
	}
	fmt.Fprintf(&b, "\r\n# Raft\r\nproposals:%d\r\nproposal_batches:%d\r\napplied:%d\r\nsyncs:%d\r\nsynced_entries:%d\r\nsync_avg_us:%d\r\nsync_max_us:%d\r\nreads:%d\r\nread_rounds:%d\r\nleader_changes:%d\r\nsnapshots_taken:%d\r\n",
		st.Proposals, st.ProposalBatches, st.Applied, st.Syncs, st.SyncedEntries, avgSync.Microseconds(), st.SyncMax.Microseconds(),
		st.Reads, st.ReadRounds, st.LeaderChanges, st.SnapshotsTaken)
	fmt.Fprintf(&b, "\r\n# Keyspace\r\nkeys:%d\r\n", keys)
	return []byte(b.String())
}
