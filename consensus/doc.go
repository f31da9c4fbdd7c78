// Package consensus replicates a state machine across a group of members
// with Raft (go.etcd.io/raft/v3), supplying everything the protocol library
// leaves out: durable storage, the Ready loop, an apply loop that returns
// results to proposers, linearizable reads, membership changes, snapshots
// and a pluggable transport.
//
// Use it when a few members (3 or 5) must agree on the order of writes and
// survive the loss of a minority: metadata stores, lock services,
// configuration, replicated queues. It is not a database: the state lives in
// the StateMachine you write.
//
// # Embedding a state machine
//
// Every member runs the same program:
//
//	type Counter struct{ n int64 }
//
//	func (c *Counter) Apply(cmds []consensus.Command) error {
//		for i := range cmds {
//			c.n += int64(cmds[i].Data[0])
//			cmds[i].Result = strconv.AppendInt(nil, c.n, 10)
//		}
//		return nil
//	}
//	// ...plus Snapshot and Restore (see StateMachine).
//
//	node, err := consensus.Start(consensus.Config{
//		ID:        1,
//		Dir:       "/var/lib/app/raft",
//		Bootstrap: []consensus.Member{{ID: 1, Addr: "10.0.0.1:7000"}, {ID: 2, Addr: "10.0.0.2:7000"}, {ID: 3, Addr: "10.0.0.3:7000"}},
//		Transport: transport, // a Transport; consensustest.Network in tests
//	}, &Counter{})
//	if err != nil { ... }
//	defer node.Close()
//
//	res, err := node.Propose(ctx, []byte{5}) // waits until applied here; res is Apply's Result
//
// # Your responsibilities
//
//  1. Give every member an ID that is non-zero and never reused, even after
//     the member is removed. Keep the member's Dir for its whole life; a
//     member whose Dir is lost must be removed and re-added under a new ID
//     (see "Identity and lost state"). Give every member of a group the same
//     Config.GroupID, and different groups different ones.
//  2. Bootstrap a new group once: start each initial member with the same
//     Config.Bootstrap list. Later starts ignore it. Start a member that
//     joins an existing group with no Bootstrap, then call AddVoter (or
//     AddLearner) on the leader.
//  3. Make Apply deterministic: the same commands in the same order must
//     produce the same state and results on every member. No clocks,
//     randomness, map iteration order or outside I/O in Apply.
//  4. Return an error from Apply only when the state machine can no longer
//     be trusted; it stops the node. Report a bad command through
//     Command.Err instead.
//  5. Make Snapshot cheap and point-in-time: its SnapshotWriter runs
//     concurrently with later Apply calls. Make Restore replace the whole
//     state.
//  6. Handle proposal outcomes: ErrDropped means the command will never
//     apply (retry freely); ErrUnknownOutcome means it may still apply
//     (retry only with WithRequestID, which the group deduplicates in its
//     replicated state); ErrBusy means back off.
//  7. Read through the node, not around it: ReadBarrier before a
//     linearizable read of your state, WaitApplied(index) for
//     read-your-writes, StaleRead for bounded staleness. Reading the state
//     without any of them gives this member's possibly stale view.
//  8. Keep the group at an odd size of 3 or 5 voters; add members as
//     learners first (AddVoter does) so a slow newcomer never costs
//     availability, and avoid two-voter groups.
//  9. Call Close when done; it stops every goroutine and releases the
//     directory.
//
// # Guarantees
//
//   - Writes acknowledged by Propose are durable on a majority and survive
//     any minority of crashes; with Config.Dir every member's log is
//     fsynced (one fsync per batch of proposals) before it acknowledges.
//     By default (Config.StorageMode StoragePipelined) the sync runs on its
//     own goroutine, so the next batch forms while the disk syncs the
//     current one; acknowledgements still wait for the sync covering them.
//   - Commands are applied in the same order on every member, each once:
//     proposals duplicated by the network or resent after a leader change
//     apply once, and WithRequestID extends that to client retries.
//   - ReadBarrier and ReadIndex are linearizable on any member (ReadIndex,
//     one quorum round per batch of concurrent reads; ReadLease trades this
//     for a clock assumption).
//   - Any member accepts proposals and reads; followers forward to the
//     leader inside raft.
//   - PreVote and CheckQuorum are on by default; membership changes use
//     joint consensus (ConfChangeV2); a removed leader steps down, and
//     RemoveMember moves leadership away first.
//   - Snapshots are taken automatically (Config.SnapshotEntries and
//     SnapshotBytes), the log is compacted behind them, and lagging or new
//     members receive them streamed through Transport.SendSnapshot.
//
// # Storage faults
//
// With Config.Dir a member keeps its log in Dir/wal, a high-water mark of
// the log (the last batch known to be durable) in Dir/wal.hwm, and
// snapshots in Dir/snap. A crash leaves at most the last, unacknowledged
// batch of the log incomplete; Start cuts it off and logs the cut at ERROR
// level. Anything more (a log file truncated, zeroed in part or removed, or
// Dir/wal replaced by an older copy) is detected before anything on disk is
// changed, and Start fails with an error wrapping ErrDataLoss (and
// ErrCorrupt) that names what is missing: the member never votes on a log
// that lost entries it may have acknowledged. Damaged bytes are ErrCorrupt.
// Either way, restore Dir from a copy that holds the missing data, or
// remove the member from the group and add it back under a new ID with an
// empty Dir. Two cases cannot be told from a crash on the member alone:
// losing only batches synced after the mark's latest update (the mark is
// brought up to date every 50 ms while writes are synced, and at every new
// log segment and Close), and the whole of Dir (mark included) replaced by
// an older copy of itself.
//
// # Faults and hostile peers
//
// raft trusts its peers; the node does not. Every inbound message is
// checked before raft's Step sees it, and a message that fails is refused:
// counted in Stats.MessagesRefused (and Stats.MessagesRejected if it did
// not decode), reported as an EventMessageRefused whose Err wraps
// ErrRefused, logged at WARN (ERROR for a member that lost its state) with
// the sender, and never persisted. Refused are:
//
//   - payloads that do not decode, or carry another Config.GroupID;
//   - messages not addressed to this member, from itself, or whose sender
//     differs from the one the transport delivered them from; message types
//     only a node's owner may give (MsgHup, MsgForgetLeader, ...); snapshots
//     outside a snapshot stream;
//   - terms above MaxTerm (2^48, unreachable by elections; near 2^64 the
//     next election would overflow), terms more than Config.MaxTermJump
//     above this member's (default 2^20: with PreVote and CheckQuorum a
//     term rises only through real elections, each at least an election
//     timeout long), and messages without a term where raft expects one;
//   - messages from ids that are not members or learners, except what a
//     leader sends while this member follows no leader (or that one): a
//     member being added, or one that was away while the group added the
//     member that now leads, learns of it that way; and appends, heartbeats
//     and snapshots at the current term from anyone but that term's leader;
//   - messages that would make raft panic or corrupt its state: empty
//     proposals, conf changes that do not decode, appends whose entries do
//     not follow each other, acknowledgements beyond the leader's log,
//     snapshot headers with an invalid configuration or a snapshot stream
//     whose header does not decode, MsgTimeoutNow from anyone but the
//     leader, MsgTransferLeader to a member that does not lead;
//   - vote requests to a member with an empty log (a new member, or one
//     that lost its state: it may have voted before).
//
// Defence in depth: a transport should also authenticate its peers (the
// tcp transport's mutual TLS); these checks keep a broken or compromised
// peer, or a forged packet, from destroying the group.
//
// # Identity and lost state
//
// Each member's state carries an identity: the group id (Config.GroupID)
// and a random incarnation created with the state (Dir/identity; kept in
// the MemoryStore in memory). Start refuses state of another group with
// ErrWrongGroup. A directory written by an earlier release, which had no
// identity file, gets one on its first start (with a new incarnation; the
// group has no record of the member's older one). The message encoding
// changed in the same release (every payload is now an envelope naming the
// group and the sender's incarnation) and bare messages of earlier releases
// are refused, so upgrade a group by restarting all its members on the new
// release, not one at a time. Deleting a directory's identity file gives it
// a new incarnation: the group then treats the member as one that lost its
// state.
//
// Every message carries its sender's incarnation, and each member announces
// its own to the group once it is a member and a leader is known; the group
// records the first announcement for each id in its replicated state
// (Status.Incarnations). From then on, whatever the leader history, a
// message from that id with another incarnation is refused with
// ErrMemberLostState: the member restarted with a wiped or someone else's
// directory and has forgotten its votes and its log. Its votes and
// acknowledgements never count again, and with an empty log it grants no
// votes. If such a member learns the group's record (a snapshot, say), it
// stops itself with ErrDataLoss; so it does if it knows the members (it was
// restarted with its Bootstrap list, which bootstraps a fresh one-entry
// log) and a leader that counted entries of its old state contacts it.
//
// A member restored from an old copy of its own directory has the right
// incarnation but a log that ends before entries it acknowledged. It finds
// out at the first heartbeat of a leader that counted those entries (raft
// would panic there) and stops with ErrDataLoss, which also wraps
// ErrCorrupt, at every start.
//
// After ErrDataLoss or a reported ErrMemberLostState, the operator must:
// stop the member, remove it from the group (RemoveMember on any live
// member), and add a new member with a new ID and an empty directory
// (AddVoter). Never restart the old ID with new state. Limits remain: a
// member whose incarnation the group has not recorded yet (it lost its
// state within its first election timeout) is not recognised; a stale copy
// is recognised only by a leader that counted the entries it lost (after a
// leader change it is sent them again and rejoins), and may grant votes in
// an election held before such a leader contacts it. Restore a member's
// directory from a backup only as a new member.
//
// # Time
//
// A state machine must not read the wall clock in Apply. One that needs
// time (expiry, leases) runs with Config.Timestamps: the leader stamps each
// command it appends with its hybrid logical clock (package clock), and
// Apply reads Command.Timestamp, the same on every member and strictly
// increasing in log order across leader changes and restarts. Clocks are
// assumed to differ by at most Config.MaxClockOffset; a leader whose clock
// is behind the replicated time by more refuses to stamp and hands over
// leadership, and followers refuse timestamps more than that ahead of
// their own clocks, so a member with a wrong clock cannot move replicated
// time far from the majority's. Both are reported as EventClockOffset.
//
// # Goroutines and shutdown
//
// Start runs a raft loop (the only goroutine that touches raft), a persist
// loop that writes and syncs the log (in the default StoragePipelined
// mode), an apply loop (the only one that calls the StateMachine), an event
// loop (Config.OnEvent) and, while needed, one snapshot writer and one sender
// per lagging peer. Close stops them all and waits; calls in progress fail
// with errors wrapping ErrStopped. A node that hits a storage error or a
// failing Apply stops itself the same way (Err reports why).
//
// # What it does not do
//
// It runs one group per Node (no multi-group log sharing), has no network
// transport of its own in this package version beyond the Transport
// interface (consensustest.Network is in-memory), no automatic quorum-loss
// recovery, and no witnesses.
package consensus
