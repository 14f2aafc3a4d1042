package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/monitor"
)

// platforms is a repeatable --platform flag.
type platforms []string

func (p *platforms) String() string     { return strings.Join(*p, ",") }
func (p *platforms) Set(v string) error { *p = append(*p, strings.TrimRight(v, "/")); return nil }

func runMonitor(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "monitor", "--data DIR --listen ADDR --platform URL [--platform URL …] [--rules FILE]")
	data := fs.String("data", "", "state directory (required): pins, monitor.db (alerts and followers' states)")
	listen := fs.String("listen", "127.0.0.1:2027", "address to serve GET /v1/alerts and POST /v1/checkpoints on")
	var plats platforms
	fs.Var(&plats, "platform", "base `URL` of a platform to supervise (repeat for several)")
	rulesFile := fs.String("rules", "", "rules file (JSON, see docs/design/monitor.md); default: the rules that ship")
	interval := fs.Duration("interval", 10*time.Second, "time between passes over every log")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *interval <= 0 {
		return errors.New("--interval must be positive")
	}
	if *data == "" || len(plats) == 0 {
		fs.Usage()
		return errors.New("--data and at least one --platform are required")
	}
	rules := monitor.DefaultRules()
	if *rulesFile != "" {
		b, err := os.ReadFile(*rulesFile)
		if err != nil {
			return fmt.Errorf("reading rules: %w", err)
		}
		if rules, err = monitor.ParseRules(b); err != nil {
			return fmt.Errorf("%s: %w", *rulesFile, err)
		}
	}
	compiled, err := monitor.Compile(rules)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	m, err := monitor.New(ctx, monitor.Config{Dir: *data, Platforms: plats, Rules: compiled, Interval: *interval, Logger: e.Logger})
	if err != nil {
		return err
	}
	defer m.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The passes stop before the store closes (m.Close, deferred), on
	// either way out.
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()
	fmt.Fprintf(e.Stdout, "monitor of %d platforms with %d rules; alerts at http://%s/v1/alerts, checkpoints to http://%s/v1/checkpoints\n", len(plats), compiled.Len(), ln.Addr(), ln.Addr())
	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-served:
		serveErr = fmt.Errorf("server stopped: %w", err)
	}
	stopRun()
	<-ran
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(serveErr, srv.Shutdown(sctx))
}
