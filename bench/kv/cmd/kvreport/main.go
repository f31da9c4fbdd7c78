// Command kvreport turns the JSON result lines written by kvload (and by the
// benchmark script for redis-benchmark) into Markdown: one table of every
// row, and, when the subject system has rows, a table of its throughput and
// p99 ratios against each baseline system (same tool, same load, same
// number of clients).
//
//	kvreport -in results.jsonl -subject kvnode -baselines etcd-3,redis-fsync
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "-", "JSON lines to read (- for standard input)")
	subject := fs.String("subject", "kvnode", "system whose ratios to the baselines are tabulated")
	baselines := fs.String("baselines", "etcd-3,redis-fsync", "comma-separated baseline systems")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r := stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(stderr, "kvreport:", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	if err := report(r, stdout, *subject, strings.Split(*baselines, ",")); err != nil {
		fmt.Fprintln(stderr, "kvreport:", err)
		return 1
	}
	return 0
}

func report(r io.Reader, w io.Writer, subject string, baselines []string) error {
	recs, err := load.ReadRecords(r)
	if err != nil {
		return err
	}
	if err := load.WriteTable(w, recs); err != nil {
		return err
	}
	cmp := load.Compare(recs, subject, baselines)
	if len(cmp) == 0 {
		_, err := fmt.Fprintf(w, "\nNo %s rows: no ratios.\n", subject)
		return err
	}
	if _, err := fmt.Fprintf(w, "\nRatios of %s to each baseline (same tool, load and clients; ops/s above 1 and p99 below 1 favour %s):\n\n", subject, subject); err != nil {
		return err
	}
	return load.WriteRatios(w, cmp, subject, baselines)
}
