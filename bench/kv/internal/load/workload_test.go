package load

import (
	"errors"
	"math"
	"testing"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    Mix
		canon   string
		wantErr bool
	}{
		{in: "set", want: Mix{Set: 100}, canon: "set"},
		{in: "get", want: Mix{Get: 100}, canon: "get"},
		{in: "set=100", want: Mix{Set: 100}, canon: "set"},
		{in: "GET=100", want: Mix{Get: 100}, canon: "get"},
		{in: "set=50,get=50", want: Mix{Set: 50, Get: 50}, canon: "set=1,get=1"},
		{in: " get=90 , set=10 ", want: Mix{Set: 10, Get: 90}, canon: "set=1,get=9"},
		{in: "set=0,get=5", want: Mix{Get: 5}, canon: "get"},
		{in: "", wantErr: true},
		{in: "del", wantErr: true},
		{in: "set=-1,get=5", wantErr: true},
		{in: "set=x", wantErr: true},
		{in: "set=0,get=0", wantErr: true},
		{in: "set=1,set=2", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseMix(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadMix) {
				t.Errorf("ParseMix(%q) error = %v, want ErrBadMix", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMix(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.canon {
			t.Errorf("ParseMix(%q).String() = %q, want %q", tt.in, s, tt.canon)
		}
	}
}

func TestFormatKey(t *testing.T) {
	tests := []struct {
		i    int
		want string
	}{
		{0, "key:000000000000"},
		{42, "key:000000000042"},
		{99999, "key:000000099999"},
		{MaxKeys - 1, "key:999999999999"},
	}
	for _, tt := range tests {
		if got := Key(tt.i); got != tt.want || len(got) != KeySize {
			t.Errorf("Key(%d) = %q, want %q (%d bytes)", tt.i, got, tt.want, KeySize)
		}
	}
}

func TestWorkloadValidate(t *testing.T) {
	ok := Workload{Mix: Mix{Set: 1}, Keys: 10, ValueSize: 256}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid workload: %v", err)
	}
	bad := []Workload{
		{Mix: Mix{}, Keys: 10},
		{Mix: Mix{Set: -1, Get: 2}, Keys: 10},
		{Mix: Mix{Set: 1}, Keys: 0},
		{Mix: Mix{Set: 1}, Keys: MaxKeys + 1},
		{Mix: Mix{Set: 1}, Keys: 10, ValueSize: -1},
	}
	for _, w := range bad {
		if err := w.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", w)
		}
	}
}

func TestGenDeterministicPerClient(t *testing.T) {
	w := Workload{Mix: Mix{Set: 1, Get: 1}, Keys: 1000, ValueSize: 256, Seed: 9}
	seq := func(w Workload, client int) []int {
		g := w.NewGen(client)
		out := make([]int, 0, 200)
		for range 100 {
			op, k := g.Next()
			out = append(out, int(op), k)
		}
		return out
	}
	a, b, c := seq(w, 0), seq(w, 0), seq(w, 1)
	if !equalInts(a, b) {
		t.Fatal("same client, same workload: sequences differ")
	}
	if equalInts(a, c) {
		t.Fatal("clients 0 and 1 produce the same sequence")
	}
	w2 := w
	w2.Seed = 10
	if equalInts(a, seq(w2, 0)) {
		t.Fatal("different seeds produce the same sequence")
	}
	v1, v2 := Value(9, 0, 256), Value(9, 0, 256)
	if string(v1) != string(v2) || len(v1) != 256 {
		t.Fatalf("Value not deterministic or wrong size: %d bytes", len(v1))
	}
	for _, ch := range v1 {
		if ch < '0' || ch > 'z' {
			t.Fatalf("Value has non-printable byte %q", ch)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGenFollowsMixAndKeySpace(t *testing.T) {
	tests := []struct {
		mix     Mix
		wantSet float64
	}{
		{Mix{Set: 100}, 1},
		{Mix{Get: 100}, 0},
		{Mix{Set: 50, Get: 50}, 0.5},
		{Mix{Set: 1, Get: 9}, 0.1},
	}
	const n, keys = 100_000, 50
	for _, tt := range tests {
		g := Workload{Mix: tt.mix, Keys: keys, ValueSize: 8, Seed: 1}.NewGen(3)
		sets := 0
		hits := make([]int, keys)
		for range n {
			op, k := g.Next()
			if k < 0 || k >= keys {
				t.Fatalf("%v: key index %d outside [0, %d)", tt.mix, k, keys)
			}
			hits[k]++
			if op == OpSet {
				sets++
			}
		}
		if frac := float64(sets) / n; math.Abs(frac-tt.wantSet) > 0.01 {
			t.Errorf("%v: SET fraction %.3f, want %.3f ± 0.01", tt.mix, frac, tt.wantSet)
		}
		for k, c := range hits { // uniform: n/keys = 2000 each, far inside ±20%
			if c < 1600 || c > 2400 {
				t.Errorf("%v: key %d drawn %d times, want about %d", tt.mix, k, c, n/keys)
			}
		}
	}
}

func TestGenKeyAndOpString(t *testing.T) {
	g := Workload{Mix: Mix{Set: 1}, Keys: 10, ValueSize: 4}.NewGen(0)
	if got := string(g.Key(7)); got != "key:000000000007" {
		t.Errorf("Key(7) = %q", got)
	}
	if len(g.Value()) != 4 {
		t.Errorf("Value is %d bytes, want 4", len(g.Value()))
	}
	if OpSet.String() != "set" || OpGet.String() != "get" || Op(9).String() != "op(9)" {
		t.Errorf("Op strings: %s %s %s", OpSet, OpGet, Op(9))
	}
}
