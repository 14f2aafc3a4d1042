package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/witness"
)

func runWitness(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "witness", "--data DIR --listen ADDR --name NAME --logs FILE [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	data := fs.String("data", "", "state directory (required): witness.key, witness.vkey, state.db")
	listen := fs.String("listen", "127.0.0.1:2026", "address to listen on")
	name := fs.String("name", "", "the witness's key name (required), e.g. witness.example.com")
	logsFile := fs.String("logs", "", "file listing the logs to witness (required): one verifier key per line, its key name the log origin")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *data == "" || *name == "" || *logsFile == "" {
		fs.Usage()
		return errors.New("--data, --name and --logs are required")
	}
	b, err := os.ReadFile(*logsFile)
	if err != nil {
		return fmt.Errorf("reading log list: %w", err)
	}
	logs, err := witness.ParseLogList(b)
	if err != nil {
		return err
	}
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	w, err := witness.Open(ctx, witness.Config{Dir: *data, Name: *name, Logs: logs, Logger: e.Logger})
	if err != nil {
		return err
	}
	defer w.Close()
	reg := metrics.New()
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, reg, tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		return err
	}
	h := httpapi.WithHealth(reg.Witness().Handler(w.Handler()), httpapi.Check{Name: "witness " + w.Name(), Ready: w.Ready})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(e.Stdout, "witness %s at %s/add-checkpoint for %s\n  vkey %s\n", w.Name(), base, plural(len(logs), "log", "logs"), w.VKey())
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
