// Command vitrine runs and verifies the Vitrine transparency platform.
//
// Run `vitrine help` for the list of commands and `vitrine <command> --help`
// for each one's flags.
package main

import (
	"context"
	"flag"

	"github.com/vitrine-dev/vitrine/internal/cli"
)

// env is what every command gets from main: where to print and log.
type env = cli.Env

// program is this command; its subcommands are filled in init.
var program = &cli.Program{Name: "vitrine"}

// commands is filled in init: the commands refer back to it for their usage.
var commands map[string]cli.Command

func init() {
	commands = map[string]cli.Command{
		"up":                 {Summary: "start every role in one process (logs, witness, discovery)", Run: runUp},
		"serve":              {Summary: "run one role of a deployment from its configuration file: all (what up runs), logs, releases, center, or region:<name>, one of the processes of a region's service", Run: runServe},
		"log serve":          {Summary: "serve one standalone witnessed log", Run: runLogServe},
		"log verify":         {Summary: "verify a log: checkpoint, witness quorum, whole tree, consistency", Run: runLogVerify},
		"log prove":          {Summary: "write a C2SP tlog-proof for an entry", Run: runLogProve},
		"log verify-proof":   {Summary: "check a C2SP tlog-proof offline", Run: runLogVerifyProof},
		"custody":            {Summary: "run the supervisor's key custody in its own process", Run: runCustody},
		"custody reconcile":  {Summary: "check custody's unwrap counts against the access logs", Run: runCustodyReconcile},
		"witness":            {Summary: "run a C2SP tlog-witness", Run: runWitness},
		"report":             {Summary: "print a platform's transparency report (accesses by month, justification and action) as JSON, from its proven access logs", Run: runReport},
		"center":             {Summary: "serve the Transparency Center over a platform, reading only its public routes", Run: runCenter},
		"supervisor":         {Summary: "run the supervisor as its own party: witness, custody, pseudonyms and monitor for its member vendors", Run: runSupervisor},
		"monitor":            {Summary: "follow every log of the platforms a supervisor supervises, check rules, raise alerts", Run: runMonitor},
		"monitor ack":        {Summary: "acknowledge an alert with a note, logged in the monitor's acknowledgement log (the supervisor)", Run: runMonitorAck},
		"monitor test-alert": {Summary: "raise a test alert and wait until the running monitor delivered it to every target", Run: runMonitorTestAlert},
		"policy show":        {Summary: "print the active residency policy from the policy log", Run: runPolicyShow},
		"policy diff":        {Summary: "print what changed between two residency policy versions", Run: runPolicyDiff},
		"agent register":     {Summary: "register this endpoint with a platform and pin its trust", Run: runAgentRegister},
		"agent update":       {Summary: "install the newest releases that TUF, the provenance, the release log and the witnesses accept", Run: runAgentUpdate},
		"agent accesses":     {Summary: "list every access to this endpoint's data, from a supervisor's monitor, each proven in its log", Run: runAgentAccesses},
		"agent scan":         {Summary: "scan files with the installed rule database and report detections", Run: runAgentScan},
		"build":              {Summary: "build a recipe on the platform, sign, log and publish the release", Run: runBuild},
		"release verify":     {Summary: "check an artifact against its provenance, signature and release-log inclusion", Run: runReleaseVerify},
		"tuf init":           {Summary: "make the update repository's TUF root and its offline root keys", Run: runTUFInit},
		"tuf rotate":         {Summary: "sign the next TUF root (new root keys, or a new targets key to revoke one)", Run: runTUFRotate},
		"tuf push-root":      {Summary: "give the platform a new TUF root (operator)", Run: runTUFPushRoot},
		"tuf verify":         {Summary: "download and verify every update with go-tuf's client, from discovery alone", Run: runTUFVerify},
		"rebuild":            {Summary: "follow the release log, rebuild each release and serve signed verdicts until stopped", Run: runRebuild},
		"rebuild verify":     {Summary: "check a rebuilder's signed verdict on a release, and that it is about the logged entry", Run: runRebuildVerify},
		"ruledb compile":     {Summary: "compile rule sources (.hdb, .hsb, .ndb) into a rule database", Run: runRuleDBCompile},
		"ruledb diff":        {Summary: "list the signatures added and removed between two rule databases", Run: runRuleDBDiff},
		"relocate":           {Summary: "move every record of a country to another region, provably", Run: runRelocate},
		"relocate verify":    {Summary: "check a relocation from the logs alone", Run: runRelocateVerify},
		"commitment verify":  {Summary: "check a region's dataset commitment, proven from its access log, against records you hold", Run: runCommitmentVerify},
		"principal create":   {Summary: "create a principal (analyst, supervisor, …) and print its token", Run: runPrincipalCreate},
		"principal revoke":   {Summary: "revoke a principal: its token stops working at once", Run: runPrincipalRevoke},
	}
}

func main() {
	program.Commands = commands
	program.Main()
}

// dispatch runs the subcommand args name (see [cli.Program.Dispatch]).
func dispatch(ctx context.Context, e *env, args []string) error {
	program.Commands = commands
	return program.Dispatch(ctx, e, args)
}

// newFlags returns the flag set of the subcommand name.
func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	return program.Flags(e, name, synopsis)
}

// parseFlags parses args and refuses positional arguments beyond want.
func parseFlags(fs *flag.FlagSet, args []string, want int) error {
	return cli.ParseFlags(fs, args, want)
}
