package consensus

import (
	"bytes"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// runApply feeds committed entries to the state machine, in order, off the
// raft goroutine, so a slow Apply never delays heartbeats.
func (n *Node) runApply(ap *applyState) {
	defer n.wg.Done()
	for {
		select {
		case <-n.stopC:
			return
		case <-n.applyC:
		}
		for {
			n.applyMu.Lock()
			q := n.applyQ
			n.applyQ = nil
			n.applyMu.Unlock()
			if len(q) == 0 {
				if ap.forceSnap {
					n.maybeSnapshot(ap)
				}
				break
			}
			for _, it := range q {
				if err := n.applyItem(ap, it); err != nil {
					n.fail(err)
					return
				}
				select {
				case <-n.stopC:
					return
				default:
				}
			}
		}
	}
}

// pendingResult links a command in the batch to the waiter it answers.
type pendingResult struct {
	cmd   int    // index into cmds, or -1
	dup   int    // for an in-batch duplicate request id: the first's cmd index
	seq   uint64 // our proposal to answer, if ours
	ours  bool
	reqID string
	index uint64
	saved *dedupResult // answered from the dedup window
	drop  bool         // refused as a stale duplicate
}

func (n *Node) applyItem(ap *applyState, it applyItem) error {
	if it.snap != nil && it.snap.GetIndex() > ap.applied {
		if err := n.restore(ap, it.snap); err != nil {
			return err
		}
		n.snaps.Prune(ap.applied)
		n.forgetBelow(ap.applied)
		n.restoredMembers(ap.rs.members)
		n.observeStamp(ap.rs.ts)
		n.publishApplied(ap.applied)
		n.emit(Event{Kind: EventSnapshotRestored, Index: ap.applied})
	}
	var cmds []Command
	var results []pendingResult
	inBatch := map[string]int{}
	var last uint64
	for _, e := range it.ents {
		idx := e.GetIndex()
		if idx <= ap.applied {
			continue
		}
		last = idx
		ap.term = e.GetTerm()
		ap.sinceSnap++
		switch e.GetType() {
		case raftpb.EntryNormal:
			data := e.GetData()
			if len(data) == 0 {
				n.checkOverwritten(idx, 0, false)
				continue
			}
			ap.bytesSnap += uint64(len(data))
			h, body, err := decodeEntry(data)
			if err == nil && h.kind == entryIncarnation {
				n.checkOverwritten(idx, 0, false)
				n.applyIncarnation(ap, body)
				continue
			}
			if err != nil || h.kind != entryCommand {
				// Not ours to interpret: hand it over as it is.
				n.checkOverwritten(idx, 0, false)
				cmds = append(cmds, Command{Index: idx, Term: e.GetTerm(), Data: data})
				continue
			}
			if ap.rs.ts.Less(h.ts) {
				ap.rs.ts = h.ts
			}
			ours := h.epoch == n.epoch
			n.checkOverwritten(idx, h.seq, ours)
			pr := pendingResult{cmd: -1, dup: -1, seq: h.seq, ours: ours, reqID: h.reqID, index: idx}
			if !ap.rs.sess.admit(h.epoch, h.seq) {
				// A duplicate delivery of a proposal already applied
				// (answered then), or one too old to judge.
				if ours {
					pr.drop = true
					results = append(results, pr)
				}
				continue
			}
			if h.reqID != "" {
				if r, ok := ap.rs.dedup.get(h.reqID); ok {
					pr.saved = &r
					results = append(results, pr)
					continue
				}
				if first, ok := inBatch[h.reqID]; ok {
					pr.dup = first
					results = append(results, pr)
					continue
				}
				inBatch[h.reqID] = len(cmds)
			}
			pr.cmd = len(cmds)
			cmds = append(cmds, Command{Index: idx, Term: e.GetTerm(), Data: body, Timestamp: h.ts})
			results = append(results, pr)
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			ca, ok := it.confs[idx]
			if !ok {
				return fmt.Errorf("consensus: entry %d: conf change without state: %w", idx, ErrCorrupt)
			}
			ap.confState = ca.cs
			ap.forceSnap = ap.forceSnap || ca.forceSnap
			n.applyMembers(ap, ca)
			var ctx []byte
			if e.GetType() == raftpb.EntryConfChangeV2 {
				var cc raftpb.ConfChangeV2
				if proto.Unmarshal(e.GetData(), &cc) == nil {
					ctx = cc.GetContext()
				}
			}
			h, _, err := decodeEntry(ctx)
			ours := err == nil && h.epoch == n.epoch
			n.checkOverwritten(idx, h.seq, ours)
			if ours {
				results = append(results, pendingResult{cmd: -1, dup: -1, seq: h.seq, ours: true, index: idx})
			}
			n.emit(Event{Kind: EventMembershipChanged, Index: idx, Members: ap.rs.members})
		}
	}
	if len(cmds) > 0 {
		if err := n.sm.Apply(cmds); err != nil {
			return fmt.Errorf("consensus: state machine apply at %d..%d: %w", cmds[0].Index, cmds[len(cmds)-1].Index, err)
		}
		n.stats.applied.Add(uint64(len(cmds)))
		n.stats.applyBatches.Add(1)
	}
	// Record request ids before answering, in log order.
	for _, pr := range results {
		if pr.reqID == "" || pr.cmd < 0 {
			continue
		}
		c := &cmds[pr.cmd]
		r := dedupResult{index: c.Index, result: bytes.Clone(c.Result)}
		if c.Err != nil {
			r.isErr, r.errMsg, r.result = true, c.Err.Error(), nil
		}
		ap.rs.dedup.put(pr.reqID, r)
	}
	if last > ap.applied {
		ap.applied = last
	}
	n.publishApplied(ap.applied)
	n.answer(cmds, results)
	if ap.forceSnap || (ap.applied > ap.snapIndex && (ap.sinceSnap >= n.cfg.SnapshotEntries || ap.bytesSnap >= n.cfg.SnapshotBytes)) {
		n.maybeSnapshot(ap)
	}
	return nil
}

// checkOverwritten handles the proposal that was seen at idx if the entry
// now committed there is a different one. A membership change then can
// never commit (it is never proposed twice) and fails with ErrDropped. A
// command may still commit through another copy (a forward duplicated or
// delayed on its way to a later leader, or a resubmission), so it is
// proposed again: whichever copy commits first applies, once.
func (n *Node) checkOverwritten(idx, seq uint64, ours bool) {
	n.propMu.Lock()
	s, ok := n.byIndex[idx]
	if !ok {
		n.propMu.Unlock()
		return
	}
	delete(n.byIndex, idx)
	var p *proposal
	if !ours || s != seq {
		p = n.waiters[s]
		switch {
		case p == nil || p.index != idx:
			p = nil
		case p.cc == nil:
			n.proposeAgainLocked(p)
			p = nil
		default:
			delete(n.waiters, s)
		}
	}
	n.propMu.Unlock()
	if p != nil {
		n.stats.dropped.Add(1)
		p.finish(nil, fmt.Errorf("%w: another entry committed at index %d", ErrDropped, idx))
	}
}

// proposeAgainLocked marks command p, whose entry is no longer in the log,
// for the raft loop to propose again on its next tick. propMu is held.
func (n *Node) proposeAgainLocked(p *proposal) {
	p.index, p.lost = 0, true
	n.lostEntries.Store(true)
}

// forgetBelow handles this member's proposals seen in the log at or below
// a snapshot just installed: their entries were not applied one by one, so
// whether they are part of the snapshot is unknown. Commands are proposed
// again (a copy of one already applied is recognized as a duplicate and
// answered with ErrUnknownOutcome); membership changes fail with
// ErrUnknownOutcome.
func (n *Node) forgetBelow(index uint64) {
	var unknown []*proposal
	n.propMu.Lock()
	for idx, s := range n.byIndex {
		if idx > index {
			continue
		}
		delete(n.byIndex, idx)
		p := n.waiters[s]
		if p == nil || p.index != idx {
			continue
		}
		if p.cc != nil {
			delete(n.waiters, s)
			unknown = append(unknown, p)
			continue
		}
		n.proposeAgainLocked(p)
	}
	n.propMu.Unlock()
	for _, p := range unknown {
		n.stats.unknown.Add(1)
		p.finish(nil, fmt.Errorf("%w: snapshot installed over index %d", ErrUnknownOutcome, index))
	}
}

// answer completes this member's proposals in the batch.
func (n *Node) answer(cmds []Command, results []pendingResult) {
	for _, pr := range results {
		if !pr.ours {
			continue
		}
		n.propMu.Lock()
		p := n.waiters[pr.seq]
		delete(n.waiters, pr.seq)
		n.propMu.Unlock()
		if p == nil {
			continue
		}
		p.index = pr.index
		switch {
		case pr.drop:
			// A copy of a command applied before (inside a snapshot this
			// member installed, or too long ago to tell): its result is
			// not known here.
			n.stats.unknown.Add(1)
			p.finish(nil, fmt.Errorf("%w: duplicate of a command applied earlier", ErrUnknownOutcome))
		case pr.saved != nil:
			p.index = pr.saved.index
			if pr.saved.isErr {
				p.finish(nil, &CommandError{Msg: pr.saved.errMsg})
			} else {
				p.finish(pr.saved.result, nil)
			}
		case pr.dup >= 0:
			c := cmds[pr.dup]
			p.index = c.Index
			if c.Err != nil {
				p.finish(nil, &CommandError{Msg: c.Err.Error()})
			} else {
				p.finish(c.Result, nil)
			}
		case pr.cmd >= 0:
			c := cmds[pr.cmd]
			p.finish(c.Result, c.Err)
		default:
			p.finish(nil, nil) // membership change
		}
	}
}

func (n *Node) publishApplied(idx uint64) {
	if n.applied.Load() == idx {
		return
	}
	n.applied.Store(idx)
	n.appliedMu.Lock()
	close(n.appliedCh)
	n.appliedCh = make(chan struct{})
	n.appliedMu.Unlock()
	n.emit(Event{Kind: EventApplied, Index: idx})
}

// applyMembers updates the replicated member list (with addresses).
func (n *Node) applyMembers(ap *applyState, ca confApplied) {
	byID := make(map[uint64]Member, len(ap.rs.members))
	for _, m := range ap.rs.members {
		byID[m.ID] = m
	}
	for _, m := range ca.members {
		if old, ok := byID[m.ID]; ok && m.Addr == "" {
			m.Addr = old.Addr
		}
		byID[m.ID] = m
	}
	for _, id := range ca.removed {
		delete(byID, id)
	}
	learners := map[uint64]bool{}
	for _, id := range ca.cs.GetLearners() {
		learners[id] = true
	}
	for _, id := range ca.cs.GetLearnersNext() {
		learners[id] = true
	}
	ms := make([]Member, 0, len(byID))
	for _, m := range byID {
		m.Learner = learners[m.ID]
		ms = append(ms, m)
	}
	sortMembers(ms)
	ap.rs.members = ms
	n.stateMu.Lock()
	n.members = make(map[uint64]Member, len(ms))
	for _, m := range ms {
		n.members[m.ID] = m
	}
	n.stateMu.Unlock()
}

// restoredMembers makes a member list learned from a snapshot current.
func (n *Node) restoredMembers(ms []Member) {
	n.stateMu.Lock()
	n.members = make(map[uint64]Member, len(ms))
	for _, m := range ms {
		n.members[m.ID] = m
	}
	n.stateMu.Unlock()
	n.post(func() {
		for _, m := range ms {
			if _, ok := n.addrs[m.ID]; !ok || n.addrs[m.ID] != m.Addr {
				n.addrs[m.ID] = m.Addr
				if m.ID != n.id {
					n.tr.AddPeer(m.ID, m.Addr)
				}
			}
		}
	})
}

// maybeSnapshot captures the state machine and writes the snapshot on its
// own goroutine; the raft loop then compacts the log.
func (n *Node) maybeSnapshot(ap *applyState) {
	if !n.snapRunning.CompareAndSwap(false, true) {
		return
	}
	sw, err := n.sm.Snapshot()
	if err != nil {
		n.snapRunning.Store(false)
		n.log.Warn("consensus: state machine snapshot failed", "err", err)
		return
	}
	meta := &raftpb.SnapshotMetadata{
		Index:     new(ap.applied),
		Term:      new(ap.term),
		ConfState: proto.Clone(ap.confState).(*raftpb.ConfState),
	}
	hdr := encodeSnapshotHeader(ap.rs, false)
	ap.forceSnap = false
	ap.snapIndex = ap.applied
	ap.sinceSnap, ap.bytesSnap = 0, 0
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := func() error {
			defer sw.Release()
			w, err := n.snaps.Create(meta)
			if err != nil {
				return err
			}
			if _, err := w.Write(hdr); err != nil {
				w.Abort()
				return err
			}
			if _, err := sw.WriteTo(w); err != nil {
				w.Abort()
				return err
			}
			return w.Commit()
		}()
		select {
		case n.snapDoneC <- snapshotDone{meta: meta, err: err}:
		case <-n.stopC:
		}
	}()
}
