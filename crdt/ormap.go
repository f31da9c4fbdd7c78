package crdt

import (
	"iter"
	"maps"
	"slices"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/internal/wire"
)

// ORMap is an observed-remove map from keys to nested CRDTs: a map of
// counters ([CCounter]), registers ([MVRegister]), sets ([ORSet]), flags
// ([EWFlag]) or maps ([ORMap]). The nested values keep only their dot
// stores and share the map's single causal context; a key is present while
// its value holds any dot.
//
// Semantics:
//   - Update applies a nested operation to a key's value, creating the key
//     if absent; concurrent updates of the same key merge as the nested type
//     does.
//   - Remove deletes the state of the key's value that the remover has
//     observed, and nothing else. Removed state never comes back: a replica
//     that later merges an old copy of the value finds its dots covered by
//     the context and drops them.
//   - Update concurrent with Remove: the update wins, and the key survives
//     holding only what the remover had not observed (the concurrent
//     update's writes). For ORSet, MVRegister and EWFlag that is exactly the
//     concurrent writes. A CCounter keeps one running total per replica, so
//     an increment concurrent with a remove carries that replica's earlier
//     total with it; a remove that is not concurrent with increments resets
//     the counter to zero.
//   - Removal leaves no tombstone: the state is O(live keys + their dots +
//     one context).
//
// Deltas merge in any order, duplicated or late. Merging a delta costs
// O(size of the delta): a map with more than a few keys keeps an index from
// dot to key to find the keys a delta's context touches. Merging a full
// state costs O(keys of both) plus the nested merges.
//
// The zero value is an empty map with replica id "": use it as a merge or
// decoding target, and [NewORMap] for a replica that writes. Nested values
// whose element types need a [Codec] are not supported by the encoding; keys
// may use one ([ORMap.SetCodec]). An ORMap is not safe for concurrent use.
type ORMap[K comparable, V Embeddable[V]] struct {
	replica string
	ctx     clock.CausalContext
	m       map[K]V
	codec   elemCodec[K]

	// keyOf maps every live dot to its key, so that a small delta finds the
	// keys whose dots it removes without scanning the map. Built on the
	// first small merge into a map larger than smallStore, kept up to date
	// by Update, Remove and small merges, dropped by other changes.
	keyOf map[clock.Dot]K
}

// NewORMap returns an empty map for replica.
func NewORMap[K comparable, V Embeddable[V]](replica string) *ORMap[K, V] {
	return &ORMap[K, V]{replica: replica}
}

// Replica returns the id the map writes under.
func (m *ORMap[K, V]) Replica() string { return m.replica }

// SetCodec sets the codec used to encode and decode keys, needed only for
// key types the package cannot encode by itself (see [Codec]).
func (m *ORMap[K, V]) SetCodec(c Codec[K]) { m.codec.user = c }

// Update applies f to the value of k and returns the map's delta. f receives
// the value in place (a new empty value if k is absent), bound to the map's
// replica id and context; it must call mutators of that value and return
// their delta, merging the deltas if it calls several, or nil for no
// change. (Returning the value itself also works, but the delta is then the
// whole map.) Update takes over the delta f returns. f must not use m, and
// the value must not be retained after f returns. If the value ends up
// empty, k is absent afterwards.
//
//	m.Update("visits", func(c *crdt.CCounter) *crdt.CCounter { return c.Inc(1) })
func (m *ORMap[K, V]) Update(k K, f func(V) V) *ORMap[K, V] {
	var zero V
	v, ok := m.m[k]
	if !ok {
		v = zero.embedNew()
	}
	// The value borrows the map's context while f runs, so the dots it
	// creates are recorded there directly.
	v.embedBind(m.replica, m.ctx)
	m.ctx = clock.CausalContext{}
	dv := f(v)
	m.ctx = *v.embedCtx()
	v.embedRelease()
	store := func() {
		switch {
		case !v.embedEmpty():
			if m.m == nil {
				m.m = map[K]V{}
			}
			m.m[k] = v
		case ok:
			delete(m.m, k)
		}
	}
	if dv == v {
		// Not a delta but the value itself: return the whole map, which is
		// always a valid delta.
		store()
		m.keyOf = nil
		d := m.Clone()
		d.replica = ""
		return d
	}
	d := &ORMap[K, V]{codec: m.codec}
	if !dv.embedIsNil() {
		d.ctx = *dv.embedCtx()
		dv.embedRelease()
		if !dv.embedEmpty() {
			d.m = map[K]V{k: dv}
		}
	}
	if m.keyOf != nil {
		m.reindex(k, d)
	}
	store()
	return d
}

// Remove deletes k and returns the delta: no entries, and a context holding
// the dots of k's value that this replica had observed.
func (m *ORMap[K, V]) Remove(k K) *ORMap[K, V] {
	d := &ORMap[K, V]{codec: m.codec}
	if v, ok := m.m[k]; ok {
		for dot := range v.embedDots {
			d.ctx.Add(dot)
			delete(m.keyOf, dot)
		}
		delete(m.m, k)
	}
	return d
}

// Clear removes every key this replica has observed and returns the delta.
func (m *ORMap[K, V]) Clear() *ORMap[K, V] {
	d := &ORMap[K, V]{codec: m.codec}
	for _, v := range m.m {
		for dot := range v.embedDots {
			d.ctx.Add(dot)
		}
	}
	m.m, m.keyOf = nil, nil
	return d
}

// Get returns a copy of k's value and whether k is present. Mutating the
// copy does not change the map; use [ORMap.Update].
func (m *ORMap[K, V]) Get(k K) (V, bool) {
	v, ok := m.m[k]
	if !ok {
		return v, false
	}
	return v.Clone(), true
}

// Contains reports whether k is present.
func (m *ORMap[K, V]) Contains(k K) bool { _, ok := m.m[k]; return ok }

// Len returns the number of keys.
func (m *ORMap[K, V]) Len() int { return len(m.m) }

// Keys returns the keys in a new slice, sorted as described at
// [GSet.Elements].
func (m *ORMap[K, V]) Keys() []K {
	ks := slices.Collect(maps.Keys(m.m))
	sortElems(ks, m.codec)
	return ks
}

// All returns an iterator over the keys and copies of their values, in the
// order of [ORMap.Keys].
func (m *ORMap[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, k := range m.Keys() {
			if v, ok := m.m[k]; ok && !yield(k, v.Clone()) {
				return
			}
		}
	}
}

// Context returns a copy of the map's causal context.
func (m *ORMap[K, V]) Context() clock.CausalContext { return m.ctx.Clone() }

// Merge merges o, a delta or a full state, into m. A nil o is a no-op.
func (m *ORMap[K, V]) Merge(o *ORMap[K, V]) {
	if o == nil || o == m {
		return
	}
	if len(m.m) > smallStore && countDots(&o.ctx, len(m.m)) <= len(m.m) {
		m.joinIndexed(o)
	} else {
		m.join(o, &m.ctx, &o.ctx)
		m.keyOf = nil
	}
	m.ctx.Merge(o.ctx)
}

// countDots returns the number of dots in c, or limit+1 if it exceeds limit.
func countDots(c *clock.CausalContext, limit int) int {
	n := uint64(0)
	for range c.Cloud() {
		n++
	}
	for _, k := range c.Vector().All() {
		n += k
		if n > uint64(limit) {
			return limit + 1
		}
	}
	if n > uint64(limit) {
		return limit + 1
	}
	return int(n)
}

// dotsOf calls f for every dot of c. Only for small contexts.
func dotsOf(c *clock.CausalContext, f func(clock.Dot)) {
	for r, n := range c.Vector().All() {
		for k := uint64(1); k <= n; k++ {
			f(clock.Dot{Replica: r, Counter: k})
		}
	}
	for d := range c.Cloud() {
		f(d)
	}
}

func (m *ORMap[K, V]) buildKeyIndex() {
	m.keyOf = make(map[clock.Dot]K)
	for k, v := range m.m {
		for d := range v.embedDots {
			m.keyOf[d] = k
		}
	}
}

// reindex updates keyOf after a local update of k with delta d.
func (m *ORMap[K, V]) reindex(k K, d *ORMap[K, V]) {
	if limit := 4*len(m.m) + 64; countDots(&d.ctx, limit) > limit {
		m.keyOf = nil // f returned something large; rebuild lazily
		return
	}
	dotsOf(&d.ctx, func(dot clock.Dot) {
		if kk, ok := m.keyOf[dot]; ok && kk == k {
			delete(m.keyOf, dot)
		}
	})
	if v, ok := d.m[k]; ok {
		for dot := range v.embedDots {
			m.keyOf[dot] = k
		}
	}
}

// joinIndexed is join for a delta whose context holds few dots compared
// with the map's keys: it visits the keys of o and the keys owning a dot
// o's context covers, instead of every key.
func (m *ORMap[K, V]) joinIndexed(o *ORMap[K, V]) {
	if m.keyOf == nil {
		m.buildKeyIndex()
	}
	c1, c2 := &m.ctx, &o.ctx
	for k, ov := range o.m {
		for d := range ov.embedDots {
			if !c1.Contains(d) { // new to m: it survives the join
				m.keyOf[d] = k
			}
		}
		m.joinKey(k, ov, c1, c2)
	}
	var covered []clock.Dot
	dotsOf(c2, func(d clock.Dot) {
		if _, ok := m.keyOf[d]; ok {
			covered = append(covered, d)
		}
	})
	dropped := map[K]bool{}
	for _, d := range covered {
		k := m.keyOf[d]
		if _, inO := o.m[k]; !inO && !dropped[k] {
			dropped[k] = true
			if v, ok := m.m[k]; ok {
				v.embedDrop(c2)
				if v.embedEmpty() {
					delete(m.m, k)
				}
			}
		}
		// A covered dot stays live only where o holds it.
		if v, ok := m.m[k]; !ok || !v.embedHas(d) {
			delete(m.keyOf, d)
		}
	}
}

// joinKey joins o's value ov for key k into m's, given both contexts; a
// value left empty removes the key.
func (m *ORMap[K, V]) joinKey(k K, ov V, c1, c2 *clock.CausalContext) {
	v, ok := m.m[k]
	if !ok {
		var zero V
		v = zero.embedNew()
	}
	v.embedJoin(ov, c1, c2)
	switch {
	case !v.embedEmpty():
		if m.m == nil {
			m.m = map[K]V{}
		}
		m.m[k] = v
	case ok:
		delete(m.m, k)
	}
}

// join joins o's entries into m's given both contexts.
func (m *ORMap[K, V]) join(o *ORMap[K, V], c1, c2 *clock.CausalContext) {
	for k, ov := range o.m {
		m.joinKey(k, ov, c1, c2)
	}
	if c2.IsZero() {
		return
	}
	for k, v := range m.m {
		if _, ok := o.m[k]; ok {
			continue
		}
		v.embedDrop(c2)
		if v.embedEmpty() {
			delete(m.m, k)
		}
	}
}

// Clone returns an independent copy of m.
func (m *ORMap[K, V]) Clone() *ORMap[K, V] {
	c := &ORMap[K, V]{replica: m.replica, ctx: m.ctx.Clone(), codec: m.codec} // keyOf is rebuilt on demand
	if len(m.m) > 0 {
		c.m = make(map[K]V, len(m.m))
		for k, v := range m.m {
			c.m[k] = v.Clone()
		}
	}
	return c
}

// Equal reports whether m and o hold the same state.
func (m *ORMap[K, V]) Equal(o *ORMap[K, V]) bool { return m.ctx.Equal(o.ctx) && m.storeEqual(o) }

func (m *ORMap[K, V]) storeEqual(o *ORMap[K, V]) bool {
	return maps.EqualFunc(m.m, o.m, func(a, b V) bool { return a.embedStoreEqual(b) })
}

// AppendBinary appends the deterministic encoding of m: format version, type
// tag, causal context, then each key (in ascending order of encoded bytes)
// with its value's dot store.
func (m *ORMap[K, V]) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, tagORMap)
	b, t := appendContext(b, &m.ctx)
	return m.appendStore(b, t)
}

func (m *ORMap[K, V]) appendStore(b []byte, t dotTable) ([]byte, error) {
	type entry struct {
		k []byte
		v V
	}
	entries := make([]entry, 0, len(m.m))
	if len(m.m) > 0 {
		codec, err := m.codec.get()
		if err != nil {
			return b, err
		}
		for k, v := range m.m {
			p, err := codec.Append(nil, k)
			if err != nil {
				return b, err
			}
			entries = append(entries, entry{p, v})
		}
		slices.SortFunc(entries, func(a, b entry) int { return compareBytes(a.k, b.k) })
	}
	b = appendUvarintCount(b, len(entries))
	for _, e := range entries {
		b = appendBytes(b, e.k)
		p, err := e.v.embedAppend(nil, t)
		if err != nil {
			return b, err
		}
		b = appendBytes(b, p)
	}
	return b, nil
}

// decodeStore reads what appendStore wrote into m.m, not finishing d.
func (m *ORMap[K, V]) decodeStore(d *decoder, ctx *clock.CausalContext) map[K]V {
	n := d.Count(2)
	if d.Err() != nil || n == 0 {
		return nil
	}
	codec, err := m.codec.get()
	if err != nil {
		d.SetErr(err)
		return nil
	}
	out := make(map[K]V, n)
	seen := map[clock.Dot]struct{}{}
	var prev []byte
	var zero V
	for i := 0; i < n && d.Err() == nil; i++ {
		p := d.elem(prev, i == 0)
		prev = p
		k := decodeElem(d, codec, p)
		vb := d.Bytes()
		if d.Err() != nil {
			break
		}
		v := zero.embedNew()
		sub := &decoder{Decoder: wire.NewDecoder(vb, ErrMalformed, d.What()+" value"), ids: d.ids, used: d.used}
		if err := v.embedDecode(sub, ctx); err != nil {
			d.SetErr(err)
			break
		}
		if v.embedEmpty() {
			d.Fail("key with an empty value")
			break
		}
		for dot := range v.embedDots {
			if _, dup := seen[dot]; dup {
				d.Fail("dot %v held by two keys", dot)
				break
			}
			seen[dot] = struct{}{}
		}
		if _, dup := out[k]; dup && d.Err() == nil {
			d.Fail("key decoded twice")
		}
		out[k] = v
	}
	return out
}

// MarshalBinary returns the encoding described at [ORMap.AppendBinary].
func (m *ORMap[K, V]) MarshalBinary() ([]byte, error) { return m.AppendBinary(nil) }

// UnmarshalBinary replaces m's state with the decoded one, keeping m's
// replica id and key codec. On error, which wraps [ErrMalformed] or
// [ErrNoCodec], m is unchanged.
func (m *ORMap[K, V]) UnmarshalBinary(data []byte) error {
	d := newDecoder(data, tagORMap)
	ctx := d.context()
	store := m.decodeStore(d, &ctx)
	if err := d.finish(); err != nil {
		return err
	}
	m.ctx, m.m, m.keyOf = ctx, store, nil
	return nil
}

// ORMap nests in ORMap.

func (m *ORMap[K, V]) embedNew() *ORMap[K, V] { return &ORMap[K, V]{} }
func (m *ORMap[K, V]) embedIsNil() bool       { return m == nil }
func (m *ORMap[K, V]) embedBind(replica string, ctx clock.CausalContext) {
	m.replica, m.ctx = replica, ctx
}
func (m *ORMap[K, V]) embedRelease() {
	m.replica, m.ctx, m.keyOf = "", clock.CausalContext{}, nil
}
func (m *ORMap[K, V]) embedCtx() *clock.CausalContext { return &m.ctx }
func (m *ORMap[K, V]) embedJoin(o *ORMap[K, V], c1, c2 *clock.CausalContext) {
	m.join(o, c1, c2)
}
func (m *ORMap[K, V]) embedDrop(c *clock.CausalContext) {
	m.join(&ORMap[K, V]{}, nil, c)
}
func (m *ORMap[K, V]) embedEmpty() bool { return len(m.m) == 0 }
func (m *ORMap[K, V]) embedHas(d clock.Dot) bool {
	for _, v := range m.m {
		if v.embedHas(d) {
			return true
		}
	}
	return false
}
func (m *ORMap[K, V]) embedDots(yield func(clock.Dot) bool) {
	for _, v := range m.m {
		for d := range v.embedDots {
			if !yield(d) {
				return
			}
		}
	}
}
func (m *ORMap[K, V]) embedStoreEqual(o *ORMap[K, V]) bool { return m.storeEqual(o) }
func (m *ORMap[K, V]) embedAppend(b []byte, t dotTable) ([]byte, error) {
	return m.appendStore(b, t)
}
func (m *ORMap[K, V]) embedDecode(d *decoder, ctx *clock.CausalContext) error {
	store := m.decodeStore(d, ctx)
	if err := d.finish(); err != nil {
		return err
	}
	m.m = store
	return nil
}
