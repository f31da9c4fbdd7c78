package load

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// WriteTable writes recs as a Markdown table, one row per record in order.
func WriteTable(w io.Writer, recs []Record) error {
	var b strings.Builder
	b.WriteString("| system | tool | test | clients | ops/s | p50 ms | p99 ms | p99.9 ms | max ms | errors |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range recs {
		p999 := "–"
		if r.P999Ms != nil {
			p999 = FormatMs(*r.P999Ms)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n",
			cell(r.System), cell(r.Tool), cell(r.Test), r.Clients, FormatRate(r.OpsPerSec),
			FormatMs(r.P50Ms), FormatMs(r.P99Ms), p999, FormatMs(r.MaxMs), formatErrors(r))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatErrors(r Record) string {
	if r.ErrorsAll == 0 {
		return "0"
	}
	parts := []string{strconv.FormatUint(r.ErrorsAll, 10)}
	res := Result{Errors: r.Errors}
	for _, k := range res.ErrorKinds() {
		parts = append(parts, fmt.Sprintf("%s=%d", cell(k), r.Errors[k]))
	}
	return parts[0] + " (" + strings.Join(parts[1:], ", ") + ")"
}

// Comparison pairs a record of the subject with the matching record of
// each baseline system (nil where the baseline has none).
type Comparison struct {
	Subject   Record
	Baselines []*Record
}

// Compare matches every record of system subject with the first record of
// each baseline system measured by the same tool, on the same kind of load,
// with the same number of clients.
func Compare(recs []Record, subject string, baselines []string) []Comparison {
	var out []Comparison
	for _, s := range recs {
		if s.System != subject {
			continue
		}
		c := Comparison{Subject: s, Baselines: make([]*Record, len(baselines))}
		for i, base := range baselines {
			for j := range recs {
				r := &recs[j]
				if r.System == base && r.Tool == s.Tool && r.Kind == s.Kind && r.Clients == s.Clients {
					c.Baselines[i] = r
					break
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// WriteRatios writes the comparisons as a Markdown table: for each baseline,
// the subject's throughput and p99 divided by the baseline's (a throughput
// ratio above 1 and a p99 ratio below 1 favour the subject).
func WriteRatios(w io.Writer, cmp []Comparison, subject string, baselines []string) error {
	var b strings.Builder
	b.WriteString("| tool | test | clients | " + cell(subject) + " ops/s |")
	for _, base := range baselines {
		fmt.Fprintf(&b, " ops/s ÷ %s | p99 ÷ %s |", cell(base), cell(base))
	}
	b.WriteString("\n|---|---|---:|---:|")
	for range baselines {
		b.WriteString("---:|---:|")
	}
	b.WriteString("\n")
	for _, c := range cmp {
		s := c.Subject
		fmt.Fprintf(&b, "| %s | %s | %d | %s |", cell(s.Tool), cell(s.Test), s.Clients, FormatRate(s.OpsPerSec))
		for _, r := range c.Baselines {
			if r == nil {
				b.WriteString(" – | – |")
				continue
			}
			fmt.Fprintf(&b, " %s | %s |", FormatRatio(s.OpsPerSec, r.OpsPerSec), FormatRatio(s.P99Ms, r.P99Ms))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell makes s safe inside a Markdown table cell: one line, no bare "|".
func cell(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "|", "\\|").Replace(s)
}

// FormatRate formats a rate with thousands separators and no decimals.
func FormatRate(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// FormatMs formats milliseconds with three significant digits (at least
// the integer part): 0.0123, 0.943, 5.11, 30.6, 412.
func FormatMs(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// FormatRatio formats a/b as "2.13×", or "–" when b is not positive.
func FormatRatio(a, b float64) string {
	if b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}
