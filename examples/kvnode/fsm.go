package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/consensus"
)

// The replicated state is a map of keys to values with optional expiry
// times, plus the replicated clock and the members' client addresses.
//
// Time is replicated, never read in Apply: the node runs with
// consensus.Config.Timestamps, so the leader stamps every command with its
// hybrid logical clock, and the state's clock is the timestamp of the last
// command applied (it never goes backwards, and a member whose clock is off
// by more than the group's maximum offset cannot move it; see the consensus
// package's "Time"). SET EX/PX carries the relative time to live, made
// absolute against the command's timestamp; EXAT/PXAT carry absolute
// times. A key is expired when its expiry time is at or before the
// replicated clock, so every member agrees on which keys exist at every log
// index. While keys with an expiry exist, the leader proposes a clock tick
// every second so that expiry also happens without other writes.
//
// A command without a timestamp (written before timestamps existed) falls
// back to the proposer's time it carries: the clock becomes the largest
// such time seen.

// Command opcodes. A command is: op (1 byte), the proposer's time (8 bytes,
// big endian, Unix milliseconds; used only by unstamped commands) and then op-specific fields, each a uvarint length
// followed by that many bytes, or a varint for numbers.
const (
	opSet    byte = 1  // key, value, flags (uvarint), expireAt (varint, 0 = none; a TTL in ms with setRelative)
	opDel    byte = 2  // n (uvarint), keys
	opIncrBy byte = 3  // key, delta (varint)
	opAppend byte = 4  // key, value, [largest resulting value (uvarint)]
	opMSet   byte = 5  // n (uvarint), key/value pairs
	opTick   byte = 6  // nothing: advances the clock
	opMeta   byte = 7  // member id (uvarint), redis address, http address
	opBatch  byte = 8  // n (uvarint), n commands (each length-prefixed, not batches): a pipeline's writes
	opACL    byte = 9  // ACL change: see applyACL in acl.go
	opIdem   byte = 10 // fingerprint, command: an IDEMPOTENT write; see idem.go
)

// SET flags.
const (
	setNX       = 1 << iota // only if the key does not exist
	setXX                   // only if the key exists
	setKeepTTL              // keep the existing expiry
	setGet                  // reply with the old value
	setRelative             // expireAt is a time to live in ms from the command's time
)

// Limits on decoded input.
const (
	maxKeys       = 1 << 16 // keys in one DEL or MSET
	maxSnapString = 64 << 20
)

var errMalformed = errors.New("kvnode: malformed command")

// item is one value. Items are never modified in place, so a snapshot may
// share them with the live map.
type item struct {
	val      []byte // never modified once stored: readers use it after unlocking
	expireAt int64  // Unix ms; 0 = never
}

// memberAddrs are a member's client-facing addresses, replicated so any
// member can name (and proxy to) the leader.
type memberAddrs struct {
	Redis string `json:"redis"`
	HTTP  string `json:"http"`
}

// store is the replicated state machine. Apply runs on the node's apply
// goroutine; reads take the read lock.
type store struct {
	mu       sync.RWMutex
	data     map[string]item
	now      int64 // replicated clock, Unix ms
	expiring int   // keys with an expiry time (may count expired keys not yet removed)
	meta     map[uint64]memberAddrs
	acl      map[string]*aclUser // users defined by ACL SETUSER (acl.go)
}

func newStore() *store {
	return &store{data: make(map[string]item), meta: make(map[uint64]memberAddrs), acl: make(map[string]*aclUser)}
}

// RESP replies are the results of commands, so a retried idempotent
// command returns byte-for-byte the first reply.
var (
	replyOK         = []byte("+OK\r\n")
	replyNil        = []byte("$-1\r\n")
	errNotInteger   = []byte("-ERR value is not an integer or out of range\r\n")
	errIncrOverflow = []byte("-ERR increment or decrement would overflow\r\n")
	errValueTooBig  = []byte("-ERR string exceeds maximum allowed size\r\n")
)

func appendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

func appendBulk(b, v []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, '\r', '\n')
	b = append(b, v...)
	return append(b, '\r', '\n')
}

// get returns the live value of key at the replicated clock. Callers hold mu.
func (s *store) get(key string) (item, bool) {
	it, ok := s.data[key]
	if !ok || (it.expireAt != 0 && it.expireAt <= s.now) {
		return item{}, false
	}
	return it, true
}

func (s *store) put(key string, it item) {
	if old, ok := s.data[key]; ok && old.expireAt != 0 {
		s.expiring--
	}
	if it.expireAt != 0 {
		s.expiring++
	}
	s.data[key] = it
}

func (s *store) del(key string) bool {
	old, ok := s.data[key]
	if !ok {
		return false
	}
	if old.expireAt != 0 {
		s.expiring--
	}
	delete(s.data, key)
	return !(old.expireAt != 0 && old.expireAt <= s.now)
}

// Apply implements consensus.StateMachine.
func (s *store) Apply(cmds []consensus.Command) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range cmds {
		res, err := s.apply(cmds[i].Data, cmds[i].Timestamp)
		if err != nil {
			// A command that does not decode was proposed by a broken
			// client of this format; refuse it on every member alike.
			res = []byte("-ERR " + err.Error() + "\r\n")
		}
		cmds[i].Result = res
	}
	return nil
}

// maxTTL bounds a relative expiry (ms), as the proposer does.
const maxTTL = 1 << 60

// maxValueBytes bounds values created by APPEND and INCR on the state
// (SET is bounded by the proposer and the entry size limit).
const maxValueBytes = 8 << 20

// apply applies one command stamped at ts (zero: not stamped).
func (s *store) apply(data []byte, ts clock.Timestamp) ([]byte, error) {
	d := decoder{b: data}
	op := d.byte()
	proposerMs := d.int64()
	if d.err != nil {
		return nil, d.err
	}
	now := proposerMs
	if !ts.IsZero() {
		now = ts.Wall / int64(time.Millisecond)
	}
	if now > s.now {
		s.now = now
	}
	switch op {
	case opSet:
		key, val, flags, exp := d.string(), d.bytes(), d.uvarint(), d.varint()
		if err := d.done(); err != nil {
			return nil, err
		}
		old, exists := s.get(key)
		var res []byte
		if flags&setGet != 0 {
			if exists {
				res = appendBulk(nil, old.val)
			} else {
				res = replyNil
			}
		}
		if (flags&setNX != 0 && exists) || (flags&setXX != 0 && !exists) {
			if res == nil {
				res = replyNil
			}
			return res, nil
		}
		if flags&setRelative != 0 {
			if exp <= 0 || exp > maxTTL {
				return nil, fmt.Errorf("%w: time to live %d", errMalformed, exp)
			}
			exp += s.now
		}
		if flags&setKeepTTL != 0 && exists {
			exp = old.expireAt
		}
		if exp != 0 && exp <= s.now {
			s.del(key) // already expired: SET with a past expiry deletes
		} else {
			s.put(key, item{val: slices.Clone(val), expireAt: exp})
		}
		if res == nil {
			res = replyOK
		}
		return res, nil
	case opDel:
		n := d.uvarint()
		if n > maxKeys {
			return nil, errMalformed
		}
		var deleted int64
		for range n {
			key := d.string()
			if d.err != nil {
				return nil, d.err
			}
			if s.del(key) {
				deleted++
			}
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		return appendInt(nil, deleted), nil
	case opIncrBy:
		key, delta := d.string(), d.varint()
		if err := d.done(); err != nil {
			return nil, err
		}
		var cur int64
		old, exists := s.get(key)
		if exists {
			v, err := strconv.ParseInt(string(old.val), 10, 64)
			if err != nil {
				return errNotInteger, nil
			}
			cur = v
		}
		if (delta > 0 && cur > (1<<63-1)-delta) || (delta < 0 && cur < (-1<<63)-delta) {
			return errIncrOverflow, nil
		}
		cur += delta
		s.put(key, item{val: strconv.AppendInt(nil, cur, 10), expireAt: old.expireAt})
		return appendInt(nil, cur), nil
	case opAppend:
		key, val := d.string(), d.bytes()
		limit := uint64(maxValueBytes)
		if d.err == nil && len(d.b) > 0 { // the proposer's value limit
			limit = min(limit, d.uvarint())
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		old, _ := s.get(key)
		if uint64(len(old.val))+uint64(len(val)) > limit {
			return errValueTooBig, nil
		}
		nv := make([]byte, 0, len(old.val)+len(val))
		nv = append(append(nv, old.val...), val...)
		s.put(key, item{val: nv, expireAt: old.expireAt})
		return appendInt(nil, int64(len(nv))), nil
	case opMSet:
		n := d.uvarint()
		if n > maxKeys {
			return nil, errMalformed
		}
		type kv struct {
			k string
			v []byte
		}
		pairs := make([]kv, 0, min(n, 1024))
		for range n {
			k, v := d.string(), d.bytes()
			if d.err != nil {
				return nil, d.err
			}
			pairs = append(pairs, kv{k, v})
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		for _, p := range pairs {
			s.put(p.k, item{val: slices.Clone(p.v)})
		}
		return replyOK, nil
	case opTick:
		if err := d.done(); err != nil {
			return nil, err
		}
		if s.expiring > 0 {
			s.sweep()
		}
		return replyOK, nil
	case opBatch:
		// The writes of one pipeline, applied in order; the result is
		// their replies, concatenated. The framing is checked before
		// anything is applied.
		n := d.uvarint()
		if n == 0 || n > maxKeys {
			return nil, errMalformed
		}
		subs := make([][]byte, 0, min(n, 1024))
		for range n {
			sub := d.bytes()
			if d.err != nil {
				return nil, d.err
			}
			subs = append(subs, sub)
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		var out []byte
		for _, sub := range subs {
			var res []byte
			var err error
			if len(sub) > 0 && sub[0] == opBatch {
				err = fmt.Errorf("%w: nested batch", errMalformed)
			} else {
				res, err = s.apply(sub, ts)
			}
			if err != nil {
				res = []byte("-ERR " + err.Error() + "\r\n")
			}
			out = append(out, res...)
		}
		return out, nil
	case opACL:
		return s.applyACL(&d)
	case opIdem:
		return s.applyIdem(&d, ts)
	case opMeta:
		id, redis, http := d.uvarint(), d.string(), d.string()
		if err := d.done(); err != nil {
			return nil, err
		}
		s.meta[id] = memberAddrs{Redis: redis, HTTP: http}
		return replyOK, nil
	default:
		return nil, fmt.Errorf("%w: unknown op %d", errMalformed, op)
	}
}

// sweep removes expired keys. It runs inside Apply for clock ticks
// (deterministic: it depends only on the replicated clock).
func (s *store) sweep() {
	for k, it := range s.data {
		if it.expireAt != 0 && it.expireAt <= s.now {
			delete(s.data, k)
			s.expiring--
		}
	}
}

// needTicks reports whether keys with an expiry exist, so the leader
// should advance the replicated clock.
func (s *store) needTicks() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.expiring > 0
}

func (s *store) addrs(id uint64) (memberAddrs, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.meta[id]
	return a, ok
}

// Snapshot implements consensus.StateMachine. Items are immutable, so a
// shallow copy of the maps is a point-in-time view.
func (s *store) Snapshot() (consensus.SnapshotWriter, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &snapshot{data: maps.Clone(s.data), now: s.now, meta: maps.Clone(s.meta), acl: maps.Clone(s.acl)}, nil
}

// Snapshot format: magic "KVS2", now (8 bytes), member count (uvarint),
// members (id uvarint, redis, http), user count (uvarint), users
// (appendUser, in name order), key count (uvarint), keys (key, value,
// expireAt varint), in key order so equal states give equal bytes.
// "KVS1" snapshots, from before users, have no user section.
var (
	snapMagic   = []byte("KVS2")
	snapMagicV1 = []byte("KVS1")
)

type snapshot struct {
	data map[string]item
	now  int64
	meta map[uint64]memberAddrs
	acl  map[string]*aclUser
}

func (sn *snapshot) Release() {}

func (sn *snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 64<<10)}
	var b []byte
	b = append(b, snapMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(sn.now))
	b = binary.AppendUvarint(b, uint64(len(sn.meta)))
	for _, id := range slices.Sorted(maps.Keys(sn.meta)) {
		a := sn.meta[id]
		b = binary.AppendUvarint(b, id)
		b = appendString(b, []byte(a.Redis))
		b = appendString(b, []byte(a.HTTP))
	}
	b = binary.AppendUvarint(b, uint64(len(sn.acl)))
	for _, name := range slices.Sorted(maps.Keys(sn.acl)) {
		b = appendUser(b, sn.acl[name])
	}
	keys := slices.Sorted(maps.Keys(sn.data))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	cw.Write(b)
	for _, k := range keys {
		it := sn.data[k]
		b = appendString(b[:0], []byte(k))
		b = appendString(b, it.val)
		b = binary.AppendVarint(b, it.expireAt)
		if _, err := cw.Write(b); err != nil {
			return cw.n, err
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, cw.err
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// Restore implements consensus.StateMachine.
func (s *store) Restore(r io.Reader) error {
	data, now, meta, acl, err := decodeSnapshot(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.now, s.meta, s.acl = data, now, meta, acl
	s.expiring = 0
	for _, it := range data {
		if it.expireAt != 0 {
			s.expiring++
		}
	}
	return nil
}

func decodeSnapshot(r *bufio.Reader) (map[string]item, int64, map[uint64]memberAddrs, map[string]*aclUser, error) {
	fail := func(what string, err error) (map[string]item, int64, map[uint64]memberAddrs, map[string]*aclUser, error) {
		return nil, 0, nil, nil, fmt.Errorf("kvnode: snapshot: %s: %w", what, err)
	}
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fail("header", err)
	}
	v1 := string(hdr[:4]) == string(snapMagicV1)
	if !v1 && string(hdr[:4]) != string(snapMagic) {
		return fail("header", errMalformed)
	}
	now := int64(binary.BigEndian.Uint64(hdr[4:]))
	nm, err := binary.ReadUvarint(r)
	if err != nil || nm > maxKeys {
		return fail("member count", errors.Join(errMalformed, err))
	}
	meta := make(map[uint64]memberAddrs, nm)
	for range nm {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return fail("member", err)
		}
		redis, err := readString(r)
		if err != nil {
			return fail("member", err)
		}
		http, err := readString(r)
		if err != nil {
			return fail("member", err)
		}
		meta[id] = memberAddrs{Redis: string(redis), HTTP: string(http)}
	}
	acl := make(map[string]*aclUser)
	if !v1 {
		nu, err := binary.ReadUvarint(r)
		if err != nil || nu > maxUsers {
			return fail("user count", errors.Join(errMalformed, err))
		}
		for range nu {
			u, err := readUser(r)
			if err != nil {
				return fail("user", err)
			}
			if _, dup := acl[u.name]; dup {
				return fail("user", errMalformed)
			}
			acl[u.name] = u
		}
	}
	nk, err := binary.ReadUvarint(r)
	if err != nil {
		return fail("key count", err)
	}
	data := make(map[string]item, min(nk, 1<<20))
	for range nk {
		k, err := readString(r)
		if err != nil {
			return fail("key", err)
		}
		v, err := readString(r)
		if err != nil {
			return fail("value", err)
		}
		exp, err := binary.ReadVarint(r)
		if err != nil {
			return fail("expiry", err)
		}
		data[string(k)] = item{val: v, expireAt: exp}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fail("trailing data", errMalformed)
	}
	return data, now, meta, acl, nil
}

func readString(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxSnapString {
		return nil, errMalformed
	}
	b := make([]byte, 0, min(n, 64<<10))
	for uint64(len(b)) < n {
		chunk := min(n-uint64(len(b)), 64<<10)
		start := len(b)
		b = append(b, make([]byte, chunk)...)
		if _, err := io.ReadFull(r, b[start:]); err != nil {
			return nil, io.ErrUnexpectedEOF
		}
	}
	return b, nil
}

func appendString(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encoder builds commands.
type encoder struct{ b []byte }

func newCommand(op byte, nowMs int64) *encoder {
	e := &encoder{b: make([]byte, 0, 64)}
	e.b = append(e.b, op)
	e.b = binary.BigEndian.AppendUint64(e.b, uint64(nowMs))
	return e
}

func (e *encoder) bytes(v []byte) *encoder   { e.b = appendString(e.b, v); return e }
func (e *encoder) uvarint(v uint64) *encoder { e.b = binary.AppendUvarint(e.b, v); return e }
func (e *encoder) varint(v int64) *encoder   { e.b = binary.AppendVarint(e.b, v); return e }

// decoder reads commands; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errMalformed
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) int64() int64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return int64(v)
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errMalformed
	}
	return d.err
}
