package quorum_test

import (
	"testing"

	"github.com/distkit/distkit/quorum"
)

func FuzzParseLevel(f *testing.F) {
	for _, s := range []string{"", "one", "QUORUM", "All", "3", "0", "-1", "9999999999999999999999", "two"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := quorum.ParseLevel(s)
		if err != nil {
			return
		}
		back, err := quorum.ParseLevel(l.String())
		if err != nil || back != l {
			t.Fatalf("ParseLevel(%q) = %v, which does not round-trip (%v, %v)", s, l, back, err)
		}
		if l != quorum.Default {
			if _, err := l.Need(int(max(l, 1))); err != nil && l > 0 {
				t.Fatalf("%v.Need(%d): %v", l, l, err)
			}
		}
	})
}
