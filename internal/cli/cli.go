// Package cli is the frame of Vitrine's commands (vitrine, vitrine-bench):
// subcommands found by the longest matching name, their flags, help, and
// exit statuses. The commands themselves are flags, configuration and
// calls into the packages that do the work.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

// Env is what every command gets from main: where to print and log.
type Env struct {
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// Command is one subcommand. Run gets the arguments after the command's
// name.
type Command struct {
	Summary string
	Run     func(ctx context.Context, e *Env, args []string) error
}

// Program is a command with subcommands, named by one or two words
// ("up", "log verify").
type Program struct {
	Name     string
	Commands map[string]Command
}

// Main runs the subcommand that os.Args names, with a context that ends
// on SIGINT or SIGTERM, and exits with its status.
func (p *Program) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &Env{Stdout: os.Stdout, Stderr: os.Stderr, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	RouteKlog(e.Logger)
	err := p.Dispatch(ctx, e, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		err = nil
	}
	stop()
	os.Exit(p.ExitStatus(os.Stderr, err))
}

// ExitError is an error with the exit status a command chose; a nil Err
// prints nothing.
type ExitError struct {
	Status int
	Err    error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Status)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// ExitStatus prints err (if any) to w and returns the exit status: 0
// without an error, the status an ExitError carries, 1 otherwise.
func (p *Program) ExitStatus(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	status := 1
	var xe *ExitError
	if errors.As(err, &xe) {
		status = xe.Status
		if xe.Err == nil {
			return status
		}
	}
	fmt.Fprintf(w, "%s: %v\n", p.Name, err)
	return status
}

// Dispatch finds the longest command name that prefixes args and runs it.
// With no arguments it lists the commands and returns an ExitError of
// status 2; "help" (or -h, --help) lists them, and a group ("log", "log
// --help") lists its own.
func (p *Program) Dispatch(ctx context.Context, e *Env, args []string) error {
	for n := min(2, len(args)); n >= 1; n-- {
		if c, ok := p.Commands[strings.Join(args[:n], " ")]; ok {
			return c.Run(ctx, e, args[n:])
		}
	}
	help := func(a string) bool { return a == "help" || a == "-h" || a == "-help" || a == "--help" }
	if len(args) == 0 {
		p.Usage(e.Stderr, "")
		return &ExitError{Status: 2}
	}
	if help(args[0]) {
		p.Usage(e.Stdout, "")
		return nil
	}
	if group := args[0]; p.hasGroup(group) && (len(args) == 1 || help(args[1])) {
		p.Usage(e.Stdout, group)
		return nil
	}
	p.Usage(e.Stderr, "")
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

// hasGroup reports whether some command's name is group followed by a
// subcommand.
func (p *Program) hasGroup(group string) bool {
	for n := range p.Commands {
		if strings.HasPrefix(n, group+" ") {
			return true
		}
	}
	return false
}

// Usage lists the commands whose name is group or starts with it (every
// command for an empty group).
func (p *Program) Usage(w io.Writer, group string) {
	if group == "" {
		fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", p.Name)
	} else {
		fmt.Fprintf(w, "usage: %s %s <command> [flags]\n\ncommands:\n", p.Name, group)
	}
	names := make([]string, 0, len(p.Commands))
	for n := range p.Commands {
		if group == "" || n == group || strings.HasPrefix(n, group+" ") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, p.Commands[n].Summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", p.Name)
}

// Flags returns a flag set for the command name that prints its usage to
// e.Stderr and returns errors instead of exiting.
func (p *Program) Flags(e *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: %s %s %s\n\n%s\n\nflags:\n", p.Name, name, synopsis, p.Commands[name].Summary)
		fs.PrintDefaults()
	}
	return fs
}

// ParseFlags parses args and refuses positional arguments beyond want.
func ParseFlags(fs *flag.FlagSet, args []string, want int) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > want {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args()[want:], " "))
	}
	return nil
}

// SplitList splits a comma-separated flag value, dropping empty items and
// the spaces around each.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ReadToken reads a secret (a bearer token) from the file at path, without
// the spaces around it; what names it in an error.
func ReadToken(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// DefaultOperatorToken is where 'vitrine up' run with its defaults keeps
// the operator token.
const DefaultOperatorToken = "./vitrine-data/operator.token"

// DefaultPlatform is the platform every client command talks to unless
// told otherwise: $VITRINE_URL, or a 'vitrine up' on its default address.
func DefaultPlatform() string {
	if u := os.Getenv("VITRINE_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:8080"
}

// TuneGC trades memory for CPU in the server commands: an append allocates
// a few short-lived objects, and at the default GOGC=100 garbage collection
// takes about a tenth of the CPU under load. The soft memory limit keeps
// that trade from growing the heap without bound when much is live (the
// regions' pending aggregates): past it the collector runs as often as it
// must. GOGC and GOMEMLIMIT set in the environment win.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(goMemoryLimit)
	}
}

// goMemoryLimit is the soft limit of the Go runtime's memory in the
// server commands; SQLite's memory is outside it.
const goMemoryLimit = 192 << 20
