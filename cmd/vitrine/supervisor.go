package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
	"github.com/vitrine-dev/vitrine/internal/supervisor"
	"github.com/vitrine-dev/vitrine/tlog"
)

func runSupervisor(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "supervisor", "--data DIR --listen ADDR --name NAME [--members FILE] [--webhook URL …] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	data := fs.String("data", userDir("supervisor"), "the supervisor's data directory: its witness key, each member's custody keys and pseudonymisation key, its token, the monitor's state")
	listen := fs.String("listen", "127.0.0.1:8090", "address to listen on")
	name := fs.String("name", "supervisor.local", "the supervisor's name: its witness's key name is NAME/witness (keep it across restarts)")
	publicURL := fs.String("public-url", "", "base URL that members and readers use (default http://<listen>)")
	membersFile := fs.String("members", "", "the members file (members/v0, see docs/design/supervisor.md); default DATA/members.txt, made empty on the first start. Re-read on SIGHUP")
	rulesFile := fs.String("rules", "", "the monitor's rules file (default: the rules that ship)")
	interval := fs.Duration("interval", 5*time.Second, "time between the monitor's passes over every log")
	var hooks platforms
	fs.Var(&hooks, "webhook", "`URL` that gets every alert, signed with the secret in DATA/monitor/webhook.secret (repeat for several)")
	hookCmd := fs.String("hook-command", "", "absolute `PATH` of a program run for every alert (the alert on its standard input)")
	heartbeat := fs.Duration("heartbeat", time.Hour, "time between heartbeat alerts (0: none)")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	// SIGHUP is taken from the start: one that comes while the state
	// opens waits for it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if *interval <= 0 {
		return errors.New("--interval must be positive")
	}
	if *heartbeat <= 0 {
		*heartbeat = -1
	}
	if *membersFile == "" {
		*membersFile = filepath.Join(*data, "members.txt")
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return err
		}
		if _, err := os.Stat(*membersFile); errors.Is(err, os.ErrNotExist) {
			empty := supervisor.MembersHeader + "\n# Append each member's entry: `vitrine up --supervisor URL` writes it to <its data>/member.txt.\n"
			if err := atomicfile.Write(*membersFile, []byte(empty), 0o600); err != nil {
				return err
			}
		}
	}
	rules, err := loadRules(*rulesFile)
	if err != nil {
		return err
	}
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	if *publicURL != "" {
		base = strings.TrimSuffix(*publicURL, "/")
	}
	reg := metrics.New()
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, reg, tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		ln.Close()
		return err
	}
	readMembers := func() ([]supervisor.Member, error) {
		b, err := os.ReadFile(*membersFile)
		if err != nil {
			return nil, err
		}
		return supervisor.ParseMembers(b)
	}
	open := func(members []supervisor.Member) (*supervisor.Supervisor, error) {
		return supervisor.Open(context.WithoutCancel(ctx), supervisor.Config{Dir: *data, Name: *name, URL: base, Members: members, Logger: e.Logger, Metrics: reg,
			Monitor: monitor.Config{Rules: rules, Interval: *interval, Webhooks: hooks, HookCommand: *hookCmd, Heartbeat: *heartbeat}})
	}
	members, err := readMembers()
	if err != nil {
		ln.Close()
		return err
	}
	s, err := open(members)
	if err != nil {
		ln.Close()
		return err
	}
	// The supervisor in force serves, and says whether it is ready;
	// while a SIGHUP reopens it, neither.
	h := new(httpapi.Lazy)
	var cur atomic.Pointer[supervisor.Supervisor]
	serve := func(s *supervisor.Supervisor) {
		cur.Store(s)
		if s == nil {
			h.Set(nil)
			return
		}
		h.Set(s.Handler())
	}
	serve(s)
	ready := httpapi.Check{Name: "supervisor", Ready: func(ctx context.Context) error {
		s := cur.Load()
		if s == nil {
			return errors.New("reading its members file again")
		}
		return s.Ready(ctx)
	}}
	srv := &http.Server{Handler: httpapi.WithHealth(h, ready), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	shutdown := func(err error) error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(err, srv.Shutdown(sctx))
	}

	for {
		printSupervisor(e.Stdout, s, *data, *membersFile)
		runCtx, stopRun := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- s.Run(runCtx) }()
		var stopErr error
		var next []supervisor.Member
		reload := false
		select {
		case <-ctx.Done():
		case err := <-served:
			stopErr = fmt.Errorf("server stopped: %w", err)
		case err := <-ran:
			stopErr = fmt.Errorf("the monitor stopped: %w", err)
		case <-hup:
			// The members file is read again; one that does not parse
			// changes nothing.
			if next, err = readMembers(); err != nil {
				fmt.Fprintf(e.Stdout, "SIGHUP: the members file is not taken, nothing changed: %v\n", err)
				stopRun()
				<-ran
				continue
			}
			reload = true
		}
		stopRun()
		<-ran
		if !reload {
			s.Close()
			return shutdown(stopErr)
		}
		// Requests wait a moment (503, Retry-After) while the state is
		// closed and opened again. Members the state cannot open (a
		// custody key that cannot be made) leave the last good ones in
		// force.
		serve(nil)
		s.Close()
		if s, err = open(next); err != nil {
			fmt.Fprintf(e.Stdout, "SIGHUP: the members file is not taken, the last one stays in force: %v\n", err)
			if s, err = open(members); err != nil {
				return shutdown(fmt.Errorf("reopening the last members after SIGHUP: %w", err))
			}
		} else {
			members = next
			fmt.Fprintln(e.Stdout, "SIGHUP: the members file was read again")
		}
		serve(s)
	}
}

// printSupervisor shows what the supervisor serves.
func printSupervisor(w io.Writer, s *supervisor.Supervisor, data, membersFile string) {
	a := s.About()
	fmt.Fprintf(w, "supervisor %s at %s/v1/supervisor\n", a.Name, strings.TrimSuffix(a.Witness.URL, "/witness/"))
	fmt.Fprintf(w, "  witness  %sadd-checkpoint  (%s)\n", a.Witness.URL, a.Witness.VKey)
	fmt.Fprintf(w, "  monitor  %sv1/alerts\n", a.Monitor.URL)
	fmt.Fprintf(w, "  members  %d, from %s (SIGHUP reads it again)\n", len(a.Members), membersFile)
	for _, m := range a.Members {
		fmt.Fprintf(w, "    %s  %s  (%d logs)\n", m.Name, m.Discovery, len(m.Logs))
	}
	fmt.Fprintf(w, "  token    %s (acknowledges alerts: vitrine monitor ack)\n", filepath.Join(data, supervisor.TokenFile))
}

// supervisorPins is what `vitrine up --supervisor` pins of its
// supervisor on first use, in <data>/supervisor.json: everything it takes
// from the supervisor's description. The member's custody and pseudonyms
// are not taken from it: they are where the supervisor's URL and the
// member's name put them, so that the member token goes nowhere else.
type supervisorPins struct {
	URL           string                  `json:"url"`
	WitnessPolicy string                  `json:"witness_policy"`
	Witness       client.DiscoveryWitness `json:"witness"`
	Monitor       client.DiscoveryMonitor `json:"monitor"`
}

// checkSecureURL refuses a URL that the member token or trust would cross
// in the clear: https, or http to this machine.
func checkSecureURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%s %q is not an http or https URL", what, raw)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%s %s: plain http reaches only this machine; use https", what, raw)
	}
	return fmt.Errorf("%s %q is not an http or https URL", what, raw)
}

// joinSupervisor makes what the platform named name, with data directory
// data and public base URL publicURL, needs to be a member of the
// supervisor at base: its logs' keys and its member token. It writes the
// platform's members-file entry to <data>/member.txt and waits, showing
// progress, until the supervisor lists the platform as a member with
// those keys; then it checks that the supervisor takes the token.
func joinSupervisor(ctx context.Context, e *env, base, data, name, publicURL string, logs *platform.RemoteLogs) (*platform.Supervisor, error) {
	base = strings.TrimRight(base, "/")
	if err := checkSecureURL("the supervisor", base); err != nil {
		return nil, err
	}
	if !supervisor.ValidName(name) {
		return nil, fmt.Errorf("a member's name (--name %q) must be 1 to 63 of a-z, 0-9, '.' and '-'", name)
	}
	// The logs' keys: the platform's own, or those of the logs process.
	var vkeys map[string]string
	var err error
	if logs != nil {
		vkeys, err = platform.RemoteLogKeys(ctx, logs, filepath.Join(data, "logs.json"))
	} else {
		vkeys, err = platform.LogKeys(data, name)
	}
	if err != nil {
		return nil, err
	}
	token, err := keys.LoadOrCreateToken(filepath.Join(data, "member.token"))
	if err != nil {
		return nil, err
	}
	me := supervisor.Member{Name: name, Discovery: strings.TrimRight(publicURL, "/"), TokenSHA256: sha256.Sum256([]byte(token))}
	for _, l := range platform.LogNames {
		me.Logs = append(me.Logs, vkeys[l])
	}
	entryFile := filepath.Join(data, "member.txt")
	if err := atomicfile.Write(entryFile, []byte(me.Entry()), 0o600); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start, told := time.Now(), time.Time{}
	for {
		a := new(supervisor.About)
		err := client.GetJSON(ctx, hc, base+"/v1/supervisor", 8<<20, a)
		var pins *supervisorPins
		listed := false
		if err == nil {
			if pins, err = checkSupervisorPins(filepath.Join(data, "supervisor.json"), base, a); err != nil {
				return nil, err
			}
			for _, m := range a.Members {
				if m.Name != name {
					continue
				}
				if m.Discovery != me.Discovery || !slices.Equal(slices.Sorted(slices.Values(m.Logs)), slices.Sorted(slices.Values(me.Logs))) {
					return nil, fmt.Errorf("the supervisor at %s lists member %s with another discovery URL or other log keys than this platform's (%s): its members file needs the entry again", base, name, entryFile)
				}
				listed = true
			}
		}
		if listed {
			sup := &platform.Supervisor{WitnessPolicy: pins.WitnessPolicy, Witness: pins.Witness, Monitor: pins.Monitor, Token: token,
				CustodyURL: base + "/members/" + name + "/custody", PseudonymsURL: base + "/members/" + name + "/pseudonyms"}
			// The token: a pseudonym asked for, as ingest will.
			if _, err := pseudonyms.NewClient(sup.PseudonymsURL, token, hc, 1).Pseudonym(ctx, "ep_aaaaaaaaaaaaaaaaaaaaaaaaaa"); err != nil {
				return nil, fmt.Errorf("the supervisor lists this platform but does not take its token (%s; the entry's token-sha256 is in %s): %w", filepath.Join(data, "member.token"), entryFile, err)
			}
			return sup, nil
		}
		if told.IsZero() {
			fmt.Fprintf(e.Stdout, "Joining the supervisor at %s: it must list this platform as a member.\nAppend this entry (also in %s) to its members file and send it SIGHUP:\n\n%s\n", base, entryFile, me.Entry())
			told = time.Now()
		} else if time.Since(told) >= 30*time.Second {
			why := "not listed yet"
			if err != nil {
				why = err.Error()
			}
			fmt.Fprintf(e.Stdout, "still waiting for the supervisor (%s, %s so far)\n", why, time.Since(start).Round(time.Second))
			told = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// checkSupervisorPins pins what the supervisor's description says of its
// witness and monitor on first use, once it checks (the policy names the
// witness's key, at an https or loopback URL), and refuses a description
// that names anything else after.
func checkSupervisorPins(path, base string, a *supervisor.About) (*supervisorPins, error) {
	now := supervisorPins{URL: base, WitnessPolicy: a.WitnessPolicy, Witness: a.Witness, Monitor: a.Monitor}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		policy, err := tlog.ParsePolicy([]byte(a.WitnessPolicy))
		if err != nil {
			return nil, fmt.Errorf("the supervisor's witness policy: %w", err)
		}
		if len(policy.Witnesses) != 1 || policy.Witnesses[0].VKey != a.Witness.VKey {
			return nil, errors.New("the supervisor's witness policy does not name its witness alone")
		}
		for what, u := range map[string]string{"the supervisor's witness": policy.Witnesses[0].URL, "the supervisor's monitor": a.Monitor.URL} {
			if err := checkSecureURL(what, u); err != nil {
				return nil, err
			}
		}
		out, _ := json.MarshalIndent(now, "", "  ")
		return &now, atomicfile.Write(path, append(out, '\n'), 0o600)
	}
	if err != nil {
		return nil, err
	}
	var pinned supervisorPins
	if err := httpapi.DecodeStrict(b, &pinned); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pinned != now {
		return nil, fmt.Errorf("the supervisor at %s names another witness, policy or monitor than those pinned in %s (remove the file to trust it anew)", base, path)
	}
	return &pinned, nil
}
