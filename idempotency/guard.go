package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Defaults of [Guard].
const (
	// DefaultTTL is how long a completed result is replayed.
	DefaultTTL = 24 * time.Hour
	// DefaultLease is how long an in-progress claim lasts without renewal.
	// While fn runs, the Guard renews it every lease/3, so the lease bounds
	// only how long a key stays locked after its holder dies.
	DefaultLease = 10 * time.Second
	// DefaultPollMin and DefaultPollMax bound the interval between polls of
	// the store while waiting for another process (see [WithWait]).
	DefaultPollMin = 10 * time.Millisecond
	DefaultPollMax = time.Second
)

// Option configures a [Guard].
type Option func(*config)

type config struct {
	ttl       time.Duration
	lease     time.Duration
	failFast  bool
	wait      time.Duration
	pollMin   time.Duration
	pollMax   time.Duration
	recordErr func(error) bool
	clock     clock.Clock
	logger    *slog.Logger
}

// WithTTL sets how long a completed result is recorded and replayed
// (default [DefaultTTL]). A non-positive d means the default.
func WithTTL(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ttl = d
		}
	}
}

// WithLease sets the lease of an in-progress claim (default
// [DefaultLease]). If the process running fn dies, the key is locked for at
// most this long; while fn runs the lease is renewed every d/3. A
// non-positive d means the default; a d below a millisecond is raised to
// one millisecond.
func WithLease(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.lease = max(d, time.Millisecond)
		}
	}
}

// WithFailFast makes a call that finds the same key running in this process
// fail at once with [ErrInProgress] instead of waiting for the result.
func WithFailFast() Option {
	return func(c *config) { c.failFast = true }
}

// WithWait makes a call that finds the key claimed by another process (a
// live in-progress record this Guard does not hold) poll the store until
// the result is recorded, the claim is released or lapses (the call then
// runs fn itself), maxWait has passed, or ctx ends. Without WithWait, or
// with a non-positive maxWait, such a call fails at once with
// [ErrInProgress]. See [WithPollInterval] for the pace of polling.
func WithWait(maxWait time.Duration) Option {
	return func(c *config) { c.wait = maxWait }
}

// WithPollInterval sets the interval between polls while waiting (see
// [WithWait]): it starts at min and doubles up to max, and a random part of
// up to half of each interval is dropped so that waiters do not poll in
// step. Non-positive values mean [DefaultPollMin] and [DefaultPollMax]; a
// max below min is raised to min.
func WithPollInterval(min, max time.Duration) Option {
	return func(c *config) {
		if min > 0 {
			c.pollMin = min
		}
		if max > 0 {
			c.pollMax = max
		}
	}
}

// WithRecordErrors records errors for which final returns true, as a
// successful result would be: later calls with the key do not run fn and
// get a [*RecordedError] carrying the error's text. Other errors are not
// recorded; the key is released and the next call runs fn again (the
// default for all errors).
func WithRecordErrors(final func(error) bool) Option {
	return func(c *config) { c.recordErr = final }
}

// WithClock sets the time source for lease renewal and polling (default
// [clock.Real]). The [Store] keeps its own notion of time. A nil c means
// the default.
func WithClock(c clock.Clock) Option {
	return func(cfg *config) {
		if c != nil {
			cfg.clock = c
		}
	}
}

// WithLogger sets a logger for store failures that do not reach the
// caller (a failed renewal or release). A nil logger, the default, is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// Guard runs operations at most once per key and replays their results.
// See the package documentation for the guarantees. A Guard is safe for
// concurrent use and starts no goroutines of its own beyond timers that
// renew leases while fn runs, all stopped before Do returns.
//
// The zero value is a Guard over a new [MemoryStore] with default settings,
// as New(nil) returns.
type Guard struct {
	once   sync.Once
	store  Store
	cfg    config
	seed   maphash.Seed
	flying [guardShards]flightShard
}

// New returns a Guard that records results in store. A nil store means a
// new [MemoryStore] with default settings.
func New(store Store, opts ...Option) *Guard {
	g := &Guard{store: store}
	g.once.Do(func() { g.init(opts) })
	return g
}

func (g *Guard) init(opts []Option) {
	cfg := config{
		ttl:     DefaultTTL,
		lease:   DefaultLease,
		pollMin: DefaultPollMin,
		pollMax: DefaultPollMax,
		clock:   clock.Real,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.pollMax < cfg.pollMin {
		cfg.pollMax = cfg.pollMin
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if g.store == nil {
		g.store = NewMemoryStore()
	}
	g.cfg = cfg
	g.seed = maphash.MakeSeed()
	for i := range g.flying {
		g.flying[i].init()
	}
}

func (g *Guard) initZero() { g.init(nil) }

// Store returns the store the Guard records results in.
func (g *Guard) Store() Store {
	g.once.Do(g.initZero)
	return g.store
}

// Do runs fn at most once for key and returns its result, or replays the
// result recorded by an earlier call with the same key and fingerprint.
//
// The fingerprint identifies the request (for example [Fingerprint] of its
// parameters); a call with a recorded or running key and another
// fingerprint fails with [ErrKeyReused] without running fn.
//
// If the key is running in this process, Do waits for it and returns the
// recorded result (or fails with [ErrInProgress] under [WithFailFast]). If
// it is running in another process, Do fails with [ErrInProgress] or waits
// as set by [WithWait]. If the running call ends without recording a
// result (fn failed, panicked or its caller's ctx ended), a waiting call
// runs fn itself.
//
// fn runs in the caller's goroutine with a ctx derived from ctx that is
// also cancelled, with cause [ErrLeaseLost], if the Guard learns that its
// claim was lost. A nil error from fn records its result for the TTL; an
// error is returned as is and the key released, unless [WithRecordErrors]
// marks it final. If fn panics, the key is released and the panic
// continues. If the result cannot be recorded (the claim was lost, or the
// store failed), Do returns fn's result together with an error wrapping
// the cause, because fn's effects did happen.
//
// A store failure while claiming fails closed: fn is not run and the error
// is wrapped. The returned slice is the caller's to keep and modify.
func (g *Guard) Do(ctx context.Context, key string, fingerprint []byte, fn func(context.Context) ([]byte, error)) ([]byte, error) {
	g.once.Do(g.initZero)
	if key == "" {
		return nil, fmt.Errorf("idempotency: empty key: %w", ErrInvalidKey)
	}
	if fn == nil {
		return nil, errors.New("idempotency: nil function")
	}
	sh := &g.flying[maphash.String(g.seed, key)%guardShards]
	var polls int
	var waitUntil time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := sh.enter()
		rec, claimed, err := g.store.Claim(ctx, key, fingerprint, g.cfg.lease)
		var l *leader
		if err == nil && claimed {
			l = &leader{token: rec.Token}
			sh.lead(key, l)
		}
		sh.exit(e)

		switch {
		case err != nil:
			if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
				return nil, err
			}
			return nil, fmt.Errorf("idempotency: claim %q: %w", key, err)
		case claimed:
			sh.count(statExecuted)
			return g.lead(ctx, sh, l, key, fn)
		case !bytes.Equal(rec.Fingerprint, fingerprint):
			sh.count(statReused)
			return nil, fmt.Errorf("idempotency: key %q: %w", key, ErrKeyReused)
		case rec.State == StateCompleted:
			sh.count(statReplayed)
			return replay(rec.Result)
		}

		// In progress with our fingerprint: is the holder here? A holder
		// registers just after its Claim returns; a grace period makes sure
		// that any Claim begun here before ours returned has done so.
		done := sh.holder(key, rec.Token)
		if done == nil {
			if err := sh.gracePeriod(ctx); err != nil {
				return nil, err
			}
			done = sh.holder(key, rec.Token)
		}
		if done != nil {
			if g.cfg.failFast {
				sh.count(statInProgress)
				return nil, fmt.Errorf("idempotency: key %q: %w", key, ErrInProgress)
			}
			sh.count(statWaited)
			select {
			case <-done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}

		// Held by another process.
		if g.cfg.wait <= 0 {
			sh.count(statInProgress)
			return nil, fmt.Errorf("idempotency: key %q: %w", key, ErrInProgress)
		}
		now := g.cfg.clock.Now()
		if waitUntil.IsZero() {
			waitUntil = now.Add(g.cfg.wait)
		}
		left := waitUntil.Sub(now)
		if left <= 0 {
			sh.count(statInProgress)
			return nil, fmt.Errorf("idempotency: key %q: waited %v: %w", key, g.cfg.wait, ErrInProgress)
		}
		if polls == 0 {
			sh.count(statWaited)
		}
		d := min(g.pollDelay(polls), left)
		polls++
		if err := clock.Sleep(ctx, g.cfg.clock, d); err != nil {
			return nil, err
		}
	}
}

// GuardStats counts what a [Guard]'s calls of Do did since it was made.
type GuardStats struct {
	// Executed counts calls that claimed their key and ran fn.
	Executed uint64
	// Replayed counts calls answered from a recorded result.
	Replayed uint64
	// Reused counts calls refused with ErrKeyReused.
	Reused uint64
	// InProgress counts calls that failed with ErrInProgress.
	InProgress uint64
	// Waited counts calls that waited for a holder, here or elsewhere
	// (a call that waits twice counts twice).
	Waited uint64
	// NotRecorded counts outcomes of fn that could not be recorded
	// because the claim was lost or the store failed.
	NotRecorded uint64
}

// Stats returns the Guard's counters.
func (g *Guard) Stats() GuardStats {
	g.once.Do(g.initZero)
	var c [numStats]uint64
	for i := range g.flying {
		for j := range c {
			c[j] += g.flying[i].stats[j].Load()
		}
	}
	return GuardStats{
		Executed:    c[statExecuted],
		Replayed:    c[statReplayed],
		Reused:      c[statReused],
		InProgress:  c[statInProgress],
		Waited:      c[statWaited],
		NotRecorded: c[statNotRecorded],
	}
}

// pollDelay returns the pause before poll n+1: min·2ⁿ capped at max, of
// which a random half is dropped so that pollers do not move in step.
func (g *Guard) pollDelay(n int) time.Duration {
	d := g.cfg.pollMin
	for ; n > 0 && d < g.cfg.pollMax; n-- {
		d *= 2
	}
	d = min(d, g.cfg.pollMax)
	half := d / 2
	return half + rand.N(half+1)
}

func replay(res Result) ([]byte, error) {
	if res.Err != "" {
		return nil, &RecordedError{Message: res.Err}
	}
	if res.Value == nil {
		return nil, nil
	}
	return append(make([]byte, 0, len(res.Value)), res.Value...), nil
}

// lead runs fn as holder of the claim (key, token) and records its outcome.
func (g *Guard) lead(ctx context.Context, sh *flightShard, l *leader, key string, fn func(context.Context) ([]byte, error)) (v []byte, err error) {
	defer sh.finish(key, l)
	token := l.token
	// Store calls after fn must not fail because the caller gave up.
	bg := context.WithoutCancel(ctx)

	fctx, cancel := context.WithCancelCause(context.WithValue(ctx, tokenKey{}, token))
	defer cancel(nil)
	r := g.startRenewal(bg, key, token, cancel)
	completed := false
	defer func() {
		r.stop()
		if !completed { // fn panicked
			g.release(bg, key, token)
		}
	}()
	v, err = fn(fctx)
	r.stop()
	completed = true

	if err != nil {
		if g.cfg.recordErr == nil || errors.Is(err, errUnrecorded) || !g.cfg.recordErr(err) {
			g.release(bg, key, token)
			return nil, err
		}
		msg := err.Error()
		if msg == "" {
			msg = "idempotency: recorded error with empty text"
		}
		if cerr := g.store.Complete(bg, key, token, Result{Err: msg}, g.cfg.ttl); cerr != nil {
			sh.count(statNotRecorded)
			return nil, errors.Join(err, fmt.Errorf("idempotency: error of %q not recorded: %w", key, cerr))
		}
		return nil, err
	}
	if v == nil {
		v = []byte{}
	}
	if cerr := g.store.Complete(bg, key, token, Result{Value: v}, g.cfg.ttl); cerr != nil {
		sh.count(statNotRecorded)
		return v, fmt.Errorf("idempotency: result of %q not recorded: %w", key, cerr)
	}
	return v, nil
}

func (g *Guard) release(ctx context.Context, key string, token uint64) {
	if err := g.store.Release(ctx, key, token); err != nil {
		g.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: release failed; the key stays locked until its lease lapses",
			slog.String("key", key), slog.Any("error", err))
	}
}

// renewal renews a claim's lease every lease/3 from a timer callback until
// stopped.
type renewal struct {
	g     *Guard
	ctx   context.Context // for store calls; not cancelled by the caller
	key   string
	token uint64
	lost  context.CancelCauseFunc

	mu      sync.Mutex
	stopped bool
	timer   clock.Timer
	cancel  context.CancelFunc // of the Renew in flight, if any
	running sync.WaitGroup
}

func (g *Guard) startRenewal(ctx context.Context, key string, token uint64, lost context.CancelCauseFunc) *renewal {
	r := &renewal{g: g, ctx: ctx, key: key, token: token, lost: lost}
	r.mu.Lock()
	r.timer = g.cfg.clock.AfterFunc(g.cfg.lease/3, r.tick)
	r.mu.Unlock()
	return r
}

func (r *renewal) tick() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.cancel = cancel
	r.running.Add(1)
	r.mu.Unlock()
	defer r.running.Done()
	defer cancel()

	err := r.g.store.Renew(ctx, r.key, r.token, r.g.cfg.lease)
	if errors.Is(err, ErrLeaseLost) {
		r.lost(fmt.Errorf("idempotency: key %q: %w", r.key, ErrLeaseLost))
		return
	}
	if err != nil && ctx.Err() == nil {
		r.g.cfg.logger.LogAttrs(ctx, slog.LevelWarn, "idempotency: lease renewal failed",
			slog.String("key", r.key), slog.Any("error", err))
	}
	r.mu.Lock()
	if !r.stopped {
		r.timer.Reset(r.g.cfg.lease / 3)
	}
	r.mu.Unlock()
}

// stop ends renewal, cancelling a Renew in flight and waiting for it to
// return. It is idempotent.
func (r *renewal) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	r.timer.Stop()
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.running.Wait()
}

type tokenKey struct{}

// Token returns the fencing token of the claim under which fn runs, from
// the ctx that [Guard.Do] passes to fn. Tokens of later claims of the same
// key are different (with [MemoryStore], greater), so a downstream system
// can refuse writes carrying a token older than one it has seen.
func Token(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tokenKey{}).(uint64)
	return t, ok
}
