package consensus

import (
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The pipelined storage mode (StoragePipelined) runs raft with
// AsyncStorageWrites. Each Ready hands the log writes to a dedicated
// goroutine as a MsgStorageAppend (entries, hard state, snapshot marker, and
// the messages that may only leave once those are durable). The persist
// goroutine takes every message queued since its last write, writes them as
// one batch with one sync, and hands the responses back to the raft loop,
// which steps the local ones into raft and sends the rest. Meanwhile the raft
// loop keeps running and queues the next batch. Committed entries arrive as a
// MsgStorageApply, which the raft loop hands to the apply loop and
// acknowledges at once, as the inline mode does on Advance. Raft hands out
// for applying only entries this member has already made durable, and
// messages that promise durability (append acknowledgements, votes) travel
// as responses of the write that covers them.
//
// Local proposals wait while a write with entries is in flight (up to
// heldProposalsMax of them) and go to raft together when a write with
// entries completes: the raft loop stays free for acknowledgements and
// reads, and each sync still covers a large batch.

// pipeline is the queue between the raft loop and the persist goroutine.
type pipeline struct {
	limit int // queued bytes beyond which the raft loop waits

	mu     sync.Mutex
	jobs   []persistJob
	bytes  int
	workC  chan struct{} // wakes the persist goroutine
	spaceC chan struct{} // wakes a raft loop waiting for room

	outMu sync.Mutex
	out   []func()      // results to run on the raft loop, in order
	outC  chan struct{} // wakes the raft loop
}

// persistJob is one unit of the persist goroutine's work: a raft
// MsgStorageAppend, or a local snapshot to record in the log.
type persistJob struct {
	m    *raftpb.Message
	snap *raftpb.SnapshotMetadata
}

func newPipeline(limit int) *pipeline {
	return &pipeline{
		limit:  limit,
		workC:  make(chan struct{}, 1),
		spaceC: make(chan struct{}, 1),
		outC:   make(chan struct{}, 1),
	}
}

// push queues j for the persist goroutine. When the queue already holds
// more than the limit, it waits for the persist goroutine to take it, so a
// slow disk slows the raft loop down instead of growing memory without
// bound. It returns false if the node stopped while it waited.
func (p *pipeline) push(j persistJob, stopC <-chan struct{}) bool {
	size := 0
	if j.m != nil {
		for _, e := range j.m.GetEntries() {
			size += len(e.GetData())
		}
	}
	for {
		p.mu.Lock()
		if p.bytes <= p.limit || len(p.jobs) == 0 {
			p.jobs = append(p.jobs, j)
			p.bytes += size
			p.mu.Unlock()
			wake(p.workC)
			return true
		}
		p.mu.Unlock()
		select {
		case <-p.spaceC:
		case <-stopC:
			return false
		}
	}
}

// take removes and returns every queued job.
func (p *pipeline) take() []persistJob {
	p.mu.Lock()
	jobs := p.jobs
	p.jobs, p.bytes = nil, 0
	p.mu.Unlock()
	if len(jobs) > 0 {
		wake(p.spaceC)
	}
	return jobs
}

// deliver queues f to run on the raft loop; it never blocks.
func (p *pipeline) deliver(f func()) {
	p.outMu.Lock()
	p.out = append(p.out, f)
	p.outMu.Unlock()
	wake(p.outC)
}

// results removes and returns the queued results.
func (p *pipeline) results() []func() {
	p.outMu.Lock()
	out := p.out
	p.out = nil
	p.outMu.Unlock()
	return out
}

// persistState is the persist goroutine's view of the log.
type persistState struct {
	hs              *raftpb.HardState // the last hard state given to the log
	persistedCommit uint64            // commit index of the last synced hard state
}

// runPersist is the persist goroutine.
func (n *Node) runPersist(hs *raftpb.HardState) {
	defer n.wg.Done()
	st := &persistState{hs: hs, persistedCommit: hs.GetCommit()}
	for {
		select {
		case <-n.stopC:
			return
		case <-n.pipe.workC:
		}
		for {
			jobs := n.pipe.take()
			if len(jobs) == 0 {
				break
			}
			if err := n.persist(st, jobs); err != nil {
				n.fail(err)
				return
			}
		}
	}
}

// persist writes jobs in order, merging consecutive appends into one batch
// and one sync, and then hands their responses to the raft loop.
func (n *Node) persist(st *persistState, jobs []persistJob) error {
	var (
		ents    []*raftpb.Entry // owned here: never aliases raft's slices
		resps   []*raftpb.Message
		appends int  // jobs that carried entries
		dirty   bool // ents or st.hs hold something not yet written
		sync    bool // ...that must be synced
	)
	flush := func() error {
		if !dirty {
			return nil
		}
		start := time.Now()
		if err := n.logs.Save(ents, st.hs, sync); err != nil {
			return fmt.Errorf("consensus: persist log: %w", err)
		}
		if sync {
			st.persistedCommit = st.hs.GetCommit()
			n.stats.observeSync(time.Since(start), len(ents))
		}
		ents, dirty, sync = nil, false, false
		return nil
	}
	for _, j := range jobs {
		if j.snap != nil {
			if err := flush(); err != nil {
				return err
			}
			if err := n.recordSnapshot(st, j.snap); err != nil {
				return err
			}
			continue
		}
		m := j.m
		if !raft.IsEmptySnap(m.GetSnapshot()) {
			// A snapshot from the leader: its data is already in the
			// snapshot store; record it before the hard state that
			// commits it.
			if err := flush(); err != nil {
				return err
			}
			if err := n.logs.SetSnapshot(m.GetSnapshot().GetMetadata()); err != nil {
				return fmt.Errorf("consensus: persist snapshot: %w", err)
			}
			dirty, sync = true, true
		}
		if es := m.GetEntries(); len(es) > 0 {
			// Later entries replace earlier ones from the same index on
			// (a new leader's log), exactly as separate writes would.
			first := es[0].GetIndex()
			if len(ents) > 0 && first <= ents[len(ents)-1].GetIndex() {
				ents = ents[:max(0, int(first)-int(ents[0].GetIndex()))]
			}
			ents = append(ents, es...)
			dirty, sync = true, true
			appends++
		}
		if m.Term != nil {
			hs := &raftpb.HardState{Term: new(m.GetTerm()), Vote: new(m.GetVote()), Commit: new(m.GetCommit())}
			if hs.GetTerm() != st.hs.GetTerm() || hs.GetVote() != st.hs.GetVote() {
				sync = true
			}
			st.hs = hs
			dirty = true
		}
		resps = append(resps, m.GetResponses()...)
	}
	if err := flush(); err != nil {
		return err
	}
	if len(resps) > 0 || appends > 0 {
		n.pipe.deliver(func() {
			n.persisting -= appends
			n.stepLocal(resps)
			if appends > 0 && n.propHeld {
				// Held proposals wait for one write at most, even
				// if others are in flight by now.
				n.propHeld = false
				n.submitProposals()
			}
		})
	}
	return nil
}

// recordSnapshot records a snapshot the apply loop wrote and compacts the
// log, in order with the appends queued before it.
func (n *Node) recordSnapshot(st *persistState, meta *raftpb.SnapshotMetadata) error {
	idx := meta.GetIndex()
	if st.persistedCommit < idx {
		// A restart must never find a snapshot beyond its commit index.
		if err := n.logs.Append(nil, st.hs); err != nil {
			return fmt.Errorf("consensus: persist state: %w", err)
		}
		st.persistedCommit = st.hs.GetCommit()
	}
	if err := n.logs.SetSnapshot(meta); err != nil {
		return fmt.Errorf("consensus: record snapshot: %w", err)
	}
	n.snaps.Prune(idx)
	if idx > n.cfg.TrailingEntries {
		if err := n.logs.Compact(idx - n.cfg.TrailingEntries); err != nil {
			return fmt.Errorf("consensus: compact log: %w", err)
		}
	}
	n.pipe.deliver(func() { n.snapshotRecorded(meta) })
	return nil
}

// stepLocal runs on the raft loop: it steps the responses of a completed
// write that are addressed to this member and sends the others.
func (n *Node) stepLocal(resps []*raftpb.Message) {
	var out []*raftpb.Message
	for _, m := range resps {
		if m.GetTo() == n.id {
			_ = n.rn.Step(m) // a response from an older term is ignored
			continue
		}
		out = append(out, m)
	}
	n.send(out)
}

// handleReadyPipelined handles a Ready in the pipelined storage mode.
func (n *Node) handleReadyPipelined(rd raft.Ready) {
	var apply *raftpb.Message
	peers := rd.Messages[:0:0]
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			if !n.pipe.push(persistJob{m: m}, n.stopC) {
				return
			}
			if len(m.GetEntries()) > 0 {
				n.persisting++
			}
		case raft.LocalApplyThread:
			apply = m
		default:
			peers = append(peers, m)
		}
	}
	// Committed membership changes reach raft before any message of this
	// Ready leaves; raft hands out only entries already durable here.
	n.dispatchCommitted(rd)
	if apply != nil {
		for _, r := range apply.GetResponses() {
			_ = n.rn.Step(r)
		}
	}
	n.send(peers)
}

// heldProposalsMax is how many proposals may wait on this member, while its
// log write is in flight, before they are handed to raft anyway.
const heldProposalsMax = 128

// offerProposals hands queued proposals to raft, except that in the
// pipelined mode, while a log write is in flight and fewer than
// heldProposalsMax proposals wait, it holds them until a write completes:
// they then go out as one batch, one append message per follower and one
// sync, instead of a trickle of tiny ones. An idle member submits at once.
func (n *Node) offerProposals() {
	if n.pipe != nil && n.persisting > 0 {
		n.propMu.Lock()
		queued := len(n.propQ)
		n.propMu.Unlock()
		if queued < heldProposalsMax {
			n.propHeld = true
			return
		}
	}
	n.propHeld = false
	n.submitProposals()
}

// cloneHS copies a hard state (nil for none).
func cloneHS(hs *raftpb.HardState) *raftpb.HardState {
	if hs == nil {
		return &raftpb.HardState{}
	}
	return proto.Clone(hs).(*raftpb.HardState)
}
