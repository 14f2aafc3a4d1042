package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/residency"
)

// FrontDoorConfig configures one process of the front door (`vitrine
// serve --role front`): what endpoints reach first. Several run behind
// one load balancer; none holds state.
type FrontDoorConfig struct {
	// Listen is the address to listen on; TLS, if set, serves HTTPS.
	Listen string
	TLS    *tls.Config
	// Platform is the base URL of the platform's process, and Token the
	// front door's token for its policy and revocations (the platform's
	// <data>/front.token).
	Platform, Token string
	// PublicPlatform is the platform's URL that endpoints use, under
	// which it serves the regions the policy gives no URL: by default as
	// the platform's discovery document shows it, else Platform.
	PublicPlatform string
	// Refresh is how often the policy and the revocations are read
	// (default 1s).
	Refresh time.Duration
	Logger  *slog.Logger
}

// FrontDoor is a running process of the front door. It answers an
// endpoint's POST /v1/telemetry with a 307 to its home region's ingest, as
// the platform's own front door does: the endpoint token checked under the
// issuer's key and against the revocations, the home region the active
// policy's. Both are the platform's, read every second; once they are 10 s
// old, telemetry is answered 503 and /readyz says so, so that the load
// balancer sends endpoints to a process that can reach the platform.
// The discovery document is passed on to the platform. Registration and
// revocation are not: they take the operator's token, which no front door
// process sees; the operator's provisioning reaches the platform itself.
type FrontDoor struct {
	mirror
	tokens   *endpoint.Verifier
	public   string // the platform's public URL
	proxy    http.Handler
	listener net.Listener
	server   *http.Server
	baseURL  string
	cancel   context.CancelFunc
	done     sync.WaitGroup
	serveErr chan error
}

// StartFrontDoor starts a process of the front door. It reads the
// platform's discovery document, the active policy and the revocations
// first, and fails if the platform does not answer.
func StartFrontDoor(ctx context.Context, cfg FrontDoorConfig) (_ *FrontDoor, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Platform == "" || cfg.Token == "" {
		return nil, errors.New("starting the front door: the platform's URL and the front door's token are required")
	}
	cfg.Platform = strings.TrimSuffix(cfg.Platform, "/")
	pu, err := url.Parse(cfg.Platform)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	f := &FrontDoor{mirror: newMirror(cfg.Platform, cfg.Token, hc, cfg.Logger.With("part", "front door")), serveErr: make(chan error, 1)}
	d, err := client.FetchDiscovery(ctx, hc, cfg.Platform)
	if err != nil {
		return nil, err
	}
	// The platform serves the regions the policy gives no URL under its
	// own public URL, which its discovery document shows: the front door
	// sends endpoints where the platform's registration does.
	f.public = strings.TrimSuffix(cfg.PublicPlatform, "/")
	for _, r := range d.Regions {
		if base, ok := strings.CutSuffix(r.URL, "/regions/"+r.Name); ok {
			f.public = base
		}
	}
	if f.public == "" {
		f.public = cfg.Platform
	}
	if f.tokens, err = f.start(ctx, d); err != nil {
		return nil, err
	}
	logger := f.logger
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pu)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			logger.Warn("passing a request on to the platform", "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
			httpapi.Error(w, http.StatusBadGateway, "the platform cannot be reached; retry shortly")
		},
	}
	if f.listener, f.baseURL, err = listen(cfg.Listen, "", cfg.TLS); err != nil {
		return nil, err
	}
	f.server = newServer(f.routes(), cfg.Logger, 60*time.Second)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	f.done.Go(func() { f.refreshLoop(bg, cfg.Refresh) })
	go func() { f.serveErr <- f.server.Serve(f.listener) }()
	return f, nil
}

func (f *FrontDoor) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", httpapi.ServeHealthz)
	mux.HandleFunc("GET /readyz", f.serveReadyz)
	mux.Handle("POST /v1/telemetry", f.whileFresh(http.HandlerFunc(f.serveTelemetry)))
	// The discovery document, passed on: endpoints know one URL.
	mux.Handle("GET /.well-known/vitrine.json", f.proxy)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusNotFound, "no such route at the front door: "+r.Method+" "+r.URL.Path+"; see /.well-known/vitrine.json")
	})
	return mux
}

// serveTelemetry redirects an endpoint's telemetry to its home region.
func (f *FrontDoor) serveTelemetry(w http.ResponseWriter, r *http.Request) {
	redirectHome(w, r, f.tokens, f.policy.Load(), f.public)
}

// redirectHome answers an endpoint's POST /v1/telemetry with a 307 to its
// home region's ingest: the token checked by tokens, the home region
// pol's, a region without a URL under platform's /regions/<name>.
func redirectHome(w http.ResponseWriter, r *http.Request, tokens *endpoint.Verifier, pol *residency.Policy, platform string) {
	tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	id, err := tokens.Verify(tok)
	if err != nil {
		httpapi.Unauthorized(w, "the front door needs a valid endpoint token")
		return
	}
	home, err := pol.RegionFor(id.Country)
	if err != nil {
		httpapi.Error(w, http.StatusForbidden, err.Error())
		return
	}
	http.Redirect(w, r, regionURL(pol, home, platform)+"/v1/telemetry", http.StatusTemporaryRedirect)
}

// regionURL returns the base URL of a region: the policy's, or the
// platform's /regions/<name> for a region the policy gives no URL.
func regionURL(pol *residency.Policy, name, platform string) string {
	if r := pol.Region(name); r != nil && r.URL != "" {
		return r.URL
	}
	return platform + "/regions/" + name
}

// URL returns the process's base URL.
func (f *FrontDoor) URL() string { return f.baseURL }

// Done is closed with the server's error if it stops serving on its own.
func (f *FrontDoor) Done() <-chan error { return f.serveErr }

// Close stops taking requests and reading the platform.
func (f *FrontDoor) Close(ctx context.Context) error {
	err := f.server.Shutdown(ctx)
	f.cancel()
	f.done.Wait()
	return err
}
