package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/release"
)

// platforms is a repeatable --platform flag.
type platforms []string

func (p *platforms) String() string     { return strings.Join(*p, ",") }
func (p *platforms) Set(v string) error { *p = append(*p, strings.TrimRight(v, "/")); return nil }

func runMonitor(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "monitor", "--data DIR --listen ADDR --platform URL [--platform URL …] [--rules FILE] [--webhook URL …] [--hook-command PATH] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	data := fs.String("data", "", "state directory (required): pins, monitor.db (alerts and followers' states)")
	listen := fs.String("listen", "127.0.0.1:2027", "address to serve GET /v1/alerts and POST /v1/checkpoints on")
	var plats platforms
	fs.Var(&plats, "platform", "base `URL` of a platform to supervise (repeat for several)")
	rulesFile := fs.String("rules", "", "rules file (JSON, see docs/design/monitor.md); default: the rules that ship")
	interval := fs.Duration("interval", 10*time.Second, "time between passes over every log")
	var hooks platforms
	fs.Var(&hooks, "webhook", "`URL` to POST every alert to, signed as Standard Webhooks say with the secret in DATA/webhook.secret (repeat for several)")
	hookCmd := fs.String("hook-command", "", "absolute `PATH` of a program run for every alert, the alert's JSON on its standard input and its delivery id in VITRINE_ALERT_ID; exit 0 acknowledges")
	heartbeat := fs.Duration("heartbeat", time.Hour, "time between heartbeat alerts, which show receivers that delivery works (0: none)")
	var rebuilderFlags platforms
	fs.Var(&rebuilderFlags, "rebuilder", "`SPEC` PLATFORM,URL,KEYFILE: a rebuilder of the platform whose verdicts its releases wait for (release-not-reproduced), its base URL and its public key (PEM) obtained out of band; repeat for several")
	var custodyFlags platforms
	fs.Var(&custodyFlags, "custody", "`SPEC` PLATFORM,URL,TOKENFILE: the platform's key custody, whose unwrap counts are reconciled with its access logs (unreconciled-unwrap); repeat for several")
	var pkeyFlags platforms
	fs.Var(&pkeyFlags, "pseudonym-key", "`SPEC` PLATFORM,KEYFILE: the platform's pseudonymisation key, with which the monitor answers endpoints that ask who accessed their data (GET /v1/accesses)")
	within := fs.Duration("reproduce-within", 24*time.Hour, "how long a release may wait for a reproducing verdict")
	name := fs.String("name", "vitrine-monitor", "the monitor's name: its acknowledgement log's origin is NAME/acknowledgements (keep it across restarts)")
	sf := cli.AddServeFlags(fs)
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
	var rebuilders []monitor.Rebuilder
	for _, v := range rebuilderFlags {
		parts := strings.Split(v, ",")
		if len(parts) != 3 {
			return fmt.Errorf("--rebuilder %q: want PLATFORM,URL,KEYFILE", v)
		}
		pem, err := os.ReadFile(parts[2])
		if err != nil {
			return fmt.Errorf("--rebuilder: %w", err)
		}
		key, err := release.ParsePublicKey(pem)
		if err != nil {
			return fmt.Errorf("--rebuilder %s: %w", parts[2], err)
		}
		rebuilders = append(rebuilders, monitor.Rebuilder{Platform: strings.TrimRight(parts[0], "/"), URL: parts[1], Key: key})
	}
	var custodies []monitor.Custody
	for _, v := range custodyFlags {
		parts := strings.Split(v, ",")
		if len(parts) != 3 {
			return fmt.Errorf("--custody %q: want PLATFORM,URL,TOKENFILE", v)
		}
		tok, err := cli.ReadToken(parts[2], "custody's token")
		if err != nil {
			return err
		}
		custodies = append(custodies, monitor.Custody{Platform: strings.TrimRight(parts[0], "/"), URL: parts[1], Token: tok})
	}
	pkeys := map[string][]byte{}
	for _, v := range pkeyFlags {
		plat, file, ok := strings.Cut(v, ",")
		if !ok {
			return fmt.Errorf("--pseudonym-key %q: want PLATFORM,KEYFILE", v)
		}
		k, err := cli.ReadToken(file, "the pseudonymisation key")
		if err != nil {
			return err
		}
		pkeys[strings.TrimRight(plat, "/")] = []byte(k)
	}
	compiled, err := loadRules(*rulesFile)
	if err != nil {
		return err
	}
	if *heartbeat <= 0 {
		*heartbeat = -1
	}
	tokenFile := filepath.Join(*data, "supervisor.token")
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	token, err := keys.LoadOrCreateToken(tokenFile)
	if err != nil {
		return err
	}
	m, err := monitor.New(ctx, monitor.Config{Dir: *data, Platforms: plats, Rules: compiled, Interval: *interval, Logger: e.Logger,
		Webhooks: hooks, HookCommand: *hookCmd, Heartbeat: *heartbeat, Name: *name, SupervisorToken: token,
		Rebuilders: rebuilders, ReproduceWithin: *within, Custody: custodies, PseudonymKeys: pkeys})
	if err != nil {
		return err
	}
	defer m.Close()
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, metrics.New(), tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		return err
	}
	srv := &http.Server{Handler: httpapi.WithHealth(m.Handler()), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The passes stop before the store closes (m.Close, deferred), on
	// either way out.
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()
	fmt.Fprintf(e.Stdout, "monitor of %d platforms with %d rules; alerts at %s/v1/alerts, checkpoints to %s/v1/checkpoints\n", len(plats), compiled.Len(), base, base)
	fmt.Fprintf(e.Stdout, "the supervisor acknowledges alerts with the token in %s (vitrine monitor ack)\n", tokenFile)
	if len(hooks) > 0 {
		fmt.Fprintf(e.Stdout, "alerts go to %d webhooks, signed with the secret in %s\n", len(hooks), filepath.Join(*data, monitor.WebhookSecretFile))
	}
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

func runMonitorTestAlert(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "monitor test-alert", "--data DIR [--wait 30s]")
	data := fs.String("data", "", "the monitor's state directory (required)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for every target to acknowledge the alert")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *data == "" {
		fs.Usage()
		return errors.New("--data is required")
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	last := ""
	a, ts, err := monitor.SendTestAlert(wctx, *data, time.Now(), func(id int64, ts []monitor.TargetState) {
		if s := deliveryLine(id, ts); s != last {
			fmt.Fprintln(e.Stderr, s)
			last = s
		}
	})
	if a.ID == 0 {
		return err
	}
	fmt.Fprintf(e.Stdout, "test alert %d raised\n", a.ID)
	if len(ts) == 0 {
		return errors.New("the monitor delivers to no target: start it with --webhook or --hook-command")
	}
	for _, t := range ts {
		state := "delivered"
		if t.Cursor < a.ID {
			state = "NOT delivered"
			if t.LastError != "" {
				state += fmt.Sprintf(" (%d failed attempts, last: %s)", t.Failures, t.LastError)
			}
		}
		fmt.Fprintf(e.Stdout, "%s: %s\n", t.Target, state)
	}
	if err != nil {
		return fmt.Errorf("not every target acknowledged the test alert within %s (is the monitor running?): %w", *wait, err)
	}
	return nil
}

// deliveryLine is test-alert's progress: how many targets are through.
func deliveryLine(id int64, ts []monitor.TargetState) string {
	through, failing := 0, 0
	for _, t := range ts {
		switch {
		case t.Cursor >= id:
			through++
		case t.Failures > 0:
			failing++
		}
	}
	return fmt.Sprintf("test alert %d: %d of %d targets acknowledged it, %d failing", id, through, len(ts), failing)
}

// loadRules reads and compiles a rules file; "" means the rules that ship.
func loadRules(file string) (*monitor.Rules, error) {
	rules := monitor.DefaultRules()
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading rules: %w", err)
		}
		if rules, err = monitor.ParseRules(b); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	compiled, err := monitor.Compile(rules)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return compiled, nil
}

func runMonitorAck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "monitor ack", "--monitor URL --token FILE --alert ID --note TEXT")
	base := fs.String("monitor", "", "the monitor's base URL (required), e.g. http://127.0.0.1:2027 or http://127.0.0.1:8080/monitor")
	tokenFile := fs.String("token", "", "file holding the supervisor's token (required; the monitor's DATA/supervisor.token)")
	alert := fs.Int64("alert", 0, "the alert's id (required)")
	note := fs.String("note", "", "what was found and done (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *base == "" || *tokenFile == "" || *alert < 1 || *note == "" {
		fs.Usage()
		return errors.New("--monitor, --token, --alert and --note are required")
	}
	token, err := cli.ReadToken(*tokenFile, "the supervisor's token")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"note": *note})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/alerts/%d/acknowledgements", strings.TrimRight(*base, "/"), *alert), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	var ack monitor.Acknowledgement
	if err := client.Do(&http.Client{Timeout: time.Minute}, req, 1<<20, &ack); err != nil {
		return fmt.Errorf("acknowledging alert %d: %w", *alert, err)
	}
	fmt.Fprintf(e.Stdout, "alert %d acknowledged: entry %d of the monitor's acknowledgement log\n", *alert, ack.Index)
	return nil
}
