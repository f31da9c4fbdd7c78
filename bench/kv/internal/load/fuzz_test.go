package load

import (
	"strings"
	"testing"
)

func FuzzParseMix(f *testing.F) {
	for _, s := range []string{"set", "get", "set=50,get=50", "get=9,set=1", "", "set=-1", "set=1,set=1", "x=1", "set=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err != nil {
			return
		}
		if m.Set < 0 || m.Get < 0 || m.Set+m.Get <= 0 {
			t.Fatalf("ParseMix(%q) accepted %+v", s, m)
		}
		// The canonical form parses back to the same proportions.
		c, err := ParseMix(m.String())
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", m.String(), s, err)
		}
		if c.Set*m.Get != c.Get*m.Set {
			t.Fatalf("%q -> %+v -> %q -> %+v: proportions differ", s, m, m.String(), c)
		}
	})
}

func FuzzReadRecords(f *testing.F) {
	f.Add(`{"tool":"kvload","system":"x","test":"SET","kind":"set","clients":1,"ops":1,"ops_per_sec":1,"p50_ms":1,"p99_ms":1,"max_ms":1,"errors_total":0}` + "\n")
	f.Add("\n\n{}\n")
	f.Add(`{"errors":{"timeout":1},"p999_ms":null}`)
	f.Add("{bad")
	f.Add(`{"system":"a\nb|c","test":"x\r\ny","errors":{"e\n|":1},"errors_total":1}`)
	f.Fuzz(func(t *testing.T, in string) {
		recs, err := ReadRecords(strings.NewReader(in))
		if err != nil {
			return
		}
		var sb strings.Builder
		if err := WriteTable(&sb, recs); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(sb.String(), "\n"); got != len(recs)+2 {
			t.Fatalf("%d records gave %d table lines", len(recs), got)
		}
		_ = WriteRatios(&sb, Compare(recs, "kvnode", []string{"etcd-3"}), "kvnode", []string{"etcd-3"})
	})
}
