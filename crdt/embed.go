package crdt

import (
	"github.com/distkit/distkit/clock"
)

// Embeddable is the constraint on the values of an [ORMap]: the causal CRDTs
// of this package, whose state is a dot store plus a causal context. Inside
// a map the values keep only their dot stores and share the map's context,
// which is what lets removing a key delete exactly the state the remover
// observed, without tombstones and without resurrection.
//
// It is satisfied by *[ORSet], *[MVRegister], *[CCounter], *[EWFlag] and
// *[ORMap] (maps nest); its methods are unexported, so other types cannot
// implement it.
type Embeddable[V any] interface {
	comparable
	Clone() V

	embedNew() V
	embedIsNil() bool
	embedBind(replica string, ctx clock.CausalContext)
	embedRelease()
	embedCtx() *clock.CausalContext
	embedJoin(o V, c1, c2 *clock.CausalContext)
	embedDrop(c *clock.CausalContext)
	embedEmpty() bool
	embedHas(d clock.Dot) bool
	embedDots(yield func(clock.Dot) bool)
	embedStoreEqual(o V) bool
	embedAppend(b []byte, t dotTable) ([]byte, error)
	embedDecode(d *decoder, ctx *clock.CausalContext) error
}

// ORSet

func (s *ORSet[E]) embedNew() *ORSet[E] { return &ORSet[E]{} }
func (s *ORSet[E]) embedIsNil() bool    { return s == nil }
func (s *ORSet[E]) embedBind(replica string, ctx clock.CausalContext) {
	s.replica, s.ctx = replica, ctx
}
func (s *ORSet[E]) embedRelease()                  { s.replica, s.ctx = "", clock.CausalContext{} }
func (s *ORSet[E]) embedCtx() *clock.CausalContext { return &s.ctx }
func (s *ORSet[E]) embedJoin(o *ORSet[E], c1, c2 *clock.CausalContext) {
	s.dots.join(&o.dots, c1, c2)
}
func (s *ORSet[E]) embedDrop(c *clock.CausalContext)     { s.dots.dropCovered(c, nil) }
func (s *ORSet[E]) embedEmpty() bool                     { return len(s.dots.elems) == 0 }
func (s *ORSet[E]) embedHas(d clock.Dot) bool            { return s.dots.has(d) }
func (s *ORSet[E]) embedDots(yield func(clock.Dot) bool) { s.dots.allDots(yield) }
func (s *ORSet[E]) embedStoreEqual(o *ORSet[E]) bool     { return s.dots.equal(&o.dots) }
func (s *ORSet[E]) embedAppend(b []byte, t dotTable) ([]byte, error) {
	return s.dots.appendBinary(b, t, s.codec)
}
func (s *ORSet[E]) embedDecode(d *decoder, ctx *clock.CausalContext) error {
	return s.dots.decode(d, s.codec, ctx)
}

// MVRegister

func (r *MVRegister[V]) embedNew() *MVRegister[V] { return &MVRegister[V]{} }
func (r *MVRegister[V]) embedIsNil() bool         { return r == nil }
func (r *MVRegister[V]) embedBind(replica string, ctx clock.CausalContext) {
	r.replica, r.ctx = replica, ctx
}
func (r *MVRegister[V]) embedRelease()                  { r.replica, r.ctx = "", clock.CausalContext{} }
func (r *MVRegister[V]) embedCtx() *clock.CausalContext { return &r.ctx }
func (r *MVRegister[V]) embedJoin(o *MVRegister[V], c1, c2 *clock.CausalContext) {
	r.vals = r.vals.join(o.vals, c1, c2)
}
func (r *MVRegister[V]) embedDrop(c *clock.CausalContext)     { r.vals = r.vals.drop(c) }
func (r *MVRegister[V]) embedEmpty() bool                     { return len(r.vals) == 0 }
func (r *MVRegister[V]) embedHas(d clock.Dot) bool            { return r.vals.has(d) }
func (r *MVRegister[V]) embedDots(yield func(clock.Dot) bool) { r.vals.dots(yield) }
func (r *MVRegister[V]) embedStoreEqual(o *MVRegister[V]) bool {
	return r.vals.equal(o.vals, func(a, b V) bool { return a == b })
}
func (r *MVRegister[V]) embedAppend(b []byte, t dotTable) ([]byte, error) {
	return r.appendStore(b, t)
}
func (r *MVRegister[V]) embedDecode(d *decoder, ctx *clock.CausalContext) error {
	vals, _ := r.decodeStore(d, ctx)
	if err := d.finish(); err != nil {
		return err
	}
	r.vals = vals
	return nil
}

// CCounter

func (c *CCounter) embedNew() *CCounter { return &CCounter{} }
func (c *CCounter) embedIsNil() bool    { return c == nil }
func (c *CCounter) embedBind(replica string, ctx clock.CausalContext) {
	c.replica, c.ctx = replica, ctx
}
func (c *CCounter) embedRelease()                  { c.replica, c.ctx = "", clock.CausalContext{} }
func (c *CCounter) embedCtx() *clock.CausalContext { return &c.ctx }
func (c *CCounter) embedJoin(o *CCounter, c1, c2 *clock.CausalContext) {
	c.vals = c.vals.join(o.vals, c1, c2)
}
func (c *CCounter) embedDrop(cc *clock.CausalContext)    { c.vals = c.vals.drop(cc) }
func (c *CCounter) embedEmpty() bool                     { return len(c.vals) == 0 }
func (c *CCounter) embedHas(d clock.Dot) bool            { return c.vals.has(d) }
func (c *CCounter) embedDots(yield func(clock.Dot) bool) { c.vals.dots(yield) }
func (c *CCounter) embedStoreEqual(o *CCounter) bool {
	return c.vals.equal(o.vals, func(a, b int64) bool { return a == b })
}
func (c *CCounter) embedAppend(b []byte, t dotTable) ([]byte, error) { return c.appendStore(b, t) }
func (c *CCounter) embedDecode(d *decoder, ctx *clock.CausalContext) error {
	vals, _ := c.decodeStore(d, ctx)
	if err := d.finish(); err != nil {
		return err
	}
	c.vals = vals
	return nil
}

// EWFlag

func (f *EWFlag) embedNew() *EWFlag { return &EWFlag{} }
func (f *EWFlag) embedIsNil() bool  { return f == nil }
func (f *EWFlag) embedBind(replica string, ctx clock.CausalContext) {
	f.replica, f.ctx = replica, ctx
}
func (f *EWFlag) embedRelease()                  { f.replica, f.ctx = "", clock.CausalContext{} }
func (f *EWFlag) embedCtx() *clock.CausalContext { return &f.ctx }
func (f *EWFlag) embedJoin(o *EWFlag, c1, c2 *clock.CausalContext) {
	f.dots = f.dots.join(o.dots, c1, c2)
}
func (f *EWFlag) embedDrop(c *clock.CausalContext)     { f.dots = f.dots.drop(c) }
func (f *EWFlag) embedEmpty() bool                     { return len(f.dots) == 0 }
func (f *EWFlag) embedHas(d clock.Dot) bool            { return f.dots.has(d) }
func (f *EWFlag) embedDots(yield func(clock.Dot) bool) { f.dots.dots(yield) }
func (f *EWFlag) embedStoreEqual(o *EWFlag) bool {
	return f.dots.equal(o.dots, func(a, b struct{}) bool { return true })
}
func (f *EWFlag) embedAppend(b []byte, t dotTable) ([]byte, error) { return f.appendStore(b, t) }
func (f *EWFlag) embedDecode(d *decoder, ctx *clock.CausalContext) error {
	dots, _ := f.decodeStore(d, ctx)
	if err := d.finish(); err != nil {
		return err
	}
	f.dots = dots
	return nil
}
