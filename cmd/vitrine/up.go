package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vitrine-dev/vitrine/internal/center"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/config"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

func runUp(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "up", "[--config FILE] [--data DIR] [--listen ADDR] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	configFile := fs.String("config", "", "configuration file (JSON; docs/config.md lists the keys, docs/config.example.json sets them all); flags given explicitly win")
	data := fs.String("data", "./vitrine-data", "data directory (created on first start, reused after)")
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	name := fs.String("name", "vitrine.local", "deployment name: prefix of every log origin (keep it across restarts)")
	publicURL := fs.String("public-url", "", "base URL that clients use (default http://<listen>)")
	debug := fs.String("debug-listen", "", "serve Go profiling endpoints on this address (loopback only; unauthenticated)")
	custodyURL := fs.String("custody-url", "", "base URL of the supervisor's key custody in its own process ('vitrine custody'); empty runs custody in this process")
	custodyToken := fs.String("custody-token", "", "with --custody-url: file holding custody's token (its <data>/custody.token)")
	commitEvery := fs.Duration("commitment-interval", time.Hour, "how often each region commits to its dataset (count and Merkle root) in its access log")
	interval := fs.Duration("checkpoint-interval", 0, "how often each log publishes a witnessed checkpoint while it grows (0: the logs' default, 200ms)")
	tufRoot := fs.String("tuf-root", "", "the update repository's initial root.json (made by vitrine tuf init); without it the first start makes one")
	tufOffline := fs.String("tuf-offline", "", "where the first start writes the TUF root keys when it makes the root; move them offline (default: a new directory under ~/.config/vitrine/tuf-offline/)")
	monOn := fs.Bool("monitor", true, "run the supervisor's monitor over this platform (alerts at /monitor/v1/alerts)")
	var monHooks platforms
	fs.Var(&monHooks, "monitor-webhook", "`URL` that gets every alert, signed with the secret in DATA/monitor/webhook.secret (repeat for several)")
	monCmd := fs.String("monitor-hook-command", "", "absolute `PATH` of a program run for every alert (the alert on its standard input)")
	monRules := fs.String("monitor-rules", "", "the monitor's rules file (default: the rules that ship)")
	var centerRebuilders platforms
	fs.Var(&centerRebuilders, "center-rebuilder", "`SPEC` URL,KEYFILE: an independent rebuilder whose verdicts the Transparency Center's release pages show, with its public key (PEM) obtained from its operator; repeat for several")
	supURL := fs.String("supervisor", "", "base `URL` of the supervisor ('vitrine supervisor') this platform is a member of: its witness, custody, pseudonyms and monitor serve the platform, which runs none of its own")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	// The configuration file is the base; every flag given explicitly
	// wins over its key, and a key the file leaves out takes the flag's
	// default.
	c := new(config.Config)
	if *configFile != "" {
		var err error
		if c, err = config.Load(*configFile); err != nil {
			return err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	str := func(flagName string, v *string, key *string) {
		if set[flagName] || *key == "" {
			*key = *v
		}
	}
	dur := func(flagName string, v *time.Duration, key *config.Duration) {
		if set[flagName] || *key == 0 {
			*key = config.Duration(*v)
		}
	}
	str("data", data, &c.Data)
	str("listen", listen, &c.Listen)
	str("name", name, &c.Name)
	str("public-url", publicURL, &c.PublicURL)
	str("tls-cert", &sf.TLSCert, &c.TLSCert)
	str("tls-key", &sf.TLSKey, &c.TLSKey)
	str("metrics-listen", &sf.MetricsListen, &c.MetricsListen)
	str("debug-listen", debug, &c.DebugListen)
	str("custody-url", custodyURL, &c.CustodyURL)
	str("custody-token", custodyToken, &c.CustodyToken)
	str("supervisor", supURL, &c.SupervisorURL)
	str("tuf-root", tufRoot, &c.TUFRoot)
	str("tuf-offline", tufOffline, &c.TUFOffline)
	dur("commitment-interval", commitEvery, &c.CommitmentInterval)
	dur("checkpoint-interval", interval, &c.CheckpointInterval)
	if set["monitor"] {
		c.Monitor.Off = !*monOn
	}
	if set["monitor-webhook"] {
		c.Monitor.Webhooks = monHooks
	}
	str("monitor-hook-command", monCmd, &c.Monitor.HookCommand)
	str("monitor-rules", monRules, &c.Monitor.Rules)
	if c.Monitor.Interval == 0 {
		c.Monitor.Interval = config.Duration(time.Second)
	}
	if *interval < 0 {
		return fmt.Errorf("--checkpoint-interval %s is negative", *interval)
	}
	rebuilders, err := parseRebuilders(centerRebuilders)
	if err != nil {
		return err
	}
	if err := serveDebug(c.DebugListen, e.Logger); err != nil {
		return err
	}
	// Plain HTTP unless the configuration names a certificate.
	tlsConf, err := cli.TLS(ctx, c.TLSCert, c.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	cli.TuneGC()
	var custodyTok string
	if c.CustodyURL != "" {
		if c.CustodyToken == "" {
			return errors.New("a custody URL (--custody-url, or custody_url in the configuration) needs custody's token file (--custody-token, custody_token)")
		}
		var err error
		if custodyTok, err = cli.ReadToken(c.CustodyToken, "custody's token"); err != nil {
			return err
		}
	}
	reg := metrics.New()
	pc := platform.Config{CustodyURL: c.CustodyURL, CustodyToken: custodyTok, Data: c.Data, Listen: c.Listen, Name: c.Name, PublicURL: c.PublicURL, TLS: tlsConf, Metrics: reg,
		CheckpointInterval: time.Duration(c.CheckpointInterval), CommitmentInterval: time.Duration(c.CommitmentInterval), Logger: e.Logger,
		Residency: c.Residency, Stores: c.Stores, LogStores: c.LogStores, ExternalRegions: c.ExternalRegions, BuildSourceRoots: c.BuildSourceRoots, TUFOfflineDir: c.TUFOffline}
	if c.TUFRoot != "" {
		b, err := os.ReadFile(c.TUFRoot)
		if err != nil {
			return fmt.Errorf("--tuf-root: %w", err)
		}
		pc.TUFRoot = b
	}
	data = &pc.Data
	if pc.RemoteLogs, err = remoteLogs(c); err != nil {
		return err
	}
	if c.ReleasesURL != "" {
		if c.LogsURL == "" {
			return errors.New("releases_url needs logs_url: the releases process appends to the release log of the logs process")
		}
		if err := checkSecureURL("the releases process", c.ReleasesURL); err != nil {
			return err
		}
		pc.RemoteReleases = &platform.RemoteReleases{URL: strings.TrimSuffix(c.ReleasesURL, "/")}
	}
	if c.SupervisorURL != "" {
		if c.CustodyURL != "" {
			return errors.New("a platform with a supervisor uses the supervisor's custody: leave the custody URL out")
		}
		base := strings.TrimSuffix(c.PublicURL, "/")
		if base == "" && tlsConf != nil {
			base = "https://" + c.Listen
		} else if base == "" {
			base = "http://" + c.Listen
		}
		sup, err := joinSupervisor(ctx, e, c.SupervisorURL, c.Data, c.Name, base, pc.RemoteLogs)
		if err != nil {
			return err
		}
		pc.Supervisor = sup
		// The supervisor's monitor reviews the platform; it needs none
		// of its own.
		c.Monitor.Off = true
	}
	if pc.TUFOfflineDir == "" {
		pc.TUFOfflineDir = newOfflineDir(pc.Name)
	}
	// The monitor's rules are checked before anything starts; the
	// monitor itself starts once the platform has its URL, and is served
	// by the platform under /monitor/ (503 until then).
	var rules *monitor.Rules
	monHandler := new(httpapi.Lazy)
	if !c.Monitor.Off {
		var err error
		if rules, err = loadRules(c.Monitor.Rules); err != nil {
			return err
		}
		pc.Monitor = monHandler
	}
	// The Transparency Center reads the platform as anyone would, once
	// it serves; until then / answers 503.
	centerHandler := new(httpapi.Lazy)
	pc.Center = centerHandler
	p, err := platform.Start(ctx, pc)
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, e, c.MetricsListen, reg, tlsConf, filepath.Join(pc.Data, "metrics.token")); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return errors.Join(err, p.Close(sctx))
	}
	// The Center in vitrine up is the vendor's own, inside its network:
	// it may read the platform at a private address under a public name.
	ctr, err := center.New(center.Config{Platform: p.URL(), Dir: filepath.Join(pc.Data, "center"), Rebuilders: rebuilders, Logger: e.Logger,
		HTTPClient: center.NewHTTPClient(p.URL(), true)})
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return errors.Join(fmt.Errorf("starting the Transparency Center: %w", err), p.Close(sctx))
	}
	defer ctr.Close()
	centerHandler.Set(ctr.Handler())
	var mon *monitor.Monitor
	runCtx, stopMonitor := context.WithCancel(ctx)
	defer stopMonitor()
	monDone := make(chan error, 1)
	if c.Monitor.Off {
		monDone <- nil
	} else {
		monDir := filepath.Join(pc.Data, "monitor")
		var token string
		if err = os.MkdirAll(monDir, 0o700); err == nil {
			token, err = keys.LoadOrCreateToken(filepath.Join(monDir, "supervisor.token"))
		}
		// Custody's counts are reconciled with the access logs: custody
		// in this process, or the one the platform uses.
		cust := monitor.Custody{Platform: p.URL(), URL: p.URL() + "/custody", Token: custodyTok}
		if c.CustodyURL != "" {
			cust.URL = c.CustodyURL
		} else if err == nil {
			cust.Token, err = cli.ReadToken(filepath.Join(pc.Data, "custody.token"), "custody's token")
		}
		// The pseudonymisation key lets the monitor answer endpoints
		// that ask who accessed their data.
		var pkey string
		if err == nil {
			pkey, err = cli.ReadToken(filepath.Join(pc.Data, "pseudonym.key"), "the pseudonymisation key")
		}
		if err == nil {
			// Opened whole even if a stop is asked meanwhile: the
			// shutdown below then closes it like the rest.
			mon, err = monitor.New(context.WithoutCancel(ctx), monitor.Config{Dir: monDir, Platforms: []string{p.URL()}, Rules: rules, Name: c.Name + "/monitor", SupervisorToken: token,
				Custody: []monitor.Custody{cust}, PseudonymKeys: map[string][]byte{p.URL(): []byte(pkey)},
				Interval: time.Duration(c.Monitor.Interval), Webhooks: c.Monitor.Webhooks, HookCommand: c.Monitor.HookCommand, Logger: e.Logger})
		}
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return errors.Join(fmt.Errorf("starting the monitor: %w", err), p.Close(sctx))
		}
		monHandler.Set(mon.Handler())
		go func() { monDone <- mon.Run(runCtx) }()
	}
	abs, _ := filepath.Abs(*data)
	fmt.Fprintf(e.Stdout, "Vitrine is up at %s\n", p.URL())
	printBanner(e.Stdout, p, abs)
	fmt.Fprintf(e.Stdout, "Press Ctrl-C to stop.\n")

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-p.Done():
		serveErr = fmt.Errorf("server stopped: %w", err)
	}
	if serveErr == nil {
		fmt.Fprintln(e.Stdout, "shutting down…")
	}
	// The monitor stops first: it reads the platform.
	stopMonitor()
	<-monDone
	if mon != nil {
		mon.Close()
	}
	if serveErr != nil {
		return serveErr
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(sctx); err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, "stopped cleanly")
	return nil
}

// printBanner lists what the platform serves, in aligned columns.
func printBanner(w io.Writer, p *platform.Platform, data string) {
	d := p.Discovery()
	rows := [][3]string{{"Transparency Center", p.URL() + "/", ""}, {"discovery", p.URL() + "/.well-known/vitrine.json", ""}}
	for _, l := range d.Logs {
		rows = append(rows, [3]string{"log " + l.Name, l.URL, "origin " + l.Origin})
	}
	for _, wi := range d.Witnesses {
		rows = append(rows, [3]string{"witness", wi.URL, wi.Name})
	}
	for _, m := range d.Monitors {
		rows = append(rows, [3]string{"monitor", m.URL + "v1/alerts", m.Name})
	}
	rows = append(rows,
		[3]string{"releases", d.Releases.URL, ""},
		[3]string{"updates (TUF)", d.Updates.URL, ""},
		[3]string{"data", data, "private: keys, tokens, logs, stores"},
		[3]string{"operator token", filepath.Join(data, "operator.token"), ""},
	)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if r[2] != "" {
			r[2] = "(" + r[2] + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r[0], r[1], r[2])
	}
	_ = tw.Flush()
	for line := range strings.Lines(b.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
}
