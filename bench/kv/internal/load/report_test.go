package load

import (
	"strings"
	"testing"
	"time"
)

func TestFormatters(t *testing.T) {
	rates := map[float64]string{0: "0", 999.4: "999", 4854.2: "4,854", 1234567: "1,234,567", -1500: "-1,500"}
	for v, want := range rates {
		if got := FormatRate(v); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", v, got, want)
		}
	}
	msCases := map[float64]string{0: "0", 0.943: "0.943", 0.0123: "0.0123", 5.114: "5.11", 30.64: "30.6", 412.4: "412", 1234.6: "1235"}
	for v, want := range msCases {
		if got := FormatMs(v); got != want {
			t.Errorf("FormatMs(%v) = %q, want %q", v, got, want)
		}
	}
	if got := FormatRatio(10, 4); got != "2.50×" {
		t.Errorf("FormatRatio(10, 4) = %q", got)
	}
	if got := FormatRatio(10, 0); got != "–" {
		t.Errorf("FormatRatio(10, 0) = %q", got)
	}
}

func TestRecordFillAndRoundTrip(t *testing.T) {
	res := &Result{Window: 2 * time.Second, Sets: 300, Gets: 100, Misses: 7,
		Errors: map[string]uint64{"timeout": 2, "resp:ERR": 1}, Latency: new(Histogram)}
	for i := 1; i <= 400; i++ {
		res.Latency.Record(time.Duration(i) * time.Microsecond)
	}
	var rec Record
	rec.Tool, rec.System, rec.Test, rec.Kind, rec.Clients = "kvload", "x", "SET", "set", 4
	rec.Fill(res)
	if rec.Ops != 400 || rec.OpsPerSec != 200 || rec.ErrorsAll != 3 || rec.Misses != 7 {
		t.Errorf("filled %+v", rec)
	}
	if rec.P50Ms != 0.201 || rec.MaxMs != 0.4 || rec.P999Ms == nil || *rec.P999Ms != 0.4 {
		t.Errorf("p50 %v max %v p999 %v, want 0.201 (bucket bound) 0.4 0.4", rec.P50Ms, rec.MaxMs, *rec.P999Ms)
	}

	var sb strings.Builder
	if err := WriteTable(&sb, []Record{rec}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "| x | kvload | SET | 4 | 200 | 0.201 | 0.397 | 0.4 | 0.4 | 3 (resp:ERR=1, timeout=2) |") {
		t.Errorf("table:\n%s", sb.String())
	}

	line := `{"tool":"kvload","system":"x","test":"SET","kind":"set","clients":4,"ops":400,"ops_per_sec":200,"p50_ms":0.2,"p99_ms":0.396,"p999_ms":0.4,"max_ms":0.4,"errors_total":0}`
	recs, err := ReadRecords(strings.NewReader("\n" + line + "\n\n"))
	if err != nil || len(recs) != 1 || recs[0].OpsPerSec != 200 || *recs[0].P999Ms != 0.4 {
		t.Fatalf("ReadRecords = %+v, %v", recs, err)
	}
	if _, err := ReadRecords(strings.NewReader(line + "\n{not json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: err = %v, want one naming line 2", err)
	}
}

func TestCompareAndRatios(t *testing.T) {
	recs := []Record{
		{Tool: "kvload", System: "etcd-3", Test: "SET", Kind: "set", Clients: 64, OpsPerSec: 5000, P99Ms: 30},
		{Tool: "kvload", System: "etcd-3", Test: "GET linearizable", Kind: "get", Clients: 64, OpsPerSec: 10000, P99Ms: 15},
		{Tool: "kvload", System: "redis-fsync", Test: "SET", Kind: "set", Clients: 64, OpsPerSec: 40000, P99Ms: 3},
		{Tool: "kvload", System: "kvnode", Test: "SET", Kind: "set", Clients: 64, OpsPerSec: 12000, P99Ms: 15},
		{Tool: "kvload", System: "kvnode", Test: "GET", Kind: "get", Clients: 64, OpsPerSec: 25000, P99Ms: 6},
		{Tool: "kvload", System: "kvnode", Test: "SET", Kind: "set", Clients: 1, OpsPerSec: 900, P99Ms: 2},
		{Tool: "redis-benchmark", System: "kvnode", Test: "SET", Kind: "set", Clients: 50, OpsPerSec: 9000, P99Ms: 9},
		{Tool: "redis-benchmark", System: "redis-fsync", Test: "SET", Kind: "set", Clients: 50, OpsPerSec: 45000, P99Ms: 1},
	}
	base := []string{"etcd-3", "redis-fsync"}
	cmp := Compare(recs, "kvnode", base)
	if len(cmp) != 4 {
		t.Fatalf("%d comparisons, want 4", len(cmp))
	}
	want := []struct {
		etcd, redis *Record
	}{
		{&recs[0], &recs[2]}, // SET 64: both
		{&recs[1], nil},      // GET 64: the linearizable etcd GET, no Redis row
		{nil, nil},           // SET 1: no baseline at 1 client
		{nil, &recs[7]},      // redis-benchmark SET: only the same tool matches
	}
	for i, w := range want {
		if cmp[i].Baselines[0] != w.etcd || cmp[i].Baselines[1] != w.redis {
			t.Errorf("comparison %d (%s %s c%d): baselines %v, want %v %v", i,
				cmp[i].Subject.Tool, cmp[i].Subject.Test, cmp[i].Subject.Clients, cmp[i].Baselines, w.etcd, w.redis)
		}
	}
	var sb strings.Builder
	if err := WriteRatios(&sb, cmp, "kvnode", base); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	for _, row := range []string{
		"| kvload | SET | 64 | 12,000 | 2.40× | 0.50× | 0.30× | 5.00× |",
		"| kvload | GET | 64 | 25,000 | 2.50× | 0.40× | – | – |",
		"| redis-benchmark | SET | 50 | 9,000 | – | – | 0.20× | 9.00× |",
	} {
		if !strings.Contains(out, row) {
			t.Errorf("ratios lack %q:\n%s", row, out)
		}
	}
	if len(Compare(recs, "absent", base)) != 0 {
		t.Error("comparisons for a system with no rows")
	}
}
