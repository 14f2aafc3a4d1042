// Command vitrine runs and verifies the Vitrine transparency platform.
//
// Run `vitrine help` for the list of commands and `vitrine <command> --help`
// for each one's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run gets the arguments after the command name.
type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets from main: where to print and log.
type env struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
}

// commands is filled in init: the commands refer back to it for their usage.
var commands map[string]command

func init() {
	commands = map[string]command{
		"up":                {"start every role in one process (logs, witness, discovery)", runUp},
		"log serve":         {"serve one standalone witnessed log", runLogServe},
		"log verify":        {"verify a log: checkpoint, witness quorum, whole tree, consistency", runLogVerify},
		"log prove":         {"write a C2SP tlog-proof for an entry", runLogProve},
		"log verify-proof":  {"check a C2SP tlog-proof offline", runLogVerifyProof},
		"custody":           {"run the supervisor's key custody in its own process", runCustody},
		"custody reconcile": {"check custody's unwrap counts against the access logs", runCustodyReconcile},
		"witness":           {"run a C2SP tlog-witness", runWitness},
		"policy show":       {"print the active residency policy from the policy log", runPolicyShow},
		"policy diff":       {"print what changed between two residency policy versions", runPolicyDiff},
		"agent register":    {"register this endpoint with a platform and pin its trust", runAgentRegister},
		"agent update":      {"install the newest releases that TUF, the provenance, the release log and the witnesses accept", runAgentUpdate},
		"agent scan":        {"scan files with the installed rule database and report detections", runAgentScan},
		"build":             {"build a recipe on the platform, sign, log and publish the release", runBuild},
		"release verify":    {"check an artifact against its provenance, signature and release-log inclusion", runReleaseVerify},
		"tuf init":          {"make the update repository's TUF root and its offline root keys", runTUFInit},
		"tuf rotate":        {"sign the next TUF root (new root keys, or a new targets key to revoke one)", runTUFRotate},
		"tuf push-root":     {"give the platform a new TUF root (operator)", runTUFPushRoot},
		"tuf verify":        {"download and verify every update with go-tuf's client, from discovery alone", runTUFVerify},
		"rebuild":           {"follow the release log, rebuild each release and serve signed verdicts until stopped", runRebuild},
		"rebuild verify":    {"check a rebuilder's signed verdict on a release, and that it is about the logged entry", runRebuildVerify},
		"ruledb compile":    {"compile rule sources (.hdb, .hsb, .ndb) into a rule database", runRuleDBCompile},
		"ruledb diff":       {"list the signatures added and removed between two rule databases", runRuleDBDiff},
		"relocate":          {"move every record of a country to another region, provably", runRelocate},
		"relocate verify":   {"check a relocation from the logs alone", runRelocateVerify},
		"commitment verify": {"check a region's dataset commitment, proven from its access log, against records you hold", runCommitmentVerify},
		"principal create":  {"create a principal (analyst, supervisor, …) and print its token", runPrincipalCreate},
		"principal revoke":  {"revoke a principal: its token stops working at once", runPrincipalRevoke},
		"bench":             {"measure append throughput and latency against a log", runBench},
		"bench ingest":      {"measure telemetry ingest over HTTP beside a raw SQLite insert of the same rows", runBenchIngest},
		"bench verdicts":    {"measure batched verdict lookups beside single ones", runBenchVerdicts},
		"bench propagation": {"measure the time from a report in one region to a verdict in another", runBenchPropagation},
		"bench relocate":    {"measure a relocation of a country's records between regions", runBenchRelocate},
		"bench access":      {"measure logged reads through the access gateway beside plain appends to its log", runBenchAccess},
		"bench scan":        {"measure scanning throughput and database load beside clamscan -d on the same rules and corpus", runBenchScan},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	routeKlog(e.logger)
	err := dispatch(ctx, e, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		err = nil
	}
	os.Exit(exitStatus(os.Stderr, err))
}

// exitError is an error with the exit status a command chose; a nil err
// prints nothing.
type exitError struct {
	status int
	err    error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.status)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitStatus prints err (if any) to w and returns the exit status: 0
// without an error, the status an exitError carries, 1 otherwise.
func exitStatus(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	status := 1
	var xe *exitError
	if errors.As(err, &xe) {
		status = xe.status
		if xe.err == nil {
			return status
		}
	}
	fmt.Fprintf(w, "vitrine: %v\n", err)
	return status
}

// dispatch finds the longest command name that prefixes args and runs it.
func dispatch(ctx context.Context, e *env, args []string) error {
	for n := min(2, len(args)); n >= 1; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c.run(ctx, e, args[n:])
		}
	}
	help := func(a string) bool { return a == "help" || a == "-h" || a == "-help" || a == "--help" }
	if len(args) == 0 {
		usage(e.stderr, "")
		return &exitError{status: 2}
	}
	if help(args[0]) {
		usage(e.stdout, "")
		return nil
	}
	// A group ("vitrine log", "vitrine log --help"): its commands.
	if group := args[0]; hasGroup(group) && (len(args) == 1 || help(args[1])) {
		usage(e.stdout, group)
		return nil
	}
	usage(e.stderr, "")
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

// hasGroup reports whether some command's name is group followed by a
// subcommand.
func hasGroup(group string) bool {
	for n := range commands {
		if strings.HasPrefix(n, group+" ") {
			return true
		}
	}
	return false
}

// usage lists the commands whose name is group or starts with it (every
// command for an empty group).
func usage(w io.Writer, group string) {
	if group == "" {
		fmt.Fprintln(w, "usage: vitrine <command> [flags]\n\ncommands:")
	} else {
		fmt.Fprintf(w, "usage: vitrine %s <command> [flags]\n\ncommands:\n", group)
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		if group == "" || n == group || strings.HasPrefix(n, group+" ") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'vitrine <command> --help' for a command's flags.")
}

// newFlags returns a flag set for a command that prints its usage to
// e.stderr and returns errors instead of exiting.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: vitrine %s %s\n\n%s\n\nflags:\n", name, synopsis, commands[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and refuses positional arguments beyond want.
func parseFlags(fs *flag.FlagSet, args []string, want int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > want {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args()[want:], " "))
	}
	return nil
}
