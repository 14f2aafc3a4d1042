// Command vitrine-bench measures a running Vitrine platform: log appends,
// telemetry ingest, verdict lookups, propagation between regions,
// relocations, logged reads and scanning, each beside its baseline in the
// same run (docs/performance.md gives the figures and the commands that
// reproduce them). It is kept apart from the vitrine command, as Tessera
// keeps its hammer apart from its servers.
//
// Run `vitrine-bench help` for the list of measurements.
package main

import (
	"flag"

	"github.com/vitrine-dev/vitrine/internal/cli"
)

// env is what every measurement gets from main: where to print and log.
type env = cli.Env

// program is this command; its subcommands are filled in init.
var program = &cli.Program{Name: "vitrine-bench"}

func init() {
	program.Commands = map[string]cli.Command{
		"appends":     {Summary: "measure append throughput and latency against a log", Run: runBench},
		"ingest":      {Summary: "measure telemetry ingest over HTTP beside a raw SQLite insert of the same rows", Run: runBenchIngest},
		"verdicts":    {Summary: "measure batched verdict lookups beside single ones", Run: runBenchVerdicts},
		"propagation": {Summary: "measure the time from a report in one region to a verdict in another", Run: runBenchPropagation},
		"relocate":    {Summary: "measure a relocation of a country's records between regions", Run: runBenchRelocate},
		"access":      {Summary: "measure logged reads through the access gateway beside plain appends to its log", Run: runBenchAccess},
		"scan":        {Summary: "measure scanning throughput and database load beside clamscan -d on the same rules and corpus", Run: runBenchScan},
	}
}

func main() { program.Main() }

// newFlags returns the flag set of the measurement name.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	return program.Flags(e, name, synopsis)
}

// parseFlags parses args and refuses positional arguments beyond want.
func parseFlags(fs *flag.FlagSet, args []string, want int) error {
	return cli.ParseFlags(fs, args, want)
}
