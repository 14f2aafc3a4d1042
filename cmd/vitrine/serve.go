package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/config"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/supervisor"
)

// runServe runs one role of a deployment, from the configuration file that
// every process of the deployment shares.
func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "serve", "--config FILE --role all|front|logs|releases|center|region:NAME [--listen ADDR] [--data DIR] [--public-url URL] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	configFile := fs.String("config", "", "the deployment's configuration file (required; docs/config.md)")
	role := fs.String("role", "", "the role to run (required): all (every role in one process, as vitrine up; with logs_url, releases_url or external_regions in the configuration, every role but those), front (one of the front door's processes: endpoints' telemetry redirected to their home region, beside the platform's process at platform_url), logs (the deployment's logs, which the platform's process reaches at logs_url), releases (the conveyer, the release key, the published releases and the update repository, at releases_url), center (the Transparency Center over the platform at public_url, as vitrine center runs it), or region:NAME (one of the processes of region NAME's service, beside the platform's process at platform_url)")
	listen := fs.String("listen", "", "address to listen on (role region: required; all: the configuration's listen)")
	data := fs.String("data", "", "role region: this process's own directory (default ./vitrine-region-NAME); front: where its metrics token is kept (default ./vitrine-front); logs: the logs' directory (default ./vitrine-logs); releases: the releases' directory (default ./vitrine-releases); center: the Center's directory (default as vitrine center); all: the configuration's data")
	publicURL := fs.String("public-url", "", "role region: the region's URL that clients use (default: the region's URL in the policy, else http://<listen>); logs: the URL readers and the platform use (default: logs_url, else http(s)://<listen>); releases: likewise, releases_url")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *configFile == "" || *role == "" {
		fs.Usage()
		return errors.New("--config and --role are required")
	}
	if *role == "all" {
		up := []string{"--config", *configFile}
		for flag, v := range map[string]string{"--tls-cert": sf.TLSCert, "--tls-key": sf.TLSKey, "--metrics-listen": sf.MetricsListen} {
			if v != "" {
				up = append(up, flag, v)
			}
		}
		if *listen != "" {
			up = append(up, "--listen", *listen)
		}
		if *data != "" {
			up = append(up, "--data", *data)
		}
		if *publicURL != "" {
			up = append(up, "--public-url", *publicURL)
		}
		return runUp(ctx, e, up)
	}
	c, err := config.Load(*configFile)
	if err != nil {
		return err
	}
	switch *role {
	case "logs":
		return serveLogs(ctx, e, c, *listen, *data, *publicURL, sf)
	case "releases":
		return serveReleases(ctx, e, c, *listen, *data, *publicURL, sf)
	case "front":
		return serveFront(ctx, e, c, *listen, *data, sf)
	case "center":
		// The Center reads the platform as any outsider does: only its
		// public URL, from the configuration.
		base := c.PublicURL
		if base == "" {
			base = c.PlatformURL
		}
		if base == "" || *listen == "" {
			return errors.New("--role center: --listen is required, and the configuration's public_url (or platform_url) names the platform to show")
		}
		args := []string{"--platform", base, "--listen", *listen}
		if *data != "" {
			args = append(args, "--data", *data)
		}
		for flag, v := range map[string]string{"--tls-cert": sf.TLSCert, "--tls-key": sf.TLSKey, "--metrics-listen": sf.MetricsListen} {
			if v != "" {
				args = append(args, flag, v)
			}
		}
		return runCenter(ctx, e, args)
	}
	name, ok := strings.CutPrefix(*role, "region:")
	if !ok || name == "" {
		return fmt.Errorf("--role %q: want all, front, logs, releases, center or region:NAME", *role)
	}
	switch {
	case *listen == "":
		return errors.New("--role region: --listen is required")
	case c.PlatformURL == "" || c.PeerToken == "" || c.InternalTokens[name] == "":
		return fmt.Errorf("%s: a region's process needs platform_url, peer_token and its region's file in internal_tokens", *configFile)
	case c.Stores[name] == "":
		return fmt.Errorf("%s: stores names no store for region %q", *configFile, name)
	}
	peer, err := cli.ReadToken(c.PeerToken, "the peer token")
	if err != nil {
		return err
	}
	internal, err := cli.ReadToken(c.InternalTokens[name], "the region's internal token")
	if err != nil {
		return err
	}
	custodyURL, custodyTok, err := regionCustody(c)
	if err != nil {
		return err
	}
	if *data == "" {
		*data = "./vitrine-region-" + name
	}
	if *publicURL == "" && c.Residency != nil {
		if r := c.Residency.Region(name); r != nil {
			*publicURL = r.URL
		}
	}
	reg := metrics.New()
	tlsConf, err := prepareRole(ctx, e, sf, *data, reg)
	if err != nil {
		return err
	}
	s, err := platform.StartRegionService(ctx, platform.RegionServiceConfig{
		TLS: tlsConf, Metrics: reg,
		Region: name, Data: *data, Listen: *listen, PublicURL: *publicURL, Platform: c.PlatformURL, PeerToken: peer, InternalToken: internal,
		Store: c.Stores[name], CustodyURL: custodyURL, CustodyToken: custodyTok,
		CommitmentInterval: time.Duration(c.CommitmentInterval), Logger: e.Logger,
		Leased: func(lease string, held bool) {
			if held {
				fmt.Fprintf(e.Stdout, "lease %s taken\n", lease)
			} else {
				fmt.Fprintf(e.Stdout, "lease %s let go\n", lease)
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "region %s serving at %s (ingest, verdicts, exchange, access gateway), beside the platform at %s\n", name, s.URL(), c.PlatformURL)
	return serveUntil(ctx, s.Done(), s.Close)
}

// regionCustody returns where a region's process reaches key custody and
// with which token: custody_url with its token; with supervisor_url, the
// member's custody at the supervisor, with the member token (the
// platform's <data>/member.token, in custody_token), which crosses only
// https or this machine; with neither, the platform's own custody.
func regionCustody(c *config.Config) (custodyURL, token string, err error) {
	custodyURL = c.CustodyURL
	if c.SupervisorURL != "" {
		if c.CustodyURL != "" {
			return "", "", errors.New("a deployment with a supervisor uses the supervisor's custody: leave custody_url out")
		}
		if c.CustodyToken == "" {
			return "", "", errors.New("a region's process with supervisor_url needs custody_token: the file holding the platform's member token (its <data>/member.token)")
		}
		base := strings.TrimRight(c.SupervisorURL, "/")
		if err := checkSecureURL("the supervisor", base); err != nil {
			return "", "", err
		}
		name := c.Name
		if name == "" {
			name = "vitrine.local"
		}
		custodyURL = base + "/members/" + name + "/custody"
	}
	if c.CustodyToken == "" {
		return custodyURL, "", nil
	}
	token, err = cli.ReadToken(c.CustodyToken, "custody's token")
	return custodyURL, token, err
}

// serveLogs runs the deployment's logs in a process of their own, which
// the platform's process reaches at logs_url with the token this process
// keeps in <data>/logs.token.
func serveLogs(ctx context.Context, e *env, c *config.Config, listen, data, publicURL string, sf *cli.ServeFlags) error {
	if listen == "" {
		return errors.New("--role logs: --listen is required")
	}
	if data == "" {
		data = "./vitrine-logs"
	}
	if publicURL == "" {
		publicURL = c.LogsURL
	}
	var policy []byte
	switch {
	case c.WitnessPolicy != "":
		b, err := os.ReadFile(c.WitnessPolicy)
		if err != nil {
			return fmt.Errorf("witness_policy: %w", err)
		}
		policy = b
	case c.SupervisorURL != "":
		// The supervisor's witness cosigns the logs: its policy, pinned
		// on first use as a member platform pins it.
		base := strings.TrimRight(c.SupervisorURL, "/")
		if err := checkSecureURL("the supervisor", base); err != nil {
			return err
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		a := new(supervisor.About)
		hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		if err := vclient.GetJSON(ctx, hc, base+"/v1/supervisor", 8<<20, a); err != nil {
			return fmt.Errorf("reading the supervisor's witness policy: %w", err)
		}
		pins, err := checkSupervisorPins(filepath.Join(data, "supervisor.json"), base, a)
		if err != nil {
			return err
		}
		policy = []byte(pins.WitnessPolicy)
	}
	reg := metrics.New()
	tlsConf, err := prepareRole(ctx, e, sf, data, reg)
	if err != nil {
		return err
	}
	s, err := platform.StartLogService(ctx, platform.LogServiceConfig{
		Data: data, Name: c.Name, Listen: listen, PublicURL: publicURL, TLS: tlsConf, Metrics: reg,
		WitnessPolicy: policy, CheckpointInterval: time.Duration(c.CheckpointInterval), LogStores: c.LogStores, Logger: e.Logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "logs serving at %s (%s), append token %s\n", s.URL(), strings.Join(platform.LogNames, ", "), filepath.Join(data, "logs.token"))
	if policy == nil {
		e.Logger.Warn("the logs process cosigns its own logs with a witness of its own: whoever holds this machine can fork them unseen; set witness_policy to witnesses run by others (the supervisor's, or a quorum of vitrine witness processes)")
	}
	return serveUntil(ctx, s.Done(), s.Close)
}

// serveReleases runs the releases in a process of their own: it builds,
// signs and publishes, appending to the release log of the logs process
// at logs_url, and keeps the update repository.
func serveReleases(ctx context.Context, e *env, c *config.Config, listen, data, publicURL string, sf *cli.ServeFlags) error {
	if listen == "" {
		return errors.New("--role releases: --listen is required")
	}
	logs, err := remoteLogs(c)
	if err != nil {
		return err
	}
	if logs == nil {
		return errors.New("--role releases needs logs_url and logs_token: it appends to the release log of the logs process")
	}
	if data == "" {
		data = "./vitrine-releases"
	}
	if publicURL == "" {
		publicURL = c.ReleasesURL
	}
	var root []byte
	if c.TUFRoot != "" {
		if root, err = os.ReadFile(c.TUFRoot); err != nil {
			return fmt.Errorf("tuf_root: %w", err)
		}
	}
	offline := c.TUFOffline
	if offline == "" && root == nil {
		offline = newOfflineDir(c.Name + "-releases")
	}
	roots := c.BuildSourceRoots
	if roots == nil {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		roots = []string{wd}
	}
	tlsConf, err := prepareRole(ctx, e, sf, data, metrics.New())
	if err != nil {
		return err
	}
	s, err := platform.StartReleaseService(ctx, platform.ReleaseServiceConfig{
		Data: data, Listen: listen, PublicURL: publicURL, TLS: tlsConf,
		Logs:             *logs,
		BuildSourceRoots: roots, TUFRoot: root, TUFOfflineDir: offline, Logger: e.Logger,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "releases serving at %s (builds, releases, updates), operator token %s\n", s.URL(), filepath.Join(data, "operator.token"))
	return serveUntil(ctx, s.Done(), s.Close)
}

// serveFront runs one of the front door's processes: stateless, several
// behind one load balancer, beside the platform's process.
func serveFront(ctx context.Context, e *env, c *config.Config, listen, data string, sf *cli.ServeFlags) error {
	switch {
	case listen == "":
		return errors.New("--role front: --listen is required")
	case c.PlatformURL == "" || c.FrontToken == "":
		return errors.New("--role front needs platform_url and front_token (the file holding the platform's <data>/front.token)")
	}
	tok, err := cli.ReadToken(c.FrontToken, "the front door's token")
	if err != nil {
		return err
	}
	if data == "" {
		data = "./vitrine-front"
	}
	tlsConf, err := prepareRole(ctx, e, sf, data, metrics.New())
	if err != nil {
		return err
	}
	f, err := platform.StartFrontDoor(ctx, platform.FrontDoorConfig{Listen: listen, TLS: tlsConf, Platform: c.PlatformURL, PublicPlatform: c.PublicURL, Token: tok, Logger: e.Logger})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "front door serving at %s, beside the platform at %s\n", f.URL(), c.PlatformURL)
	return serveUntil(ctx, f.Done(), f.Close)
}

// prepareRole readies a role's process before it starts: the garbage
// collector tuned, TLS from sf's files, and reg's metrics served on sf's
// metrics listener, whose token (off loopback) is kept in data.
func prepareRole(ctx context.Context, e *env, sf *cli.ServeFlags, data string, reg *metrics.Registry) (*tls.Config, error) {
	cli.TuneGC()
	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return nil, err
	}
	if sf.MetricsListen != "" {
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, err
		}
	}
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, reg, tlsConf, filepath.Join(data, "metrics.token")); err != nil {
		return nil, err
	}
	return tlsConf, nil
}

// serveUntil waits until ctx ends or the server stops on its own (done),
// then closes it, within 30 s.
func serveUntil(ctx context.Context, done <-chan error, close func(context.Context) error) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-done:
		serveErr = fmt.Errorf("server stopped: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(serveErr, close(sctx))
}

// remoteLogs returns the logs process the configuration names (logs_url,
// reached over https or on this machine, with the token of logs_token),
// or nil when the logs run in the platform's process.
func remoteLogs(c *config.Config) (*platform.RemoteLogs, error) {
	if c.LogsURL == "" {
		return nil, nil
	}
	if c.LogsToken == "" {
		return nil, errors.New("logs_url needs logs_token: the file holding the logs process's append token (its <data>/logs.token)")
	}
	if err := checkSecureURL("the logs process", c.LogsURL); err != nil {
		return nil, err
	}
	tok, err := cli.ReadToken(c.LogsToken, "the logs' token")
	if err != nil {
		return nil, err
	}
	return &platform.RemoteLogs{URL: strings.TrimSuffix(c.LogsURL, "/"), Token: tok}, nil
}
