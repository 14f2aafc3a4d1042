package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/internal/center"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
)

// runCenter serves the Transparency Center over a platform that it reads
// through its public routes only: anyone can run one over anyone's
// platform.
func runCenter(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "center", "--platform URL --listen ADDR [--data DIR] [--rebuilder URL,KEYFILE …] [--allow-private] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "base URL of the platform to show (its discovery document is pinned on first use)")
	listen := fs.String("listen", "127.0.0.1:8070", "address to serve the Center on")
	data := fs.String("data", userDir("center"), "the Center's data directory: the platform's pins and the checkpoints it saw")
	allowPrivate := fs.Bool("allow-private", false, allowPrivateUsage)
	var rbFlags platforms
	fs.Var(&rbFlags, "rebuilder", "`SPEC` URL,KEYFILE: an independent rebuilder whose verdicts release pages show, its base URL (the prefix of /rebuilds/) and its public key (PEM), obtained from its operator out of band; repeat for several")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	rebuilders, err := parseRebuilders(rbFlags)
	if err != nil {
		return err
	}
	c, err := center.New(center.Config{Platform: *platformURL, Dir: *data, Rebuilders: rebuilders, Logger: e.Logger,
		HTTPClient: center.NewHTTPClient(*platformURL, *allowPrivate)})
	if err != nil {
		return err
	}
	defer c.Close()
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	// The Center has no metrics of its own yet: the Go runtime's and
	// the process's.
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, metrics.New(), tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		return err
	}
	h := httpapi.WithHealth(c.Handler(), httpapi.Check{Name: "index", Ready: c.Ready})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(e.Stdout, "Transparency Center of %s at %s/\n", *platformURL, base)
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// runReport prints the transparency report of a platform as JSON, counted
// from its access logs' entries, each proven: the figures the Center's
// report page shows, recomputed by anyone.
func runReport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "report", "--platform URL [--data DIR] [--allow-private]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "base URL of the platform (its discovery document is pinned on first use)")
	data := fs.String("data", userDir("report"), "where the pins and the counts so far are kept: a report goes on from where the last one stopped")
	allowPrivate := fs.Bool("allow-private", false, allowPrivateUsage)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	rep, err := center.ComputeReport(ctx, center.NewHTTPClient(*platformURL, *allowPrivate), *platformURL, *data, time.Now())
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.Stdout, "%s\n", out)
	return err
}

// allowPrivateUsage is the --allow-private flag's help.
const allowPrivateUsage = "also connect to loopback and private addresses that the platform's discovery document names, over a platform whose URL is a name (by default only a platform at such an address itself may name them)"

// parseRebuilders reads --rebuilder flags (URL,KEYFILE).
func parseRebuilders(specs []string) ([]center.Rebuilder, error) {
	var out []center.Rebuilder
	for _, spec := range specs {
		rb, err := center.ParseRebuilder(spec, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("--rebuilder: %w", err)
		}
		out = append(out, rb)
	}
	return out, nil
}
