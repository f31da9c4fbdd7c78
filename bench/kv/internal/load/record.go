package load

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Record is one row of results: a kvload run or a redis-benchmark test. It
// is written and read as one JSON object per line.
type Record struct {
	Tool      string            `json:"tool"`             // "kvload" or "redis-benchmark"
	System    string            `json:"system"`           // label of the system under test
	Proto     string            `json:"proto,omitempty"`  // "resp" or "etcd"
	Test      string            `json:"test"`             // human label, e.g. "GET linearizable"
	Kind      string            `json:"kind"`             // canonical mix: "set", "get", "set=1,get=1"
	Read      string            `json:"read,omitempty"`   // etcd read consistency
	Clients   int               `json:"clients"`          // concurrent clients
	Conns     int               `json:"conns,omitempty"`  // connections, when fewer than clients
	Target    string            `json:"target,omitempty"` // how clients were spread over endpoints
	Endpoints []string          `json:"endpoints,omitempty"`
	Keys      int               `json:"keys,omitempty"`
	ValueSize int               `json:"value_size,omitempty"`
	Preload   int               `json:"preload,omitempty"`
	WarmupS   float64           `json:"warmup_s,omitempty"`
	WindowS   float64           `json:"window_s,omitempty"`
	Ops       uint64            `json:"ops"`
	OpsPerSec float64           `json:"ops_per_sec"`
	Misses    uint64            `json:"misses,omitempty"`
	P50Ms     float64           `json:"p50_ms"`
	P99Ms     float64           `json:"p99_ms"`
	P999Ms    *float64          `json:"p999_ms,omitempty"` // absent when the tool does not report it
	MaxMs     float64           `json:"max_ms"`
	MeanMs    float64           `json:"mean_ms,omitempty"`
	Errors    map[string]uint64 `json:"errors,omitempty"`
	ErrorsAll uint64            `json:"errors_total"`
	Command   string            `json:"command,omitempty"`
}

// ms converts a duration to milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}

// Fill copies the measured figures of r into rec.
func (rec *Record) Fill(r *Result) {
	rec.WindowS = r.Window.Seconds()
	rec.Ops = r.Ops()
	rec.OpsPerSec = math.Round(r.Throughput()*10) / 10
	rec.Misses = r.Misses
	rec.P50Ms = ms(r.Latency.Quantile(0.50))
	rec.P99Ms = ms(r.Latency.Quantile(0.99))
	p999 := ms(r.Latency.Quantile(0.999))
	rec.P999Ms = &p999
	rec.MaxMs = ms(r.Latency.Max())
	rec.MeanMs = ms(r.Latency.Mean())
	rec.ErrorsAll = r.ErrorCount()
	if rec.ErrorsAll > 0 {
		rec.Errors = r.Errors
	}
}

// ReadRecords reads JSON lines; blank lines are skipped.
func ReadRecords(r io.Reader) ([]Record, error) {
	var recs []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			return nil, fmt.Errorf("load: line %d: %w", line, err)
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}
