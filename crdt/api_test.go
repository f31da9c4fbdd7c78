package crdt_test

import (
	"encoding"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/crdt"
)

// The documented surface, with exact signatures: this file fails to compile
// if any of them changes.
var (
	_ func(string) *crdt.GCounter                   = crdt.NewGCounter
	_ func(*crdt.GCounter, uint64) *crdt.GCounter   = (*crdt.GCounter).Inc
	_ func(*crdt.GCounter) uint64                   = (*crdt.GCounter).Value
	_ func(*crdt.GCounter, *crdt.GCounter)          = (*crdt.GCounter).Merge
	_ func(string) *crdt.PNCounter                  = crdt.NewPNCounter
	_ func(*crdt.PNCounter, uint64) *crdt.PNCounter = (*crdt.PNCounter).Inc
	_ func(*crdt.PNCounter, uint64) *crdt.PNCounter = (*crdt.PNCounter).Dec
	_ func(*crdt.PNCounter) int64                   = (*crdt.PNCounter).Value
	_ func(*crdt.PNCounter, *crdt.PNCounter)        = (*crdt.PNCounter).Merge

	_ func() *crdt.GSet[string]                           = crdt.NewGSet[string]
	_ func(*crdt.GSet[string], string) *crdt.GSet[string] = (*crdt.GSet[string]).Add
	_ func(*crdt.GSet[string], string) bool               = (*crdt.GSet[string]).Contains
	_ func(*crdt.GSet[string]) int                        = (*crdt.GSet[string]).Len
	_ func(*crdt.GSet[string]) []string                   = (*crdt.GSet[string]).Elements
	_ func(*crdt.GSet[string], *crdt.GSet[string])        = (*crdt.GSet[string]).Merge
	_ func(string) *crdt.ORSet[int]                       = crdt.NewORSet[int]
	_ func(*crdt.ORSet[int], int) *crdt.ORSet[int]        = (*crdt.ORSet[int]).Add
	_ func(*crdt.ORSet[int], int) *crdt.ORSet[int]        = (*crdt.ORSet[int]).Remove
	_ func(*crdt.ORSet[int], int) bool                    = (*crdt.ORSet[int]).Contains
	_ func(*crdt.ORSet[int]) int                          = (*crdt.ORSet[int]).Len
	_ func(*crdt.ORSet[int]) []int                        = (*crdt.ORSet[int]).Elements
	_ func(*crdt.ORSet[int], *crdt.ORSet[int])            = (*crdt.ORSet[int]).Merge

	_ func(string, *clock.HLC) *crdt.LWWRegister[[]byte]                = crdt.NewLWWRegister[[]byte]
	_ func(*crdt.LWWRegister[[]byte], []byte) *crdt.LWWRegister[[]byte] = (*crdt.LWWRegister[[]byte]).Set
	_ func(*crdt.LWWRegister[[]byte]) ([]byte, bool)                    = (*crdt.LWWRegister[[]byte]).Get
	_ func(*crdt.LWWRegister[[]byte], *crdt.LWWRegister[[]byte])        = (*crdt.LWWRegister[[]byte]).Merge
	_ func(string) *crdt.MVRegister[string]                             = crdt.NewMVRegister[string]
	_ func(*crdt.MVRegister[string], string) *crdt.MVRegister[string]   = (*crdt.MVRegister[string]).Set
	_ func(*crdt.MVRegister[string]) []string                           = (*crdt.MVRegister[string]).Values
	_ func(*crdt.MVRegister[string], *crdt.MVRegister[string])          = (*crdt.MVRegister[string]).Merge
)

// Every type encodes.
var (
	_ encoding.BinaryMarshaler   = (*crdt.GCounter)(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.GCounter)(nil)
	_ encoding.BinaryMarshaler   = (*crdt.PNCounter)(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.PNCounter)(nil)
	_ encoding.BinaryMarshaler   = (*crdt.GSet[int])(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.GSet[int])(nil)
	_ encoding.BinaryMarshaler   = (*crdt.ORSet[int])(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.ORSet[int])(nil)
	_ encoding.BinaryMarshaler   = (*crdt.LWWRegister[int])(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.LWWRegister[int])(nil)
	_ encoding.BinaryMarshaler   = (*crdt.MVRegister[int])(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.MVRegister[int])(nil)
	_ encoding.BinaryMarshaler   = (*crdt.CCounter)(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.CCounter)(nil)
	_ encoding.BinaryMarshaler   = (*crdt.EWFlag)(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.EWFlag)(nil)
	_ encoding.BinaryMarshaler   = (*crdt.ORMap[string, *crdt.CCounter])(nil)
	_ encoding.BinaryUnmarshaler = (*crdt.ORMap[string, *crdt.CCounter])(nil)
	_ encoding.BinaryAppender    = (*crdt.ORSet[int])(nil)
)
