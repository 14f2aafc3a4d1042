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
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/metrics"
)

func runLogServe(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "log serve", "--data DIR --listen ADDR --origin ORIGIN [--witness-policy FILE] [--storage journal|mysql://USER@HOST:PORT/DB|s3://BUCKET?mysql=USER@HOST:PORT/DB] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	data := fs.String("data", "", "log directory (required); holds log.key, log.vkey and add.token after the first start, and the journaled tiles unless --storage says otherwise")
	storage := fs.String("storage", logstore.Journal, "where the log's tiles are stored: \"journal\" (embedded, under --data), mysql://USER@HOST:PORT/DB[?password_file=PATH] (Tessera's MySQL driver) or s3://BUCKET[/PREFIX]?mysql=USER@HOST:PORT/DB[&endpoint=URL][&credentials_file=PATH] (Tessera's AWS driver: S3 and MySQL); the MySQL password comes from password_file or $"+logstore.PasswordEnv+", S3 keys from credentials_file or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, never from a flag")
	listen := fs.String("listen", "127.0.0.1:2025", "address to listen on")
	origin := fs.String("origin", "", "checkpoint origin (required), e.g. example.com/mylog")
	policyFile := fs.String("witness-policy", "", "C2SP tlog-policy file naming the witnesses (with URLs) whose quorum every checkpoint needs")
	interval := fs.Duration("checkpoint-interval", 0, "how often to publish a checkpoint while the log grows (default 200ms; 1s, the driver's minimum, with --storage mysql:// or s3://)")
	debug := fs.String("debug-listen", "", "serve Go profiling endpoints on this address (loopback only; unauthenticated)")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := serveDebug(*debug, e.Logger); err != nil {
		return err
	}
	cli.TuneGC()
	if *data == "" || *origin == "" {
		fs.Usage()
		return errors.New("--data and --origin are required")
	}
	var policy []byte
	if *policyFile != "" {
		b, err := os.ReadFile(*policyFile)
		if err != nil {
			return fmt.Errorf("reading witness policy: %w", err)
		}
		policy = b
	}
	loc, err := logstore.ParseLocation(*storage)
	if err != nil {
		return fmt.Errorf("--storage: %w", err)
	}
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	token, err := keys.LoadOrCreateToken(filepath.Join(*data, "add.token"))
	if err != nil {
		return err
	}
	driver, err := logstore.Open(ctx, loc)
	if err != nil {
		return err
	}
	reg := metrics.New()
	l, err := logserver.Open(ctx, logserver.Config{
		Dir: *data, Origin: *origin, WitnessPolicy: policy, Logger: e.Logger, CheckpointInterval: *interval,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}, Storage: driver, Metrics: reg.Log(*origin),
	})
	if err != nil {
		if c, ok := driver.(interface{ Wait() }); ok {
			c.Wait()
		}
		return err
	}
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err == nil {
		err = cli.ServeMetrics(ctx, e, sf.MetricsListen, reg, tlsConf, filepath.Join(*data, "metrics.token"))
	}
	if err != nil {
		_ = l.Close(context.Background())
		return err
	}
	// Ready once the log takes appends and serves a checkpoint, which
	// needs the witnesses' quorum.
	ready := httpapi.Check{Name: "log " + *origin, Ready: l.Serving}
	srv := &http.Server{
		Handler:           httpapi.WithHealth(l.Handler(func(r *http.Request) bool { return keys.BearerEqual(r, token) }), ready),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(e.Stdout, "log %s serving at %s/ (checkpoint, tile/, add), stored in %s\n", *origin, base, loc)
	fmt.Fprintf(e.Stdout, "  verifier key %s\n  add token    %s\n", filepath.Join(*data, "log.vkey"), filepath.Join(*data, "add.token"))

	select {
	case <-ctx.Done():
	case err := <-served:
		_ = l.Close(context.Background())
		return fmt.Errorf("server stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(sctx), l.Close(sctx))
}
