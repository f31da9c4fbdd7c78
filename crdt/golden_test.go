package crdt

import (
	"encoding/hex"
	"testing"

	"github.com/distkit/distkit/clock"
)

// TestGoldenEncodings freezes the version-1 wire format: a change to any of
// these bytes breaks compatibility with stored and in-flight data and must
// come with a new format version.
func TestGoldenEncodings(t *testing.T) {
	fixed := clock.NewHLC(clock.WithPhysicalClock(func() int64 { return 1_700_000_000_000_000_000 }))
	g := NewGCounter("a")
	g.Inc(3)
	pn := NewPNCounter("a")
	pn.Inc(2)
	pn.Dec(1)
	gs := NewGSet[string]()
	gs.Add("y")
	gs.Add("x")
	os := NewORSet[string]("a")
	os.Add("x")
	os.Add("y")
	os.Remove("x")
	lww := NewLWWRegister[string]("a", fixed)
	lww.Set("v")
	mv := NewMVRegister[int]("a")
	mv.Set(-1)
	cc := NewCCounter("a")
	cc.Inc(5)
	fl := NewEWFlag("a")
	fl.Enable()
	om := NewORMap[string, *CCounter]("a")
	om.Update("k", func(c *CCounter) *CCounter { return c.Inc(1) })

	tests := []struct {
		name string
		v    interface{ MarshalBinary() ([]byte, error) }
		want string
	}{
		{"GCounter", g, "01010101016103"},
		{"PNCounter", pn, "01020501010161020101016101"},
		{"GSet", gs, "01030201780179"},
		{"ORSet", os, "010401016101000200010179010002"},
		{"LWWRegister", lww, "01050197979cfe362a00000000000001610176"},
		{"MVRegister", mv, "0106010161010001000100010101"},
		{"CCounter", cc, "0107010161010001000100010a"},
		{"EWFlag", fl, "010801016101000100010001"},
		{"ORMap", om, "01090101610100010001016b0401000102"},
	}
	for _, tt := range tests {
		b, err := tt.v.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := hex.EncodeToString(b); got != tt.want {
			t.Errorf("%s: encoding %s, want %s", tt.name, got, tt.want)
		}
	}
}
