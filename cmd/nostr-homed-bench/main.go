// Command nostr-homed-bench runs nostr-homed's benchmarks and writes the report that
// `make bench` leaves in build/bench/ (report.md and report.json). Every figure is a ratio to a
// baseline measured in the same run; see package internal/benchreport.
//
//	nostr-homed-bench [--root DIR] [--build DIR] [--out DIR] [--go CMD] [--only nss,cas,...]
//
// It exits 0 when every benchmark ran, even if a target was missed; 1 when one could not run.
package main

import (
	"os"

	"github.com/nostr-homed/nostr-homed/internal/benchreport"
)

func main() {
	os.Exit(benchreport.Main(os.Args[1:], os.Stdout, os.Stderr))
}
