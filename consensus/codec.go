package consensus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sort"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/internal/wire"
)

// Entry payload layout (version 1), all integers little-endian:
//
//	kind  byte     entryCommand, entryConfChange or entryIncarnation
//	flags byte     bit 0: a request id follows; bit 1: a timestamp follows
//	epoch uint64   random per node incarnation
//	seq   uint64   proposal number within the epoch
//	[timestamp, 12 bytes (clock.Timestamp binary)]   if flag bit 1
//	[reqLen uvarint, req bytes]   if flag bit 0
//	rest           command bytes (entryCommand), member list (entryConfChange),
//	               or member id (uvarint) and incarnation (uint64) (entryIncarnation)
const (
	entryCommand     byte = 1
	entryConfChange  byte = 2
	entryIncarnation byte = 3

	flagRequestID byte = 1
	flagTimestamp byte = 2 // set by the leader that appends the entry (stamp.go)

	entryHeaderLen  = 2 + 8 + 8
	maxRequestIDLen = 1024
	maxAddrLen      = 4096
	maxMembers      = 1 << 16
)

var errMalformed = errors.New("consensus: malformed encoding")

// entryHeader is the decoded prefix of an entry written by this package.
type entryHeader struct {
	kind  byte
	epoch uint64
	seq   uint64
	reqID string
	ts    clock.Timestamp // zero: not stamped
}

func encodeEntry(h entryHeader, body []byte) []byte {
	n := entryHeaderLen + len(body)
	if h.reqID != "" {
		n += binary.MaxVarintLen64 + len(h.reqID)
	}
	if !h.ts.IsZero() {
		n += clock.TimestampSize
	}
	b := make([]byte, 2, n)
	b[0] = h.kind
	if h.reqID != "" {
		b[1] = flagRequestID
	}
	if !h.ts.IsZero() {
		b[1] |= flagTimestamp
	}
	b = binary.LittleEndian.AppendUint64(b, h.epoch)
	b = binary.LittleEndian.AppendUint64(b, h.seq)
	if !h.ts.IsZero() {
		b, _ = h.ts.AppendBinary(b)
	}
	if h.reqID != "" {
		b = binary.AppendUvarint(b, uint64(len(h.reqID)))
		b = append(b, h.reqID...)
	}
	return append(b, body...)
}

// decodeEntry splits an entry payload into its header and body. The body
// aliases data.
func decodeEntry(data []byte) (entryHeader, []byte, error) {
	var h entryHeader
	if len(data) < entryHeaderLen {
		return h, nil, fmt.Errorf("%w: entry of %d bytes", errMalformed, len(data))
	}
	h.kind = data[0]
	if h.kind != entryCommand && h.kind != entryConfChange && h.kind != entryIncarnation {
		return h, nil, fmt.Errorf("%w: entry kind %d", errMalformed, h.kind)
	}
	flags := data[1]
	if flags&^(flagRequestID|flagTimestamp) != 0 {
		return h, nil, fmt.Errorf("%w: entry flags %#x", errMalformed, flags)
	}
	h.epoch = binary.LittleEndian.Uint64(data[2:])
	h.seq = binary.LittleEndian.Uint64(data[10:])
	rest := data[entryHeaderLen:]
	if flags&flagTimestamp != 0 {
		if len(rest) < clock.TimestampSize {
			return h, nil, fmt.Errorf("%w: entry timestamp", errMalformed)
		}
		_ = h.ts.UnmarshalBinary(rest[:clock.TimestampSize])
		if h.ts.IsZero() {
			return h, nil, fmt.Errorf("%w: zero entry timestamp", errMalformed)
		}
		rest = rest[clock.TimestampSize:]
	}
	if flags&flagRequestID != 0 {
		l, n := binary.Uvarint(rest)
		if n <= 0 || n != uvarintLen(l) || l == 0 || l > maxRequestIDLen || l > uint64(len(rest)-n) {
			return h, nil, fmt.Errorf("%w: request id", errMalformed)
		}
		h.reqID = string(rest[n : n+int(l)])
		rest = rest[n+int(l):]
	}
	return h, rest, nil
}

// uvarintLen is the length of l's canonical (shortest) encoding.
func uvarintLen(l uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], l)
}

// encodeMembers encodes a member list (conf change bodies, snapshot headers).
func encodeMembers(b []byte, ms []Member) []byte {
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = binary.AppendUvarint(b, m.ID)
		l := byte(0)
		if m.Learner {
			l = 1
		}
		b = append(b, l)
		b = wire.AppendString(b, m.Addr)
	}
	return b
}

// byteReader is what the decoders read from: bufio.Reader or bytes.Reader.
type byteReader interface {
	io.Reader
	io.ByteReader
}

func readUvarint(r byteReader, max uint64, what string) (uint64, error) {
	v, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", errMalformed, what, err)
	}
	if v > max {
		return 0, fmt.Errorf("%w: %s %d exceeds %d", errMalformed, what, v, max)
	}
	return v, nil
}

func readBytes(r byteReader, max uint64, what string) ([]byte, error) {
	n, err := readUvarint(r, max, what+" length")
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errMalformed, what, err)
	}
	return b, nil
}

func decodeMembers(r byteReader) ([]Member, error) {
	n, err := readUvarint(r, maxMembers, "member count")
	if err != nil {
		return nil, err
	}
	ms := make([]Member, 0, min(n, 64))
	for range n {
		id, err := readUvarint(r, ^uint64(0), "member id")
		if err != nil {
			return nil, err
		}
		if id == 0 {
			return nil, fmt.Errorf("%w: member id 0", errMalformed)
		}
		l, err := r.ReadByte()
		if err != nil || l > 1 {
			return nil, fmt.Errorf("%w: learner flag", errMalformed)
		}
		addr, err := readBytes(r, maxAddrLen, "address")
		if err != nil {
			return nil, err
		}
		ms = append(ms, Member{ID: id, Learner: l == 1, Addr: string(addr)})
	}
	return ms, nil
}

// Snapshot stream layout (version 2): magic, flags, replicated node state
// (members, request-id window, proposal sessions, member incarnations, and,
// with flag bit 1, the last applied command's timestamp), then the state
// machine's own stream until EOF. Version 1 (magic "dks1", written by
// earlier releases) has no incarnations and is still read.
var (
	snapMagic   = [4]byte{'d', 'k', 's', '2'}
	snapMagicV1 = [4]byte{'d', 'k', 's', '1'}
)

const (
	snapFlagNoUserData byte = 1
	snapFlagTimestamp  byte = 2 // the last applied command's timestamp ends the header
)

// replicated is the part of the replicated state the node keeps on behalf of
// the application: member addresses, the request-id dedup window, and the
// per-proposer windows that make duplicated proposals apply once.
type replicated struct {
	members []Member
	dedup   *dedupWindow
	sess    *sessions
	// incarnations records the incarnation each member announced when it
	// first joined (see identity.go). Never modified in place: a change
	// replaces the map, so a published one can be read without locks.
	incarnations map[uint64]uint64
	// ts is the timestamp of the last stamped command applied (zero if
	// none): the floor of every later leader's clock.
	ts clock.Timestamp
}

func encodeSnapshotHeader(rs replicated, noUserData bool) []byte {
	b := append([]byte(nil), snapMagic[:]...)
	flags := byte(0)
	if noUserData {
		flags |= snapFlagNoUserData
	}
	if !rs.ts.IsZero() {
		flags |= snapFlagTimestamp
	}
	b = append(b, flags)
	b = encodeMembers(b, rs.members)
	b = rs.dedup.appendTo(b)
	b = rs.sess.appendTo(b)
	b = appendIncarnations(b, rs.incarnations)
	if !rs.ts.IsZero() {
		b, _ = rs.ts.AppendBinary(b)
	}
	return b
}

// decodeSnapshotHeader reads the header from r, leaving r at the start of
// the state machine's stream.
func decodeSnapshotHeader(r byteReader, maxResult int) (replicated, bool, error) {
	var rs replicated
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return rs, false, fmt.Errorf("%w: snapshot magic: %v", errMalformed, err)
	}
	if magic != snapMagic && magic != snapMagicV1 {
		return rs, false, fmt.Errorf("%w: snapshot magic %q", errMalformed, magic[:])
	}
	flags, err := r.ReadByte()
	if err != nil || flags&^(snapFlagNoUserData|snapFlagTimestamp) != 0 {
		return rs, false, fmt.Errorf("%w: snapshot flags", errMalformed)
	}
	if rs.members, err = decodeMembers(r); err != nil {
		return rs, false, err
	}
	if rs.dedup, err = readDedupWindow(r, maxResult); err != nil {
		return rs, false, err
	}
	if rs.sess, err = readSessions(r); err != nil {
		return rs, false, err
	}
	if magic == snapMagicV1 {
		rs.incarnations = map[uint64]uint64{}
	} else if rs.incarnations, err = readIncarnations(r); err != nil {
		return rs, false, err
	}
	if flags&snapFlagTimestamp != 0 {
		var tb [clock.TimestampSize]byte
		if _, err := io.ReadFull(r, tb[:]); err != nil {
			return rs, false, fmt.Errorf("%w: snapshot timestamp: %v", errMalformed, err)
		}
		_ = rs.ts.UnmarshalBinary(tb[:])
		if rs.ts.IsZero() {
			return rs, false, fmt.Errorf("%w: zero snapshot timestamp", errMalformed)
		}
	}
	return rs, flags&snapFlagNoUserData != 0, nil
}

// dedupWindow remembers the outcome of the last max commands that carried a
// request id, evicting in log order so every member evicts the same ids.
type dedupWindow struct {
	max   int
	order []string // FIFO of ids, oldest first
	res   map[string]dedupResult
}

type dedupResult struct {
	index  uint64
	result []byte
	errMsg string
	isErr  bool
}

func newDedupWindow(max int) *dedupWindow {
	return &dedupWindow{max: max, res: make(map[string]dedupResult)}
}

func (d *dedupWindow) get(id string) (dedupResult, bool) {
	r, ok := d.res[id]
	return r, ok
}

func (d *dedupWindow) put(id string, r dedupResult) {
	if _, ok := d.res[id]; ok {
		return
	}
	d.res[id] = r
	d.order = append(d.order, id)
	for len(d.order) > d.max {
		delete(d.res, d.order[0])
		d.order[0] = ""
		d.order = d.order[1:]
	}
}

func (d *dedupWindow) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(d.order)))
	for _, id := range d.order {
		r := d.res[id]
		b = wire.AppendString(b, id)
		b = binary.AppendUvarint(b, r.index)
		if r.isErr {
			b = append(b, 1)
			b = wire.AppendString(b, r.errMsg)
		} else {
			b = append(b, 0)
			b = wire.AppendBytes(b, r.result)
		}
	}
	return b
}

func readDedupWindow(r byteReader, maxResult int) (*dedupWindow, error) {
	n, err := readUvarint(r, 1<<24, "dedup count")
	if err != nil {
		return nil, err
	}
	d := &dedupWindow{res: make(map[string]dedupResult, min(n, 1024))}
	for range n {
		id, err := readBytes(r, maxRequestIDLen, "request id")
		if err != nil {
			return nil, err
		}
		var res dedupResult
		if res.index, err = readUvarint(r, ^uint64(0), "dedup index"); err != nil {
			return nil, err
		}
		kind, err := r.ReadByte()
		if err != nil || kind > 1 {
			return nil, fmt.Errorf("%w: dedup kind", errMalformed)
		}
		v, err := readBytes(r, uint64(maxResult), "dedup result")
		if err != nil {
			return nil, err
		}
		if kind == 1 {
			res.isErr, res.errMsg = true, string(v)
		} else {
			res.result = v
		}
		if _, dup := d.res[string(id)]; dup {
			return nil, fmt.Errorf("%w: duplicate request id in snapshot", errMalformed)
		}
		d.res[string(id)] = res
		d.order = append(d.order, string(id))
	}
	return d, nil
}

// sessions makes a proposal that the network delivered twice (a duplicated
// forward) apply once. Each proposer incarnation (epoch) numbers its
// proposals; the window remembers which numbers above a floor were applied.
// Numbers at or below the floor that were not seen are refused. Every
// member makes the same decisions because they depend only on the log.
type sessions struct {
	byEpoch map[uint64]*session
	clock   uint64 // bumped per use, for LRU eviction of whole epochs
}

type session struct {
	floor uint64 // every seq <= floor counts as applied
	// seen is a bitmap of the seqs above the floor that were applied: bit i
	// stands for seq floor+1+i, up to floor+2*sessionWindow.
	seen []uint64
	used uint64
}

const (
	sessionWindow = 1 << 14
	maxSessions   = 1024
)

func newSession(floor uint64) *session {
	return &session{floor: floor, seen: make([]uint64, 2*sessionWindow/64)}
}

// bit returns the word and mask of seq, which must be in
// (floor, floor+2*sessionWindow].
func (se *session) bit(seq uint64) (int, uint64) {
	i := seq - se.floor - 1
	return int(i / 64), 1 << (i % 64)
}

// raiseFloor moves the floor up to nf, forgetting the seqs at or below it.
func (se *session) raiseFloor(nf uint64) {
	k := nf - se.floor
	se.floor = nf
	n := len(se.seen)
	if k >= uint64(n)*64 {
		clear(se.seen)
		return
	}
	w, b := int(k/64), k%64
	for i := range n {
		var v uint64
		if i+w < n {
			v = se.seen[i+w] >> b
			if b > 0 && i+w+1 < n {
				v |= se.seen[i+w+1] << (64 - b)
			}
		}
		se.seen[i] = v
	}
}

func newSessions() *sessions { return &sessions{byEpoch: make(map[uint64]*session)} }

// admit reports whether (epoch, seq) is new, recording it if so.
func (s *sessions) admit(epoch, seq uint64) bool {
	s.clock++
	se := s.byEpoch[epoch]
	if se == nil {
		if len(s.byEpoch) >= maxSessions {
			s.evict()
		}
		var floor uint64
		if seq > sessionWindow {
			floor = seq - sessionWindow
		}
		se = newSession(floor)
		s.byEpoch[epoch] = se
	}
	se.used = s.clock
	if seq <= se.floor {
		return false
	}
	if seq > se.floor+2*sessionWindow {
		se.raiseFloor(seq - sessionWindow)
	}
	w, m := se.bit(seq)
	if se.seen[w]&m != 0 {
		return false
	}
	se.seen[w] |= m
	return true
}

func (s *sessions) evict() {
	var oldest uint64
	first := true
	var victim uint64
	for e, se := range s.byEpoch {
		if first || se.used < oldest || (se.used == oldest && e < victim) {
			oldest, victim, first = se.used, e, false
		}
	}
	delete(s.byEpoch, victim)
}

func (s *sessions) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, s.clock)
	epochs := make([]uint64, 0, len(s.byEpoch))
	for e := range s.byEpoch {
		epochs = append(epochs, e)
	}
	sort.Slice(epochs, func(i, j int) bool { return epochs[i] < epochs[j] })
	b = binary.AppendUvarint(b, uint64(len(epochs)))
	for _, e := range epochs {
		se := s.byEpoch[e]
		b = binary.LittleEndian.AppendUint64(b, e)
		b = binary.AppendUvarint(b, se.floor)
		b = binary.AppendUvarint(b, se.used)
		count := 0
		for _, v := range se.seen {
			count += bits.OnesCount64(v)
		}
		b = binary.AppendUvarint(b, uint64(count))
		for w, v := range se.seen {
			for v != 0 {
				i := bits.TrailingZeros64(v)
				v &= v - 1
				b = binary.AppendUvarint(b, uint64(w*64+i+1)) // seq - floor
			}
		}
	}
	return b
}

func readSessions(r byteReader) (*sessions, error) {
	s := newSessions()
	var err error
	if s.clock, err = readUvarint(r, ^uint64(0), "session clock"); err != nil {
		return nil, err
	}
	n, err := readUvarint(r, maxSessions, "session count")
	if err != nil {
		return nil, err
	}
	for range n {
		var eb [8]byte
		if _, err := io.ReadFull(r, eb[:]); err != nil {
			return nil, fmt.Errorf("%w: session epoch: %v", errMalformed, err)
		}
		floor, err := readUvarint(r, ^uint64(0)-2*sessionWindow, "session floor")
		if err != nil {
			return nil, err
		}
		se := newSession(floor)
		if se.used, err = readUvarint(r, ^uint64(0), "session use"); err != nil {
			return nil, err
		}
		m, err := readUvarint(r, 2*sessionWindow, "session size")
		if err != nil {
			return nil, err
		}
		for range m {
			d, err := readUvarint(r, 2*sessionWindow, "session seq")
			if err != nil {
				return nil, err
			}
			if d == 0 {
				return nil, fmt.Errorf("%w: session seq at its floor", errMalformed)
			}
			w, m := se.bit(se.floor + d)
			se.seen[w] |= m
		}
		s.byEpoch[binary.LittleEndian.Uint64(eb[:])] = se
	}
	return s, nil
}

// newSnapshotReader wraps a snapshot stream for header decoding.
func newSnapshotReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// Message payload layout (version 1), all integers little-endian. Every
// message a node sends (Message.Payload, including snapshot headers) is an
// envelope around raft's own message:
//
//	version     byte    envelopeV1
//	group       uint64  the sender's Config.GroupID
//	incarnation uint64  the sender's incarnation (see identity.go)
//	rest                raft message (protobuf)
//
// The version byte is one a protobuf encoding of a raft message never
// starts with, so payloads of earlier releases (bare protobuf) are told
// apart and refused rather than misread.
const (
	envelopeV1  byte = 0xd1
	envelopeLen      = 1 + 8 + 8
)

// appendEnvelope appends the envelope header for a message from group and
// incarnation to b; the raft message follows.
func appendEnvelope(b []byte, group, inc uint64) []byte {
	b = append(b, envelopeV1)
	b = binary.LittleEndian.AppendUint64(b, group)
	return binary.LittleEndian.AppendUint64(b, inc)
}

// decodeEnvelope splits a payload into the sender's group and incarnation
// and the raft message bytes (aliasing p).
func decodeEnvelope(p []byte) (group, inc uint64, body []byte, err error) {
	if len(p) < envelopeLen {
		return 0, 0, nil, fmt.Errorf("%w: payload of %d bytes", errMalformed, len(p))
	}
	if p[0] != envelopeV1 {
		return 0, 0, nil, fmt.Errorf("%w: payload version %#x", errMalformed, p[0])
	}
	group = binary.LittleEndian.Uint64(p[1:])
	inc = binary.LittleEndian.Uint64(p[9:])
	if inc == 0 {
		return 0, 0, nil, fmt.Errorf("%w: incarnation 0", errMalformed)
	}
	return group, inc, p[envelopeLen:], nil
}

// maxIncarnations bounds the incarnation records a snapshot may carry (one
// per member id the group has ever had).
const maxIncarnations = 1 << 20

// appendIncarnations encodes the incarnation registry sorted by member id.
func appendIncarnations(b []byte, m map[uint64]uint64) []byte {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
		b = binary.LittleEndian.AppendUint64(b, m[id])
	}
	return b
}

func readIncarnations(r byteReader) (map[uint64]uint64, error) {
	n, err := readUvarint(r, maxIncarnations, "incarnation count")
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]uint64, min(n, 1024))
	for range n {
		id, err := readUvarint(r, ^uint64(0), "incarnation member")
		if err != nil {
			return nil, err
		}
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("%w: incarnation: %v", errMalformed, err)
		}
		inc := binary.LittleEndian.Uint64(b[:])
		if id == 0 || inc == 0 {
			return nil, fmt.Errorf("%w: incarnation record %d=%d", errMalformed, id, inc)
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("%w: member %d has two incarnation records", errMalformed, id)
		}
		m[id] = inc
	}
	return m, nil
}

// encodeIncarnationEntry is the entry by which member id announces its
// incarnation to the group.
func encodeIncarnationEntry(id, inc uint64) []byte {
	body := binary.AppendUvarint(nil, id)
	body = binary.LittleEndian.AppendUint64(body, inc)
	return encodeEntry(entryHeader{kind: entryIncarnation}, body)
}

// decodeIncarnationBody decodes the body of an entryIncarnation entry.
func decodeIncarnationBody(body []byte) (id, inc uint64, err error) {
	id, n := binary.Uvarint(body)
	if n <= 0 || n != uvarintLen(id) || len(body) != n+8 {
		return 0, 0, fmt.Errorf("%w: incarnation entry", errMalformed)
	}
	inc = binary.LittleEndian.Uint64(body[n:])
	if id == 0 || inc == 0 {
		return 0, 0, fmt.Errorf("%w: incarnation entry %d=%d", errMalformed, id, inc)
	}
	return id, inc, nil
}
