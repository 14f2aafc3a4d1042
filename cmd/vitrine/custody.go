package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/tlog"
)

// oldCustodyTrust is the pin file of custodies before they kept
// client.Pins: each region's access-log key and the witness policy. It is
// read once and rewritten as pins.
type oldCustodyTrust struct {
	Regions       map[string]string `json:"regions"` // region -> access log verifier key
	WitnessPolicy string            `json:"witness_policy"`
}

func runCustody(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "custody", "--data DIR --listen ADDR --platform URL [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	data := fs.String("data", userDir("custody"), "custody's data directory: region keys, unwrap counts, its token, the pinned trust")
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	platform := fs.String("platform", cli.DefaultPlatform(), "the platform whose access logs custody trusts, read from its discovery document on first start and pinned")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	// The token first: the platform needs it to start using custody.
	tokenFile := filepath.Join(*data, "custody.token")
	token, err := keys.LoadOrCreateToken(tokenFile)
	if err != nil {
		return err
	}
	trust, err := loadTrust(ctx, e, filepath.Join(*data, "trust.json"), *platform)
	if err != nil {
		return err
	}
	policy, err := tlog.ParsePolicy([]byte(trust.WitnessPolicy))
	if err != nil {
		return fmt.Errorf("pinned witness policy: %w", err)
	}
	var regions []custody.RegionConfig
	for log, vkey := range trust.LogKeys {
		name, ok := strings.CutPrefix(log, "access-")
		if !ok {
			continue
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return fmt.Errorf("pinned access log key of %s: %w", name, err)
		}
		regions = append(regions, custody.RegionConfig{Name: name, AccessLogVerifier: v, WitnessPolicy: policy})
	}
	reg := metrics.New()
	svc, err := custody.Open(custody.Config{Dir: filepath.Join(*data, "keys"), Regions: regions, Logger: e.Logger, Metrics: reg.Custody("")})
	if err != nil {
		return err
	}
	defer svc.Close()
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, reg, tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		return err
	}
	srv := &http.Server{
		Handler: httpapi.WithHealth(svc.Handler(func(r *http.Request) bool { return keys.BearerEqual(r, token) }),
			httpapi.Check{Name: "unwrap counts", Ready: svc.Ready}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		ErrorLog:          slog.NewLogLogger(e.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(e.Stdout, "custody is up at %s for %d regions; token in %s\n", base, len(regions), tokenFile)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// loadTrust returns what custody pinned in path (client.Pins: the
// platform's log keys and witness policy, of which it uses the access
// logs'), or, on the first start, reads the platform's discovery document
// (waiting for the platform to come up, backing off) and pins it. Once
// pinned, custody trusts only the pins: it never reads the document again.
func loadTrust(ctx context.Context, e *env, path, platform string) (*vclient.Pins, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		var p vclient.Pins
		if err := httpapi.DecodeStrict(b, &p); err == nil {
			if p.Platform != strings.TrimSuffix(platform, "/") {
				return nil, fmt.Errorf("%s pins the platform %s, not %s: remove it to trust %s anew", path, p.Platform, platform, platform)
			}
			return &p, nil
		}
		var old oldCustodyTrust
		if err := httpapi.DecodeStrict(b, &old); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		p = vclient.Pins{Platform: strings.TrimSuffix(platform, "/"), LogKeys: map[string]string{}, WitnessPolicy: old.WitnessPolicy}
		for region, vkey := range old.Regions {
			p.LogKeys["access-"+region] = vkey
		}
		if err := p.Save(path); err != nil {
			return nil, err
		}
		return &p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var failed backoff.State
	for {
		d, err := vclient.FetchDiscovery(ctx, httpClient, platform)
		if err == nil {
			if !slices.ContainsFunc(d.Logs, func(l vclient.DiscoveryLog) bool { return strings.HasPrefix(l.Name, "access-") }) {
				return nil, fmt.Errorf("the platform at %s lists no access logs", platform)
			}
			p, _, err := vclient.TrustOnFirstUse(path, platform, d)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(e.Stderr, "pinned the log keys and witness policy of %s in %s\n", platform, path)
			return p, nil
		}
		wait := failed.Next(discoveryBackoff, err, rand.Float64())
		fmt.Fprintf(e.Stderr, "waiting for the platform's discovery document (again in %v): %v\n", wait.Round(time.Millisecond), err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// discoveryBackoff spaces the reads of a platform that is not up yet.
var discoveryBackoff = backoff.Policy{Min: 250 * time.Millisecond, Max: 5 * time.Second}

func runCustodyReconcile(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "custody reconcile", "--custody URL --token FILE --platform URL")
	custodyURL := fs.String("custody", "http://127.0.0.1:8081", "base URL of custody (for 'vitrine up' without --custody-url: <platform>/custody)")
	tokenFile := fs.String("token", "", "file holding custody's token")
	platform := fs.String("platform", cli.DefaultPlatform(), "the platform whose access logs to read")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *tokenFile == "" {
		fs.Usage()
		return errors.New("--token is required")
	}
	tok, err := cli.ReadToken(*tokenFile, "custody's token")
	if err != nil {
		return err
	}
	counts, err := custody.NewClient(*custodyURL, tok, httpClient).Counts(ctx)
	if err != nil {
		return err
	}
	// Every access log whose region custody counted, read whole from a
	// witnessed checkpoint.
	logs := map[string][][]byte{}
	for region := range counts {
		entries, err := logEntries(ctx, *platform, "access-"+region)
		if err != nil {
			return err
		}
		logs[region] = entries
	}
	r, err := custody.Reconcile(counts, func(region string, index uint64) ([]byte, error) {
		if index >= uint64(len(logs[region])) {
			return nil, fmt.Errorf("access-%s has %d entries in its witnessed checkpoint", region, len(logs[region]))
		}
		return logs[region][index], nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, r)
	if len(r.Problems) > 0 {
		return fmt.Errorf("custody's counts do not reconcile with the access logs: %d problems", len(r.Problems))
	}
	fmt.Fprintln(e.Stdout, "OK: every key custody released is named by a granted access entry in the witnessed logs")
	return nil
}
