package consensus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Node is one member of a replicated state machine group. All methods are
// safe for concurrent use.
//
// Start starts these goroutines: the raft loop (ticks, messages, and in
// StorageInline mode persistence), the persist loop (StoragePipelined mode:
// log writes and syncs), the apply loop (feeds committed commands to the
// StateMachine), the event loop (Config.OnEvent), and, while one runs, a
// snapshot writer and one snapshot sender per lagging peer. Close stops them
// all.
type Node struct {
	cfg   Config
	id    uint64
	log   *slog.Logger
	sm    StateMachine
	logs  logStore
	snaps snapStore
	tr    Transport
	epoch uint64
	inc   uint64 // this member's incarnation (identity.go)
	// incs is the group's incarnation registry as last applied here.
	incs atomic.Pointer[map[uint64]uint64]
	// lastIdx is raft's last log index as of the last Ready (raft
	// goroutine only).
	lastIdx uint64
	// refuseLogAt and refuseQuiet pace the log lines about refused messages.
	refuseLogAt atomic.Int64
	refuseQuiet atomic.Uint64

	rn   *raft.RawNode // raft goroutine only
	pipe *pipeline     // StoragePipelined only
	// persisting counts log writes with entries handed to the persist
	// goroutine and not yet completed; propHeld notes proposals held back
	// meanwhile (raft goroutine only).
	persisting int
	propHeld   bool
	// farewells are messages telling members just removed by a change
	// applied here how far the log is committed; removedPeers maps each
	// such member to the tick at which it leaves the transport (raft
	// goroutine only).
	farewells    []*raftpb.Message
	removedPeers map[uint64]uint64

	// proposals
	propMu     sync.Mutex
	propQ      []*proposal
	waiters    map[uint64]*proposal // by seq
	byIndex    map[uint64]uint64    // log index -> seq of our entry seen there
	seq        uint64
	propC      chan struct{}
	propClosed bool

	// linearizable reads
	readMu          sync.Mutex
	readQ           []*readReq
	readC           chan struct{}
	readClosed      bool
	rounds          map[string]*readRound // raft goroutine only
	readSeq         uint64                // raft goroutine only
	tickCount       uint64                // raft goroutine only
	lastHS          *raftpb.HardState     // raft goroutine only
	persistedCommit uint64                // raft goroutine only
	addrs           map[uint64]string     // raft goroutine only
	snapSends       map[uint64]bool       // raft goroutine only
	removed         atomic.Bool
	// lostEntries is set when a proposal's entry was overwritten in the
	// log or skipped by a snapshot, so the raft loop proposes it again.
	lostEntries atomic.Bool
	// snapNeeded holds back snapshots for raft to send until one newer
	// than a membership change that added members exists: an older one
	// does not list the new member, who would ignore it.
	snapNeeded    atomic.Bool
	snapNeededIdx uint64 // raft goroutine only
	recvC         chan []inbound
	opC           chan func()
	membership    chan struct{} // 1-slot semaphore serialising membership calls

	ts stamper // command timestamps (stamp.go)

	// published state
	stateMu      sync.Mutex
	leader       uint64
	term         uint64
	vote         uint64
	role         raft.StateType
	commit       uint64
	leaderChange chan struct{} // closed and replaced on leader/term change
	contactAt    time.Time     // last message from the current leader
	contactIdx   uint64        // commit index learned then
	confState    *raftpb.ConfState
	members      map[uint64]Member

	// apply
	applyMu     sync.Mutex
	applyQ      []applyItem
	applyC      chan struct{}
	applied     atomic.Uint64
	appliedMu   sync.Mutex
	appliedCh   chan struct{} // closed and replaced when applied advances
	snapRunning atomic.Bool
	snapDoneC   chan snapshotDone

	events chan Event
	stats  counters

	stopC    chan struct{}
	stopOnce sync.Once
	failErr  atomic.Pointer[error]
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

type proposal struct {
	seq    uint64
	data   []byte // encoded entry
	cc     *raftpb.ConfChangeV2
	taken  bool   // handed to raft (under propMu)
	tick   uint64 // raft tick of the last hand-over (under propMu)
	cancel bool   // caller gave up before it was handed to raft (under propMu)
	lost   bool   // its entry was overwritten: propose it again (under propMu)
	done   chan struct{}
	res    []byte
	err    error
	index  uint64
}

type readReq struct {
	done  chan struct{}
	index uint64
	err   error
}

type readRound struct {
	reqs  []*readReq
	issue uint64 // tick at which the request was made
}

type applyItem struct {
	snap  *raftpb.SnapshotMetadata
	ents  []*raftpb.Entry
	confs map[uint64]confApplied
}

type confApplied struct {
	cs      *raftpb.ConfState
	members []Member // members added or updated by the change, with addresses
	removed []uint64
	// forceSnap asks for a snapshot that includes this change.
	forceSnap bool
}

type snapshotDone struct {
	meta *raftpb.SnapshotMetadata
	err  error
}

// Start opens (or creates) a member's state and starts it. A member with
// state resumes from it; a member without state bootstraps a new group from
// cfg.Bootstrap, or, with no Bootstrap, waits to be added by the group and
// receive a snapshot. The returned Node runs until Close.
func Start(cfg Config, sm StateMachine) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if sm == nil {
		return nil, fmt.Errorf("consensus: nil StateMachine: %w", ErrInvalidConfig)
	}
	n := &Node{
		cfg:          c,
		id:           c.ID,
		log:          c.Logger,
		sm:           sm,
		tr:           c.Transport,
		waiters:      make(map[uint64]*proposal),
		byIndex:      make(map[uint64]uint64),
		propC:        make(chan struct{}, 1),
		readC:        make(chan struct{}, 1),
		rounds:       make(map[string]*readRound),
		addrs:        make(map[uint64]string),
		snapSends:    make(map[uint64]bool),
		recvC:        make(chan []inbound, 1024),
		opC:          make(chan func(), 64),
		membership:   make(chan struct{}, 1),
		leaderChange: make(chan struct{}),
		members:      make(map[uint64]Member),
		applyC:       make(chan struct{}, 1),
		appliedCh:    make(chan struct{}),
		snapDoneC:    make(chan snapshotDone, 1),
		events:       make(chan Event, DefaultMaxEventQueue),
		stopC:        make(chan struct{}),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("member", c.ID)
	var eb [8]byte
	_, _ = rand.Read(eb[:])
	n.epoch = binary.LittleEndian.Uint64(eb[:])

	if c.Memory != nil {
		id, err := c.Memory.identity(c.GroupID)
		if err != nil {
			return nil, err
		}
		n.inc = id.incarnation
		n.logs, n.snaps = c.Memory.log, c.Memory.snaps
	} else {
		id, err := openIdentity(c)
		if err != nil {
			return nil, err
		}
		n.inc = id.incarnation
		ls, ss, err := openDisk(c)
		if err != nil {
			return nil, err
		}
		n.logs, n.snaps = ls, ss
	}
	if c.wrapLog != nil {
		n.logs = c.wrapLog(n.logs)
	}
	ok := false
	defer func() {
		if !ok {
			n.logs.Close()
		}
	}()

	ap, err := n.recover()
	if err != nil {
		return nil, err
	}
	if err := n.initStamps(ap); err != nil {
		return nil, err
	}
	rc := &raft.Config{
		ID:                        c.ID,
		ElectionTick:              c.ElectionTicks,
		HeartbeatTick:             c.HeartbeatTicks,
		Storage:                   raftStorage{n.logs, n},
		Applied:                   ap.applied,
		MaxSizePerMsg:             c.MaxMsgBytes,
		MaxCommittedSizePerReady:  4 * c.MaxMsgBytes,
		MaxUncommittedEntriesSize: c.MaxUncommittedBytes,
		MaxInflightMsgs:           c.MaxInflightMsgs,
		CheckQuorum:               !c.DisableCheckQuorum,
		PreVote:                   !c.DisablePreVote,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{n.log},
	}
	if c.ReadMode == ReadLease {
		rc.ReadOnlyOption = raft.ReadOnlyLeaseBased
	}
	if c.StorageMode == StoragePipelined {
		rc.AsyncStorageWrites = true
		n.pipe = newPipeline(int(min(4*c.MaxMsgBytes, 1<<30)))
	}
	rn, err := newRawNode(rc)
	if err != nil {
		return nil, err
	}
	n.rn = rn
	hs, cs, _ := n.logs.InitialState()
	n.lastHS = proto.Clone(hs).(*raftpb.HardState)
	n.persistedCommit = hs.GetCommit()
	n.lastIdx, _ = n.logs.LastIndex()
	n.term = hs.GetTerm()
	n.vote = hs.GetVote()
	n.commit = hs.GetCommit()
	n.confState = cs
	for _, m := range ap.rs.members {
		n.members[m.ID] = m
		n.addrs[m.ID] = m.Addr
	}
	if err := n.tr.Start(handler{n}); err != nil {
		return nil, fmt.Errorf("consensus: start transport: %w", err)
	}
	for id, addr := range n.addrs {
		if id != n.id {
			n.tr.AddPeer(id, addr)
		}
	}
	ok = true
	n.log.Info("consensus: started", "applied", ap.applied, "term", n.term, "commit", n.commit)
	n.wg.Add(3)
	go n.runRaft()
	go n.runApply(ap)
	go n.runEvents()
	if n.pipe != nil {
		n.wg.Add(1)
		go n.runPersist(cloneHS(hs))
	}
	return n, nil
}

// newRawNode creates the raft instance, converting a panic (which validated
// configs should never cause) into an error.
func newRawNode(rc *raft.Config) (rn *raft.RawNode, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("consensus: raft rejected config: %v: %w", r, ErrInvalidConfig)
		}
	}()
	rn, err = raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("consensus: raft rejected config: %v: %w", err, ErrInvalidConfig)
	}
	return rn, nil
}

// applyState is the apply loop's private state.
type applyState struct {
	applied   uint64
	term      uint64
	snapIndex uint64
	sinceSnap uint64 // entries applied since the last snapshot
	bytesSnap uint64
	confState *raftpb.ConfState
	rs        replicated
	forceSnap bool // a membership change added members since the last snapshot
}

// recover bootstraps empty storage or restores the state machine from the
// latest snapshot.
func (n *Node) recover() (*applyState, error) {
	hs, _, err := n.logs.InitialState()
	if err != nil {
		return nil, fmt.Errorf("consensus: read state: %w", err)
	}
	snap, err := n.storedSnapshot()
	if err != nil {
		return nil, err
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("consensus: read log: %w", err)
	}
	ap := &applyState{rs: replicated{dedup: newDedupWindow(n.cfg.DedupEntries), sess: newSessions(), incarnations: map[uint64]uint64{}}}
	reg := ap.rs.incarnations // not &ap.rs.incarnations: the apply loop reassigns it
	n.incs.Store(&reg)
	empty := raft.IsEmptyHardState(hs) && raft.IsEmptySnap(snap) && last == 0
	if empty && len(n.cfg.Bootstrap) > 0 {
		if err := n.bootstrap(); err != nil {
			return nil, err
		}
		if snap, err = n.storedSnapshot(); err != nil {
			return nil, err
		}
	}
	ap.confState = &raftpb.ConfState{}
	if !raft.IsEmptySnap(snap) {
		meta := snap.GetMetadata()
		if err := n.restore(ap, meta); err != nil {
			return nil, err
		}
		n.applied.Store(ap.applied)
	}
	return ap, nil
}

// storedSnapshot returns the log's snapshot marker (empty if none).
func (n *Node) storedSnapshot() (*raftpb.Snapshot, error) {
	snap, err := n.logs.Snapshot()
	if errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
		return &raftpb.Snapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consensus: read snapshot: %w", err)
	}
	return snap, nil
}

// bootstrap seeds empty storage with a snapshot at index 1 holding the
// initial membership, identical on every initial member.
func (n *Node) bootstrap() error {
	cs := &raftpb.ConfState{}
	for _, m := range n.cfg.Bootstrap {
		if m.Learner {
			cs.Learners = append(cs.Learners, m.ID)
		} else {
			cs.Voters = append(cs.Voters, m.ID)
		}
	}
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)), ConfState: cs}
	rs := replicated{members: n.cfg.Bootstrap, dedup: newDedupWindow(n.cfg.DedupEntries), sess: newSessions(), incarnations: map[uint64]uint64{}}
	w, err := n.snaps.Create(meta)
	if err != nil {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	if _, err := w.Write(encodeSnapshotHeader(rs, true)); err != nil {
		w.Abort()
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	if err := n.logs.SetSnapshot(meta); err != nil {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	hs := &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(1)), Vote: new(uint64(0))}
	if err := n.logs.Append(nil, hs); err != nil {
		return fmt.Errorf("consensus: bootstrap: %w", err)
	}
	return nil
}

// restore loads the snapshot at meta into the state machine and ap.
func (n *Node) restore(ap *applyState, meta *raftpb.SnapshotMetadata) error {
	_, rc, err := n.snaps.Open(meta.GetIndex())
	if err != nil {
		return fmt.Errorf("consensus: open snapshot %d: %w: %w", meta.GetIndex(), err, ErrCorrupt)
	}
	defer rc.Close()
	br := newSnapshotReader(rc)
	rs, noUser, err := decodeSnapshotHeader(br, n.cfg.MaxEntryBytes+maxRequestIDLen)
	if err != nil {
		return fmt.Errorf("consensus: snapshot %d: %w: %w", meta.GetIndex(), err, ErrCorrupt)
	}
	rs.dedup.max = n.cfg.DedupEntries
	if !noUser {
		rerr := n.sm.Restore(br)
		// Read to the end so the store verifies its checksum, whether or
		// not Restore consumed everything.
		if _, err := io.Copy(io.Discard, br); err != nil {
			return fmt.Errorf("consensus: snapshot %d: %w: %w", meta.GetIndex(), err, ErrCorrupt)
		}
		if rerr != nil {
			return fmt.Errorf("consensus: restore snapshot %d: %w", meta.GetIndex(), rerr)
		}
	}
	ap.rs = rs
	if err := n.publishIncarnations(rs.incarnations); err != nil {
		return err
	}
	ap.applied = meta.GetIndex()
	ap.term = meta.GetTerm()
	ap.snapIndex = meta.GetIndex()
	ap.sinceSnap, ap.bytesSnap = 0, 0
	ap.confState = proto.Clone(meta.GetConfState()).(*raftpb.ConfState)
	return nil
}

// fail stops the node after an unrecoverable error.
func (n *Node) fail(err error) {
	if n.failErr.CompareAndSwap(nil, &err) {
		n.log.Error("consensus: node failed", "err", err)
		n.emit(Event{Kind: EventFailed, Err: err})
	}
	n.stop()
}

func (n *Node) stop() { n.stopOnce.Do(func() { close(n.stopC) }) }

// stoppedErr is the error callers get once the node has stopped.
func (n *Node) stoppedErr() error {
	if p := n.failErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrStopped, *p)
	}
	if n.removed.Load() {
		return fmt.Errorf("%w: %w", ErrStopped, ErrRemoved)
	}
	return ErrStopped
}

// Err returns the error that stopped the node, or nil if it is running or
// was closed normally.
func (n *Node) Err() error {
	if p := n.failErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Done returns a channel closed when the node stops (Close or failure).
func (n *Node) Done() <-chan struct{} { return n.stopC }

// Close stops the node and waits for every goroutine it started. Calls in
// progress return errors wrapping ErrStopped. Close is idempotent; it
// returns the error that failed the node, if any.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return n.closeErr
	}
	n.closed = true
	n.stop()
	n.wg.Wait()
	terr := n.tr.Close()
	lerr := n.logs.Close()
	n.closeErr = errors.Join(n.Err(), terr, lerr)
	return n.closeErr
}

// failPending completes every waiting call after the loops have stopped.
func (n *Node) failPending() {
	n.propMu.Lock()
	n.propClosed = true
	for _, p := range n.propQ {
		if _, waiting := n.waiters[p.seq]; waiting && !p.cancel {
			delete(n.waiters, p.seq)
			p.finish(nil, fmt.Errorf("%w: %w", n.stoppedErr(), ErrDropped))
		}
	}
	n.propQ = nil
	for seq, p := range n.waiters {
		delete(n.waiters, seq)
		p.finish(nil, fmt.Errorf("%w: %w", n.stoppedErr(), ErrUnknownOutcome))
	}
	n.propMu.Unlock()
	n.readMu.Lock()
	n.readClosed = true
	reqs := n.readQ
	n.readQ = nil
	n.readMu.Unlock()
	for _, r := range n.rounds {
		reqs = append(reqs, r.reqs...)
	}
	clear(n.rounds)
	for _, r := range reqs {
		r.err = n.stoppedErr()
		close(r.done)
	}
}

func (p *proposal) finish(res []byte, err error) {
	p.res, p.err = res, err
	close(p.done)
}

// do runs f on the raft goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case n.opC <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return n.stoppedErr()
	}
	select {
	case <-done:
		return nil
	case <-n.stopC:
		return n.stoppedErr()
	}
}

// post queues f for the raft goroutine without waiting for it to run.
func (n *Node) post(f func()) bool {
	select {
	case n.opC <- f:
		return true
	case <-n.stopC:
		return false
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// runRaft is the raft loop: the only goroutine that touches n.rn.
func (n *Node) runRaft() {
	defer n.wg.Done()
	defer func() {
		n.stop()
		n.failPending()
	}()
	defer func() {
		// raft panics when it finds its log inconsistent with what it
		// acknowledged (a log damaged on disk). Stop this node, not the
		// process.
		if r := recover(); r != nil {
			n.fail(fmt.Errorf("consensus: raft: %v: %w", r, ErrCorrupt))
		}
	}()
	ticker := n.cfg.Clock.NewTimer(n.cfg.TickInterval)
	defer ticker.Stop()
	var persisted chan struct{} // nil (never ready) in the inline mode
	if n.pipe != nil {
		persisted = n.pipe.outC
	}
	for {
		select {
		case <-n.stopC:
			return
		case <-ticker.C():
			ticker.Reset(n.cfg.TickInterval)
			n.rn.Tick()
			n.tickCount++
			n.retryReads()
			n.dropRemovedPeers()
			if n.tickCount%uint64(n.cfg.ElectionTicks) == 0 || n.lostEntries.Load() {
				n.resubmit(false)
			}
			if n.tickCount%uint64(n.cfg.ElectionTicks) == 0 {
				n.announceIncarnation()
			}
		case msgs := <-n.recvC:
			n.step(msgs)
		case <-n.propC:
			n.offerProposals()
		case <-n.readC:
			n.submitReads()
		case f := <-n.opC:
			f()
		case d := <-n.snapDoneC:
			n.snapshotTaken(d)
		case <-persisted:
			n.persistResults()
		}
		n.drainInputs(persisted)
		if n.rn.HasReady() {
			if err := n.handleReady(); err != nil {
				n.fail(err)
				return
			}
		}
	}
}

// maxDrain bounds the inputs drainInputs takes before the next Ready.
const maxDrain = 64

// drainInputs takes the messages, proposals, reads and write completions
// already waiting, without blocking, so that they land in one Ready: fewer,
// larger Readies mean fewer messages and log writes per command.
func (n *Node) drainInputs(persisted chan struct{}) {
	for range maxDrain {
		select {
		case msgs := <-n.recvC:
			n.step(msgs)
		case <-n.propC:
			n.offerProposals()
		case <-n.readC:
			n.submitReads()
		case <-persisted:
			n.persistResults()
		default:
			return
		}
	}
}

// persistResults runs what the persist goroutine handed back.
func (n *Node) persistResults() {
	for _, f := range n.pipe.results() {
		f()
	}
}

func (n *Node) step(msgs []inbound) {
	for _, in := range msgs {
		if n.failErr.Load() != nil {
			return
		}
		m := in.m
		if err := n.checkInbound(in); err != nil {
			if errors.Is(err, ErrDataLoss) {
				n.fail(err)
				return
			}
			n.refused(in.sender, m.GetTerm(), err)
			continue
		}
		if _, gone := n.removedPeers[in.sender]; gone {
			n.farewellAck(m)
			continue
		}
		if !n.admitStamps(m) {
			continue
		}
		if err := n.rn.Step(m); err != nil {
			continue // unknown peer, local message type: dropped
		}
		if m.GetFrom() == n.leaderID() && m.GetTerm() == n.rn.BasicStatus().HardState.GetTerm() {
			switch m.GetType() {
			case raftpb.MsgHeartbeat, raftpb.MsgApp, raftpb.MsgSnap:
				st := n.rn.BasicStatus()
				n.stateMu.Lock()
				n.contactAt = n.cfg.Clock.Now()
				n.contactIdx = st.HardState.GetCommit()
				n.stateMu.Unlock()
			}
		}
	}
}

func (n *Node) leaderID() uint64 {
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	return n.leader
}

// submitProposals hands queued proposals to raft as one batch.
func (n *Node) submitProposals() {
	if n.rn.BasicStatus().Lead == 0 {
		// No leader to take them: they stay queued (and can still be
		// withdrawn as never appended) until one is known.
		return
	}
	n.propMu.Lock()
	q := n.propQ
	n.propQ = nil
	var ents []*raftpb.Entry
	var batch []*proposal
	for _, p := range q {
		if p.cancel {
			continue
		}
		p.taken = true
		p.tick = n.tickCount
		if p.cc != nil {
			continue
		}
		ents = append(ents, &raftpb.Entry{Data: p.data})
		batch = append(batch, p)
	}
	n.propMu.Unlock()

	for _, p := range q {
		if p.cc == nil || p.cancel {
			continue
		}
		if err := n.rn.ProposeConfChange(p.cc); err != nil {
			n.dropProposal(p, err)
		}
	}
	if len(ents) == 0 {
		return
	}
	n.stats.proposals.Add(uint64(len(ents)))
	n.stats.proposalBatches.Add(1)
	if err := n.stampEntries(ents); err != nil {
		n.dropStamped(batch, err)
		return
	}
	err := n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.id), Entries: ents})
	if err != nil {
		for _, p := range batch {
			n.dropProposal(p, err)
		}
	}
}

// resubmit hands raft again the proposals that were forwarded but never
// reached this member's log (a forward to a leader that died, or lost on
// the way) and those whose entry was overwritten by a new leader. Every
// copy carries the same (epoch, seq), and the apply loop applies only the
// first copy that commits, so this never applies a command twice. Without
// all, only lost proposals and those older than an election timeout are
// resent.
func (n *Node) resubmit(all bool) {
	if n.rn.BasicStatus().Lead == 0 {
		return // again once a leader is known (softStateChanged)
	}
	n.lostEntries.Store(false)
	n.propMu.Lock()
	var ents []*raftpb.Entry
	for _, p := range n.waiters {
		if !p.taken || p.cc != nil || p.index != 0 {
			continue
		}
		if !all && !p.lost && n.tickCount-p.tick < uint64(n.cfg.ElectionTicks) {
			continue
		}
		p.tick = n.tickCount
		p.lost = false
		ents = append(ents, &raftpb.Entry{Data: p.data})
	}
	n.propMu.Unlock()
	if len(ents) == 0 {
		return
	}
	n.stats.resubmitted.Add(uint64(len(ents)))
	if n.stampEntries(ents) != nil {
		return // again next round, perhaps to another leader
	}
	// A refusal (a leader over its uncommitted limit, say) leaves them
	// waiting for the next round.
	_ = n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.id), Entries: ents})
}

func (n *Node) dropProposal(p *proposal, err error) {
	n.propMu.Lock()
	_, waiting := n.waiters[p.seq]
	delete(n.waiters, p.seq)
	n.propMu.Unlock()
	if waiting {
		n.stats.dropped.Add(1)
		if n.removed.Load() {
			err = ErrRemoved
		}
		p.finish(nil, fmt.Errorf("%w: %w", ErrDropped, err))
	}
}

func (n *Node) handleReady() error {
	rd := n.rn.Ready()
	if rd.SoftState != nil {
		n.softStateChanged(rd.SoftState)
	}
	if rd.HardState != nil {
		n.lastHS = rd.HardState
		n.stateMu.Lock()
		termChanged := n.term != rd.HardState.GetTerm()
		n.term = rd.HardState.GetTerm()
		n.vote = rd.HardState.GetVote()
		n.commit = rd.HardState.GetCommit()
		if termChanged {
			close(n.leaderChange)
			n.leaderChange = make(chan struct{})
		}
		n.stateMu.Unlock()
	}
	n.registerEntries(rd.Entries)
	if !raft.IsEmptySnap(rd.Snapshot) {
		n.lastIdx = rd.Snapshot.GetMetadata().GetIndex()
	}
	if len(rd.Entries) > 0 {
		n.lastIdx = rd.Entries[len(rd.Entries)-1].GetIndex()
	}
	n.observeStamps(rd.Entries)
	if n.pipe != nil {
		n.handleReadyPipelined(rd)
		return nil
	}

	leader := n.rn.BasicStatus().RaftState == raft.StateLeader
	if leader {
		// The leader may replicate before its own write completes: its
		// own acknowledgement is only counted on Advance (Raft thesis
		// 10.2.1). For the same reason every entry it sees committed was
		// persisted by an earlier Ready, so applying starts now, while
		// this Ready's entries are being written.
		n.send(rd.Messages)
		n.dispatchCommitted(rd)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.logs.SetSnapshot(rd.Snapshot.GetMetadata()); err != nil {
			return fmt.Errorf("consensus: persist snapshot: %w", err)
		}
	}
	if len(rd.Entries) > 0 || rd.HardState != nil || !raft.IsEmptySnap(rd.Snapshot) {
		sync := rd.MustSync || len(rd.Entries) > 0 || !raft.IsEmptySnap(rd.Snapshot)
		start := time.Now()
		if err := n.logs.Save(rd.Entries, n.lastHS, sync); err != nil {
			return fmt.Errorf("consensus: persist log: %w", err)
		}
		if sync {
			n.persistedCommit = n.lastHS.GetCommit()
			n.stats.observeSync(time.Since(start), len(rd.Entries))
		}
	}
	if !leader {
		// Followers and candidates apply committed membership changes and
		// then send, only after persisting: their acknowledgements and
		// votes promise durability, and raft may hand them committed
		// entries from this very Ready.
		n.dispatchCommitted(rd)
		n.send(rd.Messages)
	}
	n.rn.Advance(rd)
	return nil
}

// dispatchCommitted applies committed membership changes to raft, resolves
// read states and queues committed entries (and any snapshot) for the apply
// loop.
func (n *Node) dispatchCommitted(rd raft.Ready) {
	confs := n.applyConfChanges(rd.CommittedEntries)
	n.resolveReads(rd.ReadStates)
	if len(n.farewells) > 0 {
		n.send(n.farewells)
		n.farewells = nil
	}
	if !raft.IsEmptySnap(rd.Snapshot) || len(rd.CommittedEntries) > 0 {
		item := applyItem{ents: rd.CommittedEntries, confs: confs}
		if !raft.IsEmptySnap(rd.Snapshot) {
			item.snap = rd.Snapshot.GetMetadata()
		}
		n.applyMu.Lock()
		n.applyQ = append(n.applyQ, item)
		n.applyMu.Unlock()
		wake(n.applyC)
	}
}

func (n *Node) softStateChanged(ss *raft.SoftState) {
	n.stateMu.Lock()
	changed := n.leader != ss.Lead
	n.leader = ss.Lead
	n.role = ss.RaftState
	term := n.term
	if changed {
		close(n.leaderChange)
		n.leaderChange = make(chan struct{})
	}
	n.stateMu.Unlock()
	if changed && ss.Lead != 0 {
		n.resubmit(true)
		wake(n.propC) // proposals held while there was no leader
	}
	if changed {
		n.stats.leaderChanges.Add(1)
		n.log.Info("consensus: leader changed", "leader", ss.Lead, "term", term, "role", ss.RaftState.String())
		n.emit(Event{Kind: EventLeaderChanged, Leader: ss.Lead, Term: term})
	}
	if ss.RaftState != raft.StateLeader && ss.Lead == 0 {
		// Reads in flight will be retried with fresh contexts on the
		// next tick.
		_ = ss
	}
}

// registerEntries notes the log index of each of our proposals as it enters
// the log, so that if a different entry commits at that index the proposer
// learns at once that its proposal was dropped.
func (n *Node) registerEntries(ents []*raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	n.propMu.Lock()
	defer n.propMu.Unlock()
	if len(n.waiters) == 0 {
		return
	}
	for _, e := range ents {
		var data []byte
		switch e.GetType() {
		case raftpb.EntryNormal:
			data = e.GetData()
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if proto.Unmarshal(e.GetData(), &cc) != nil {
				continue
			}
			data = cc.GetContext()
		default:
			continue
		}
		h, _, err := decodeEntry(data)
		if err != nil || h.epoch != n.epoch {
			continue
		}
		if p := n.waiters[h.seq]; p != nil {
			n.byIndex[e.GetIndex()] = h.seq
			p.index = e.GetIndex()
		}
	}
}

// applyConfChanges applies committed membership changes to raft before any
// message of this Ready is sent (a follower must not count votes of removed
// members), and tells the transport about new and removed peers.
func (n *Node) applyConfChanges(ents []*raftpb.Entry) map[uint64]confApplied {
	var out map[uint64]confApplied
	for _, e := range ents {
		var cc raftpb.ConfChangeI
		switch e.GetType() {
		case raftpb.EntryConfChange:
			var c raftpb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &c); err != nil {
				n.fail(fmt.Errorf("consensus: entry %d: bad conf change: %w", e.GetIndex(), err))
				return out
			}
			cc = &c
		case raftpb.EntryConfChangeV2:
			var c raftpb.ConfChangeV2
			if err := proto.Unmarshal(e.GetData(), &c); err != nil {
				n.fail(fmt.Errorf("consensus: entry %d: bad conf change: %w", e.GetIndex(), err))
				return out
			}
			cc = &c
		default:
			continue
		}
		v2 := cc.AsV2()
		n.farewell(v2)
		cs := n.rn.ApplyConfChange(cc)
		ca := confApplied{cs: proto.Clone(cs).(*raftpb.ConfState)}
		var added []Member
		if h, body, err := decodeEntry(v2.GetContext()); err == nil && h.kind == entryConfChange {
			added, _ = decodeMembers(bytesReader(body))
		}
		addrOf := make(map[uint64]string, len(added))
		for _, m := range added {
			addrOf[m.ID] = m.Addr
		}
		for _, ch := range v2.GetChanges() {
			id := ch.GetNodeId()
			switch ch.GetType() {
			case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
				addr := addrOf[id]
				if addr == "" {
					// A change that names no address (a promotion, say)
					// keeps the one the member already has.
					addr = n.addrs[id]
				}
				if _, known := n.addrs[id]; !known {
					n.snapNeeded.Store(true)
					n.snapNeededIdx = max(n.snapNeededIdx, e.GetIndex())
					ca.forceSnap = true
				}
				n.addrs[id] = addr
				ca.members = append(ca.members, Member{ID: id, Addr: addr, Learner: ch.GetType() == raftpb.ConfChangeAddLearnerNode})
				if id != n.id {
					delete(n.removedPeers, id)
					n.tr.AddPeer(id, addr)
				}
			case raftpb.ConfChangeRemoveNode:
				ca.removed = append(ca.removed, id)
			}
		}
		// Peers leave the transport only once they are out of the config
		// entirely (a joint config still needs the outgoing voters).
		inConf := make(map[uint64]bool)
		for _, set := range [][]uint64{cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing(), cs.GetLearnersNext()} {
			for _, id := range set {
				inConf[id] = true
			}
		}
		for id := range n.addrs {
			if !inConf[id] {
				delete(n.addrs, id)
				if id == n.id {
					n.removed.Store(true)
					n.log.Warn("consensus: this member was removed from the group")
				} else {
					// The transport keeps the peer a little longer, so
					// that the messages already queued for it and the
					// farewell tell it that it was removed.
					if n.removedPeers == nil {
						n.removedPeers = make(map[uint64]uint64)
					}
					n.removedPeers[id] = n.tickCount + uint64(n.cfg.ElectionTicks)
				}
			}
		}
		n.stateMu.Lock()
		n.confState = ca.cs
		n.stateMu.Unlock()
		if out == nil {
			out = make(map[uint64]confApplied)
		}
		out[e.GetIndex()] = ca
	}
	return out
}

// farewell, on the leader, prepares a heartbeat for each voter or learner
// that cc removes, carrying the commit index as far as that member's log is
// known to match. raft stops replicating to a member once the change that
// removes it is applied, and the message that would have told it the
// change committed may never have left (its flow was paused, say): without
// this it would never apply its own removal and would wait, leaderless,
// forever.
func (n *Node) farewell(cc *raftpb.ConfChangeV2) {
	if !slices.ContainsFunc(cc.GetChanges(), func(ch *raftpb.ConfChangeSingle) bool {
		return ch.GetType() == raftpb.ConfChangeRemoveNode && ch.GetNodeId() != n.id
	}) {
		return
	}
	st := n.rn.Status()
	if st.RaftState != raft.StateLeader {
		return
	}
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		if ch.GetType() != raftpb.ConfChangeRemoveNode || id == n.id {
			continue
		}
		if pr, ok := st.Progress[id]; ok {
			n.farewells = append(n.farewells, n.commitNotice(id, pr.Match, st.HardState))
		}
	}
}

// farewellAck answers a member removed here that acknowledges entries
// (raft no longer tracks it) with the commit index as far as its log
// matches, so that it learns of its removal even if it had not yet received
// the change when the change was applied.
func (n *Node) farewellAck(m *raftpb.Message) {
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || m.GetType() != raftpb.MsgAppResp || m.GetReject() ||
		m.GetTerm() != st.HardState.GetTerm() {
		return
	}
	n.send([]*raftpb.Message{n.commitNotice(m.GetFrom(), m.GetIndex(), st.HardState)})
}

// commitNotice is a heartbeat from this leader (at hs's term) telling
// member to how far the log is committed, up to match: the index to which
// its log is known to match the leader's, beyond which raft must not
// advance its commit.
func (n *Node) commitNotice(to, match uint64, hs *raftpb.HardState) *raftpb.Message {
	return &raftpb.Message{
		Type:   raftpb.MsgHeartbeat.Enum(),
		To:     new(to),
		From:   new(n.id),
		Term:   new(hs.GetTerm()),
		Commit: new(min(match, hs.GetCommit())),
	}
}

// dropRemovedPeers takes members removed an election timeout ago out of
// the transport.
func (n *Node) dropRemovedPeers() {
	for id, at := range n.removedPeers {
		if n.tickCount >= at {
			delete(n.removedPeers, id)
			n.tr.RemovePeer(id)
		}
	}
}

// send marshals msgs on the raft goroutine (raft may reuse entries after
// this Ready) and hands them to the transport. Snapshots go out of band.
func (n *Node) send(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			n.sendSnapshot(m)
			continue
		}
		b, err := n.marshal(m)
		if err != nil {
			n.log.Error("consensus: marshal message", "err", err)
			continue
		}
		// From is this member even where raft's message names another
		// (a forwarded MsgTransferLeader names the transferee).
		out = append(out, Message{From: n.id, To: m.GetTo(), Kind: kindOf(m.GetType()), Payload: b})
	}
	if len(out) > 0 {
		n.stats.msgsSent.Add(uint64(len(out)))
		n.tr.Send(out)
	}
}

// marshal encodes m in this member's envelope.
func (n *Node) marshal(m *raftpb.Message) ([]byte, error) {
	b := appendEnvelope(make([]byte, 0, envelopeLen+proto.Size(m)), n.cfg.GroupID, n.inc)
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

func kindOf(t raftpb.MessageType) MessageKind {
	switch t {
	case raftpb.MsgApp, raftpb.MsgAppResp:
		return KindAppend
	case raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp:
		return KindHeartbeat
	case raftpb.MsgSnap:
		return KindSnapshot
	}
	return KindOther
}

// handler is the Handler the node gives its transport.
type handler struct{ n *Node }

func (h handler) HandleMessages(msgs []Message) {
	n := h.n
	out := make([]inbound, 0, len(msgs))
	for _, wm := range msgs {
		in, err := decodeInbound(n.id, n.cfg.GroupID, wm)
		if err != nil {
			n.refused(wm.From, in.m.GetTerm(), err)
			continue
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		return
	}
	select {
	case n.recvC <- out:
		n.stats.msgsRecv.Add(uint64(len(out)))
	case <-n.stopC:
	default:
		n.stats.msgsDropped.Add(uint64(len(out)))
	}
}

func (h handler) Unreachable(id uint64) {
	n := h.n
	select {
	case n.opC <- func() { n.rn.ReportUnreachable(id) }:
	default: // the next failed send reports again
	}
}

func (h handler) HandleSnapshot(ctx context.Context, wm Message, body io.Reader) error {
	n := h.n
	m, inc, err := decodeEnvelopedMessage(n.cfg.GroupID, wm.Payload)
	if err == nil && m.GetType() != raftpb.MsgSnap {
		err = errRefused("%v in a snapshot stream", m.GetType())
	}
	if err == nil {
		err = checkStatic(n.id, wm.From, m)
	}
	if err == nil {
		err = n.snapshotSenderOK(m.GetFrom(), inc)
	}
	if err != nil {
		n.refused(wm.From, m.GetTerm(), err)
		return fmt.Errorf("consensus: snapshot header: %w", err)
	}
	select {
	case <-n.stopC:
		return n.stoppedErr()
	default:
	}
	meta := m.GetSnapshot().GetMetadata()
	w, err := n.snaps.Create(meta)
	if err != nil {
		return fmt.Errorf("consensus: store snapshot: %w", err)
	}
	// Our own header is checked as it streams by: a snapshot that cannot
	// be restored must not reach raft, which would install it.
	in := ctxReader{ctx, body}
	if _, _, err := decodeSnapshotHeader(newSnapshotReader(io.TeeReader(in, w)), n.cfg.MaxEntryBytes+maxRequestIDLen); err != nil {
		w.Abort()
		n.refused(m.GetFrom(), m.GetTerm(), fmt.Errorf("%w: snapshot %d: %w", ErrRefused, meta.GetIndex(), err))
		return fmt.Errorf("consensus: receive snapshot: %w", err)
	}
	if _, err := io.Copy(w, in); err != nil {
		w.Abort()
		return fmt.Errorf("consensus: receive snapshot: %w", err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("consensus: store snapshot: %w", err)
	}
	n.stats.snapshotsReceived.Add(1)
	n.emit(Event{Kind: EventSnapshotReceived, Index: meta.GetIndex(), Peer: m.GetFrom()})
	select {
	case n.recvC <- []inbound{{m: m, inc: inc, sender: wm.From}}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return n.stoppedErr()
	}
}

// snapshotSenderOK checks a snapshot's sender before the stream is stored
// (transport goroutine): a member whose recorded incarnation it carries,
// or the leader this member follows, or anyone while it follows no one (a
// member being added knows no members yet). The raft loop checks the
// header again, fully, before raft sees it.
func (n *Node) snapshotSenderOK(from, inc uint64) error {
	if want, ok := n.incarnations()[from]; ok && want != inc {
		return fmt.Errorf("%w: %w: member %d sent incarnation %d, the group knows it as %d",
			ErrRefused, ErrMemberLostState, from, inc, want)
	}
	n.stateMu.Lock()
	_, member := n.members[from]
	lead := n.leader
	n.stateMu.Unlock()
	if !member && lead != 0 && lead != from {
		return errRefused("snapshot from %d, which is not a member", from)
	}
	return nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// sendSnapshot streams the snapshot a MsgSnap refers to, on its own
// goroutine, and reports the outcome to raft whatever it is.
func (n *Node) sendSnapshot(m *raftpb.Message) {
	to := m.GetTo()
	if n.snapSends[to] {
		n.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	hdr, err := n.marshal(m)
	if err != nil {
		n.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	n.snapSends[to] = true
	index := m.GetSnapshot().GetMetadata().GetIndex()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-n.stopC:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := func() error {
			_, rc, err := n.snaps.Open(index)
			if err != nil {
				return err
			}
			defer rc.Close()
			return n.tr.SendSnapshot(ctx, Message{From: n.id, To: to, Kind: KindSnapshot, Payload: hdr}, rc)
		}()
		status := raft.SnapshotFinish
		if err != nil {
			status = raft.SnapshotFailure
			n.stats.snapshotSendFailures.Add(1)
			n.log.Warn("consensus: snapshot send failed", "to", to, "index", index, "err", err)
		} else {
			n.stats.snapshotsSent.Add(1)
			n.emit(Event{Kind: EventSnapshotSent, Index: index, Peer: to})
		}
		n.post(func() {
			delete(n.snapSends, to)
			n.rn.ReportSnapshot(to, status)
		})
	}()
}

// snapshotTaken records a snapshot the apply loop wrote and compacts the log.
func (n *Node) snapshotTaken(d snapshotDone) {
	n.snapRunning.Store(false)
	wake(n.applyC) // a forced snapshot may be waiting for this one
	if d.err != nil {
		// raft falls back to the previous snapshot; the next membership
		// change or threshold takes a new one.
		n.snapNeeded.Store(false)
		n.log.Warn("consensus: snapshot failed", "err", d.err)
		return
	}
	if n.pipe != nil {
		// Recorded by the persist goroutine, in order with the writes
		// queued before it.
		n.pipe.push(persistJob{snap: d.meta}, n.stopC)
		return
	}
	if n.persistedCommit < d.meta.GetIndex() {
		// A restart must never find a snapshot beyond its commit index.
		if err := n.logs.Append(nil, n.lastHS); err != nil {
			n.fail(fmt.Errorf("consensus: persist state: %w", err))
			return
		}
		n.persistedCommit = n.lastHS.GetCommit()
	}
	if err := n.logs.SetSnapshot(d.meta); err != nil {
		n.fail(fmt.Errorf("consensus: record snapshot: %w", err))
		return
	}
	idx := d.meta.GetIndex()
	n.snaps.Prune(idx)
	if idx > n.cfg.TrailingEntries {
		if err := n.logs.Compact(idx - n.cfg.TrailingEntries); err != nil {
			n.fail(fmt.Errorf("consensus: compact log: %w", err))
			return
		}
	}
	n.snapshotRecorded(d.meta)
}

// snapshotRecorded runs on the raft loop once the log records a snapshot
// taken here.
func (n *Node) snapshotRecorded(meta *raftpb.SnapshotMetadata) {
	idx := meta.GetIndex()
	if idx >= n.snapNeededIdx {
		n.snapNeeded.Store(false)
	}
	n.stats.snapshotsTaken.Add(1)
	n.log.Debug("consensus: snapshot taken", "index", idx)
	n.emit(Event{Kind: EventSnapshotTaken, Index: idx})
}

// raftStorage is the Storage raft reads.
type raftStorage struct {
	logStore
	n *Node
}

func (s raftStorage) Snapshot() (*raftpb.Snapshot, error) {
	if s.n.snapNeeded.Load() {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return s.logStore.Snapshot()
}

// raftLogger routes raft's logging to slog.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Info(v ...any)                  { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...any)  { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Warning(v ...any)               { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r raftLogger) Fatal(v ...any)                 { r.Panic(v...) }
func (r raftLogger) Fatalf(format string, v ...any) { r.Panicf(format, v...) }
func (r raftLogger) Panic(v ...any) {
	s := fmt.Sprint(v...)
	r.l.Error(s)
	panic(s)
}
func (r raftLogger) Panicf(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	r.l.Error(s)
	panic(s)
}
