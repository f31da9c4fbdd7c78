package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := `{"tool":"kvload","system":"etcd-3","test":"SET","kind":"set","clients":64,"ops_per_sec":5000,"p50_ms":10,"p99_ms":30,"p999_ms":50,"max_ms":60,"errors_total":0}
{"tool":"kvload","system":"kvnode","test":"SET","kind":"set","clients":64,"ops_per_sec":11000,"p50_ms":4,"p99_ms":15,"p999_ms":20,"max_ms":25,"errors_total":2,"errors":{"timeout":2}}
`
	var out, errOut strings.Builder
	if code := run([]string{"-baselines", "etcd-3,redis-fsync"}, strings.NewReader(in), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"| etcd-3 | kvload | SET | 64 | 5,000 | 10 | 30 | 50 | 60 | 0 |",
		"| kvnode | kvload | SET | 64 | 11,000 | 4 | 15 | 20 | 25 | 2 (timeout=2) |",
		"| kvload | SET | 64 | 11,000 | 2.20× | 0.50× | – | – |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if code := run(nil, strings.NewReader(in[:strings.Index(in, "\n")+1]), &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "No kvnode rows") {
		t.Errorf("without kvnode rows:\n%s", out.String())
	}

	errOut.Reset()
	if code := run(nil, strings.NewReader("{bad\n"), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "line 1") {
		t.Errorf("bad input: exit %d, stderr %q", code, errOut.String())
	}
}
