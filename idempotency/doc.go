// Package idempotency makes a retried request take effect once and return
// the same answer.
//
// Clients retry and networks duplicate, so a request that charges a card or
// creates an order may arrive twice. The client sends a key with each
// logical request ([NewKey] makes one) and the same key on every retry; the
// server runs the operation through a [Guard], which records the result
// under the key and replays it to later calls instead of running the
// operation again.
//
// # Usage
//
//	g := idempotency.New(idempotency.NewMemoryStore())
//	fp := idempotency.Fingerprint([]byte(req.Account), req.Amount)
//	receipt, err := g.Do(ctx, req.Key, fp, func(ctx context.Context) ([]byte, error) {
//		return charge(ctx, req) // runs at most once per key while recorded
//	})
//
// For HTTP services, [Middleware] does this for requests that carry an
// Idempotency-Key header, following the IETF draft of that name.
//
// # Guarantees
//
//   - The first call with a key runs fn and records (fingerprint, result)
//     for the TTL ([DefaultTTL], 24 hours). Later calls with the key and the
//     same fingerprint get the recorded result without running fn; with
//     another fingerprint they get [ErrKeyReused].
//   - Concurrent calls with one key run fn once. In one process the others
//     wait and share the result ([WithFailFast] makes them fail with
//     [ErrInProgress]). Across processes sharing a [Store], the others get
//     [ErrInProgress] or, with [WithWait], poll until the result is there.
//   - Errors are not recorded: the key is released and a retry runs fn
//     again. [WithRecordErrors] records errors the caller deems final.
//   - A claim on a key carries a lease ([DefaultLease]), renewed while fn
//     runs, so a process that dies mid-call locks its key only until the
//     lease lapses. Each claim has a fencing token: a holder whose lease
//     lapsed and whose key was claimed again cannot overwrite the newer
//     claim's outcome.
//
// # What it does not do
//
// Deduplication is only as durable and as shared as the [Store]:
// [MemoryStore] forgets on restart and covers one process. A store never
// drops a live record to make room; when full it refuses new keys with
// [ErrStoreFull]. Keys are global to a store unless scoped: give each
// client its own key space with [ScopedKey] (or [WithScope] in
// [Middleware]) so that one client cannot pre-claim another's key. Once a lease
// lapses while fn is still running (a stalled process that missed its
// renewals) a second execution can start; fencing stops only the stale
// result from being recorded, so effects of fn that must never happen
// twice should themselves check the token (see [Token]), or be transactional with the
// record. Results are recorded after fn returns, not atomically with its
// effects: a crash between the two leaves the key to be retried once the
// lease lapses.
//
// # Implementing a Store
//
// [Store] documents the contract; package
// [github.com/distkit/distkit/idempotency/storetest] checks it.
//
// # Goroutines
//
// Nothing here starts a goroutine that outlives a call. While fn runs, a
// timer renews the claim's lease; it is stopped before Do returns.
package idempotency
