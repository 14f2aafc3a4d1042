// Package platform wires every Vitrine role into one process: `vitrine up`.
//
// It opens the logs release, policy, access-zurich, access-moscow and review, a
// witness whose cosignature each of them requires before it publishes a
// checkpoint, and one HTTP server with the external contract of
// docs/architecture.md ("External HTTP contract"): discovery at
// /.well-known/vitrine.json, logs under /logs/<name>/, the witness under
// /witness/.
package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/relocate"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/residency"
)

// LogNames are the logs every deployment runs: review holds the auditors'
// reviews of releases (POST /v1/reviews).
var LogNames = []string{"release", "policy", "access-zurich", "access-moscow", "review"}

// openLogStore opens the storage cfg.LogStores chooses for the log name
// (nil: the journaled tiles), with the checkpoint interval to use on it:
// the configured one, raised to the storage's minimum (Tessera's MySQL
// and AWS drivers publish at most once a second).
func openLogStore(ctx context.Context, interval time.Duration, stores map[string]string, name string) (tessera.Driver, time.Duration, error) {
	spec, ok := stores[name]
	if !ok {
		spec, ok = stores["default"]
	}
	if !ok {
		return nil, interval, nil
	}
	loc, err := logstore.ParseLocation(spec)
	if err != nil {
		return nil, 0, err
	}
	d, err := logstore.Open(ctx, loc)
	if err != nil {
		return nil, 0, err
	}
	if m, ok := d.(interface{ MinCheckpointInterval() time.Duration }); ok {
		interval = max(interval, m.MinCheckpointInterval())
	}
	return d, interval, nil
}

// LogKeys returns the verifier key of each log of the platform named name
// with data directory data, by log name, making the keys it lacks: what a
// witness must know before the platform's first start (a member's entry
// in its supervisor's members file).
func LogKeys(data, name string) (map[string]string, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	vkeys := map[string]string{}
	for _, log := range LogNames {
		vkey, err := logserver.LoadOrCreateKey(filepath.Join(data, "logs", log), name+"/logs/"+log)
		if err != nil {
			return nil, err
		}
		vkeys[log] = vkey
	}
	return vkeys, nil
}

// Config configures `vitrine up`.
type Config struct {
	// Data is the data directory; a restart with the same directory reuses
	// every key, token and log.
	Data string
	// Listen is the address to listen on, e.g. 127.0.0.1:8080.
	Listen string
	// Name prefixes every log origin and names the witness, e.g.
	// "vitrine.local" gives origins like "vitrine.local/logs/release". It
	// is part of each log's identity: keep it across restarts.
	Name string
	// PublicURL is the base URL clients use; empty means http://<listen>
	// (https:// with TLS).
	PublicURL string
	// TLS, when set, makes the server serve HTTPS (see package
	// certfile); nil serves plain HTTP. The parts that read the platform
	// as clients do (its Center and monitor, logs on MySQL reaching the
	// witness) connect to PublicURL, so the certificate must be valid
	// for it.
	TLS *tls.Config
	// Metrics, when set, is the registry the logs, the regions, their
	// gateways, custody and the witness report to.
	Metrics *metrics.Registry
	// CheckpointInterval is passed to every log (default 200ms).
	CheckpointInterval time.Duration
	// Residency is the residency policy to activate; nil means
	// residency.Default(). Regions without a URL are served by this
	// platform under /regions/<name>.
	Residency *residency.Policy
	// Stores chooses a region's store ("sqlite:PATH" or a postgres://
	// URL); a region without one gets SQLite under Data.
	Stores map[string]string
	// LogStores chooses where each log is stored, by log name or
	// "default" ("journal" or a mysql:// location, see package
	// logstore); a log without one keeps the journaled tiles under Data.
	LogStores map[string]string
	// CustodyURL, when set, is the base URL of the supervisor's key
	// custody running in its own process (`vitrine custody`), and
	// CustodyToken the bearer token it gave; without them the platform
	// runs custody itself, under /custody/.
	CustodyURL   string
	CustodyToken string
	// RemoteReleases, when set, is the releases process (`vitrine serve
	// --role releases`), which builds, signs and publishes releases and
	// keeps the update repository: the platform holds no release key,
	// lists that process in its discovery document, and reads releases
	// from it, checked against the release log, for reviews.
	RemoteReleases *RemoteReleases
	// RemoteLogs, when set, is the logs' own process (`vitrine serve
	// --role logs`): the platform opens no log and runs no witness, and
	// appends through that process. LogStores is then the logs
	// process's business.
	RemoteLogs *RemoteLogs
	// ExternalRegions are the regions served by processes of their own
	// (`vitrine serve --role region:<name>`, on a PostgreSQL store they
	// share with this process): this process does none of their
	// background work (the exchange, periodic commitments), and serves
	// them the routes of internal.go.
	ExternalRegions []string
	// CommitmentInterval is how often each region commits to its dataset
	// in its access log (default 1h); commitments are also made on demand
	// (POST /regions/<name>/v1/commitments).
	CommitmentInterval time.Duration
	// OperatorLocation is the home country of the operator, under whom
	// relocations are logged (default CH).
	OperatorLocation string
	// BodyBudget is how many bytes of request bodies the regions hold in
	// memory at once, all together (default httpapi.DefaultBodyBudget,
	// 64 MiB); one endpoint may hold a full batch of it. Beyond it, ingest
	// answers 503 (429 for the endpoint) without reading the body.
	BodyBudget int64
	// TUFRoot is the update repository's initial trusted root.json (made by
	// `vitrine tuf init`). Without it, the first start makes a root whose
	// offline keys go to TUFOfflineDir (default: beside Data, named after
	// it, ./vitrine-offline for ./vitrine-data), to be moved off this
	// machine. TUFExpiry is how long the update metadata stays valid
	// (zero fields: tufrepo.DefaultExpiry).
	TUFRoot       []byte
	TUFOfflineDir string
	TUFExpiry     tufrepo.Expiry
	// GoProxy and GoSumDB are the GOPROXY and GOSUMDB of the conveyer's
	// module download phase; empty means the machine's own.
	GoProxy, GoSumDB string
	// GoModCache is the conveyer's module cache. Empty means its own,
	// <Data>/conveyer/modcache. A shared cache is safe: every build
	// checks every module against go.sum first.
	GoModCache string
	// BuildSourceRoots are the absolute directories whose git repositories
	// and directories recipes may name as local sources (symlinks are
	// followed before the check); a recipe with a local source elsewhere
	// is refused (403). Nil means the working directory the platform was
	// started in, so that `vitrine up` run from a repository root builds
	// that repository's recipes; an empty list allows https:// and ssh://
	// git sources only.
	BuildSourceRoots []string
	// Monitor, when set, is the supervisor's monitor over this platform
	// (`vitrine up` runs one): served under /monitor/ and listed in the
	// discovery document, so that endpoints post the checkpoints they
	// verified to it.
	Monitor http.Handler
	// Center, when set, is the Transparency Center over this platform
	// (`vitrine up` runs one), served at / instead of the plain-text
	// index.
	Center http.Handler
	// Supervisor, when set, is the supervisor in its own process
	// (`vitrine supervisor`) that this platform is a member of: its
	// witness cosigns the logs, its custody holds the regions' keys, it
	// gives the endpoints' pseudonyms and its monitor reviews the logs.
	// The platform then runs none of them, and holds none of their keys.
	Supervisor *Supervisor
	Logger     *slog.Logger
}

// Supervisor is what a platform uses of the supervisor it is a member
// of; `vitrine up --supervisor` reads it from the supervisor's
// description and pins it.
type Supervisor struct {
	// WitnessPolicy is the policy of the supervisor's witness, with its
	// URL; Witness and Monitor are listed in the discovery document.
	WitnessPolicy string
	Witness       DiscoveryWitness
	Monitor       DiscoveryMonitor
	// CustodyURL is the member's custody, PseudonymsURL its pseudonyms
	// route; both take Token.
	CustodyURL, PseudonymsURL, Token string
}

// Platform is a running `vitrine up`.
type Platform struct {
	cfg           Config
	logger        *slog.Logger
	listener      net.Listener
	server        *http.Server
	baseURL       string
	operatorToken string
	witness       *witness.Witness
	policy        string
	witnesses     []DiscoveryWitness // the witnesses the policy names
	logs          map[string]appendLog
	custody       *custody.Service
	custodyToken  string
	// unwrapper is custody as the gateways and relocations reach it: the
	// in-process service or a client of the remote one; wrappers wrap
	// each region's data keys.
	unwrapper interface {
		Unwrap(context.Context, *custody.UnwrapRequest) (*custody.UnwrapResponse, error)
	}
	wrappers   map[string]seal.Wrapper
	principals *principal.Registry
	relocator  *relocate.Relocator
	// rel builds, signs, logs and publishes releases, with the release
	// key, and keeps the update repository (releases.go); remoteRel is
	// the releases process that does it instead (Config.RemoteReleases).
	rel       *releaseParts
	remoteRel *remoteReleases
	policyMu  sync.Mutex // serialises policy changes
	bg        context.Context
	bgCancel  context.CancelFunc
	regions   *regions
	serveErr  chan error
}

// Start opens every part under cfg.Data and starts serving on cfg.Listen.
func Start(ctx context.Context, cfg Config) (_ *Platform, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "vitrine.local"
	}
	if cfg.BuildSourceRoots == nil {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("starting platform: the default build source root: %w", err)
		}
		cfg.BuildSourceRoots = []string{wd}
	}
	for _, r := range cfg.BuildSourceRoots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("starting platform: build source root %q is not an absolute path", r)
		}
	}
	p := &Platform{cfg: cfg, logger: cfg.Logger, logs: map[string]appendLog{}, serveErr: make(chan error, 1)}
	p.bg, p.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			p.closeParts(context.Background())
		}
	}()

	// The data directory holds every key and token: private to the
	// platform's user, whatever the modes of what lies in it (a directory
	// made by an older Vitrine is tightened too).
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	p.operatorToken, err = keys.LoadOrCreateToken(filepath.Join(cfg.Data, "operator.token"))
	if err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if p.listener, p.baseURL, err = listen(cfg.Listen, cfg.PublicURL, cfg.TLS); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}

	if err := p.openLogs(ctx); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}

	// Principals may be given any region an access log exists for, and
	// their grants and revocations go into those logs.
	p.principals, err = principal.Open(filepath.Join(cfg.Data, "principals.json"), func(r string) bool { return p.logs["access-"+r] != nil },
		principal.WithLog(grantLog(p.logs)))
	if err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if err := p.startCustody(); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if err := p.startRegions(ctx); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if err := p.startRelocations(); err != nil {
		return nil, fmt.Errorf("starting platform: %w", err)
	}
	if rr := cfg.RemoteReleases; rr != nil {
		// The releases process logs in the logs process; the platform
		// checks what it reads of it against the same release log.
		if cfg.RemoteLogs == nil {
			return nil, errors.New("starting platform: a releases process needs the logs in a process of their own too (RemoteLogs)")
		}
		if p.remoteRel, err = openRemoteReleases(ctx, rr, p.logs["release"], filepath.Join(cfg.Data, "releases.json")); err != nil {
			return nil, fmt.Errorf("starting platform: %w", err)
		}
	} else {
		operator := func(r *http.Request) bool { return keys.BearerEqual(r, p.operatorToken) }
		p.rel, err = openReleaseParts(ctx, releaseConfig{
			Data: cfg.Data, BaseURL: p.baseURL, BuildSourceRoots: cfg.BuildSourceRoots, GoProxy: cfg.GoProxy, GoSumDB: cfg.GoSumDB,
			GoModCache: cfg.GoModCache, TUFRoot: cfg.TUFRoot, TUFOfflineDir: cfg.TUFOfflineDir, TUFExpiry: cfg.TUFExpiry,
		}, p.logs["release"], operator, p.logger)
		if err != nil {
			return nil, fmt.Errorf("starting platform: %w", err)
		}
	}

	p.server = newServer(p.routes(), cfg.Logger, 60*time.Second)
	go func() { p.serveErr <- p.server.Serve(p.listener) }()
	// A relocation a crash interrupted goes on.
	p.relocator.Resume(p.bg)
	return p, nil
}

func (p *Platform) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/vitrine.json", p.serveDiscovery)
	mux.HandleFunc("GET /healthz", httpapi.ServeHealthz)
	mux.HandleFunc("GET /readyz", p.serveReadyz) // health.go
	operator := func(r *http.Request) bool { return keys.BearerEqual(r, p.operatorToken) }
	for name, l := range p.logs {
		prefix := "/logs/" + name
		mux.Handle(prefix+"/", http.StripPrefix(prefix, l.ReadHandler()))
		// Only the component that owns a log appends to it (appends.go).
		mux.Handle(prefix+"/add", refuseAppend(name))
	}
	if p.witness != nil {
		mux.Handle("/witness/", http.StripPrefix("/witness", p.witnessHandler()))
	}
	if p.cfg.Monitor != nil {
		mux.Handle("/monitor/", http.StripPrefix("/monitor", p.cfg.Monitor))
	}
	if p.custody != nil {
		custodian := func(r *http.Request) bool { return keys.BearerEqual(r, p.custodyToken) }
		mux.Handle("/custody/", http.StripPrefix("/custody", p.custody.Handler(custodian)))
	}
	mux.Handle("POST "+principal.Path, p.principals.Handler(operator, p.logger))
	mux.Handle("DELETE "+principal.Path+"/", p.principals.Handler(operator, p.logger))
	mux.HandleFunc("POST /v1/endpoints", p.serveRegister)
	mux.HandleFunc("DELETE /v1/endpoints/{id}", p.serveEndpointRevoke)
	if p.rel != nil {
		p.rel.routes(mux)
	}
	mux.HandleFunc("POST /v1/relocations", p.serveRelocationStart)
	mux.HandleFunc("GET /v1/relocations/{id}", p.serveRelocation)
	mux.HandleFunc("POST /v1/telemetry", p.serveFrontDoor)
	p.internalRoutes(mux)                             // internal.go
	mux.HandleFunc("POST "+ReviewPath, p.serveReview) // reviews.go
	for name, r := range p.regions.byName {
		prefix := "/regions/" + name
		mux.Handle(prefix+"/", http.StripPrefix(prefix, r.Handler()))
		// The access gateway serves the routes that reach stored records.
		g := http.StripPrefix(prefix, p.regions.gateways[name].Handler())
		mux.Handle(prefix+"/v1/records", g)
		mux.Handle(prefix+"/v1/records/", g)
		mux.Handle(prefix+"/v1/access/", g)
		mux.Handle("POST "+prefix+"/v1/commitments", http.StripPrefix(prefix, p.regions.commits[name].Handler(p.mayCommit(name))))
	}
	if p.cfg.Center != nil {
		mux.Handle("GET /{$}", p.cfg.Center)
		mux.Handle("/center/", p.cfg.Center)
	} else {
		mux.HandleFunc("GET /{$}", p.serveIndex)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path+"; see /.well-known/vitrine.json")
	})
	return mux
}

// witnessHandler is the in-process witness's handler, whose answers
// are counted in the metrics.
func (p *Platform) witnessHandler() http.Handler {
	return p.cfg.Metrics.Witness().Handler(p.witness.Handler())
}

// The discovery document's types are the client package's: the platform
// writes what clients read, with one definition.
type (
	Discovery         = client.Discovery
	DiscoveryReleases = client.DiscoveryReleases
	DiscoveryLog      = client.DiscoveryLog
	DiscoveryWitness  = client.DiscoveryWitness
	DiscoveryRegion   = client.DiscoveryRegion
	DiscoveryUpdates  = client.DiscoveryUpdates
	DiscoveryMonitor  = client.DiscoveryMonitor
)

// Discovery returns the platform's discovery document.
func (p *Platform) Discovery() Discovery {
	d := Discovery{WitnessPolicy: p.policy, PolicyKey: p.regions.policyVK, EndpointKey: p.regions.issuer.VerifierKey()}
	pol := p.regions.policy.Load()
	for _, r := range pol.Regions {
		d.Regions = append(d.Regions, DiscoveryRegion{Name: r.Name, URL: p.regionURL(pol, r.Name), Countries: pol.Countries(r.Name)})
	}
	for _, name := range LogNames {
		l := p.logs[name]
		d.Logs = append(d.Logs, DiscoveryLog{Name: name, Origin: l.Origin(), VKey: l.VKey(), URL: p.logURL(name)})
	}
	d.Witnesses = p.witnesses
	if sup := p.cfg.Supervisor; sup != nil {
		d.Monitors = []DiscoveryMonitor{sup.Monitor}
	}
	var rd ReleasesDescription
	if p.rel != nil {
		rd = p.rel.description(p.baseURL)
	} else {
		rd = p.remoteRel.description()
	}
	d.Releases, d.Updates = rd.Releases, rd.Updates
	if p.cfg.Monitor != nil {
		d.Monitors = append(d.Monitors, DiscoveryMonitor{Name: p.cfg.Name + "/monitor", URL: p.baseURL + "/monitor/"})
	}
	return d
}

func (p *Platform) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	httpapi.JSON(w, p.Discovery())
}

func (p *Platform) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Vitrine\n\ndiscovery: %s/.well-known/vitrine.json\n", p.baseURL)
	for _, name := range LogNames {
		fmt.Fprintf(w, "log %-14s %s/logs/%s/checkpoint\n", name, p.baseURL, name)
	}
	d := p.Discovery()
	for _, wi := range d.Witnesses {
		fmt.Fprintf(w, "witness: %sadd-checkpoint\n", wi.URL)
	}
	for _, m := range d.Monitors {
		fmt.Fprintf(w, "monitor: %sv1/alerts\n", m.URL)
	}
}

// newServer is the HTTP server of a process of the platform: bounded
// headers and reads, writes bounded by writeTimeout (0: not), its errors
// logged as warnings.
func newServer(h http.Handler, logger *slog.Logger, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// listen listens on addr, with TLS under conf unless it is nil, and
// returns the listener and the base URL: publicURL, else
// http(s)://<the listener's address>.
func listen(addr, publicURL string, conf *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	scheme := "http://"
	if conf != nil {
		ln, scheme = tls.NewListener(ln, conf), "https://"
	}
	base := strings.TrimSuffix(publicURL, "/")
	if base == "" {
		base = scheme + ln.Addr().String()
	}
	return ln, base, nil
}

// URL returns the platform's base URL.
func (p *Platform) URL() string { return p.baseURL }

// Log returns the named log, or nil, also when the logs run in a process
// of their own.
func (p *Platform) Log(name string) *logserver.Log {
	l, _ := p.logs[name].(*logserver.Log)
	return l
}

// OperatorToken returns the bearer token for operator routes.
func (p *Platform) OperatorToken() string { return p.operatorToken }

// Done is closed with the server's error if it stops serving on its own.
func (p *Platform) Done() <-chan error { return p.serveErr }

// Close stops taking requests, lets the logs publish a witnessed checkpoint
// for everything they acknowledged, and closes every part.
func (p *Platform) Close(ctx context.Context) error {
	var errs []error
	if p.server != nil {
		if err := p.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping HTTP server: %w", err))
		}
	}
	errs = append(errs, p.closeParts(ctx))
	return errors.Join(errs...)
}

func (p *Platform) closeParts(ctx context.Context) error {
	var errs []error
	p.bgCancel()
	if p.relocator != nil {
		p.relocator.Wait()
	}
	if p.rel != nil {
		p.rel.close()
	}
	errs = append(errs, p.regions.close())
	if p.custody != nil {
		errs = append(errs, p.custody.Close())
	}
	for _, name := range LogNames {
		if l := p.logs[name]; l != nil {
			errs = append(errs, l.Close(ctx))
		}
	}
	if p.witness != nil {
		errs = append(errs, p.witness.Close())
	}
	if p.server == nil && p.listener != nil {
		_ = p.listener.Close()
	}
	return errors.Join(errs...)
}

// startCustody opens the key-custody service, which the supervisor runs
// (its own process in production): it holds each region's private
// wrapping key and unwraps data keys only for access-log entries proven in
// a checkpoint the supervisor's witness cosigned.
func (p *Platform) startCustody() error {
	p.wrappers = map[string]seal.Wrapper{}
	if sup := p.cfg.Supervisor; sup != nil {
		p.cfg.CustodyURL, p.cfg.CustodyToken = sup.CustodyURL, sup.Token
	}
	if p.cfg.CustodyURL != "" {
		// Custody runs in its own process: the platform only holds its
		// client, and each region's public key, fetched on first use and
		// pinned in the data directory.
		c := custody.NewClient(p.cfg.CustodyURL, p.cfg.CustodyToken, &http.Client{Timeout: 10 * time.Second})
		p.unwrapper = c
		for _, name := range LogNames {
			if region, ok := strings.CutPrefix(name, "access-"); ok {
				p.wrappers[region] = &remoteKey{client: c, region: region, pin: filepath.Join(p.cfg.Data, "custody-"+region+".pub")}
			}
		}
		return nil
	}
	var regions []custody.RegionConfig
	for _, name := range LogNames {
		region, ok := strings.CutPrefix(name, "access-")
		if !ok {
			continue
		}
		l := p.logs[name]
		regions = append(regions, custody.RegionConfig{Name: region, AccessLogVerifier: l.Verifier(), WitnessPolicy: l.Policy()})
	}
	var err error
	if p.custodyToken, err = keys.LoadOrCreateToken(filepath.Join(p.cfg.Data, "custody.token")); err != nil {
		return err
	}
	if p.custody, err = custody.Open(custody.Config{Dir: filepath.Join(p.cfg.Data, "custody"), Regions: regions, Logger: p.logger, Metrics: p.cfg.Metrics.Custody("")}); err != nil {
		return err
	}
	p.unwrapper = p.custody
	for _, r := range regions {
		k, _ := p.custody.PublicKey(r.Name)
		p.wrappers[r.Name] = k
	}
	return nil
}

// remoteKey wraps data keys to a region's key held by a custody in another
// process. It fetches the public key on first use, so that the platform
// starts while custody is down (ingest then fails closed), and pins it:
// a custody that later offers another key is refused.
type remoteKey struct {
	client *custody.Client
	region string
	pin    string
	mu     sync.Mutex
	key    *custody.PublicKey
}

func (k *remoteKey) Wrap(dataKey []byte) ([]byte, error) {
	k.mu.Lock()
	key := k.key
	if key == nil {
		var err error
		if key, err = k.fetch(); err != nil {
			k.mu.Unlock()
			return nil, err
		}
		k.key = key
	}
	k.mu.Unlock()
	return key.Wrap(dataKey)
}

func (k *remoteKey) fetch() (*custody.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, err := k.client.PublicKey(ctx, k.region)
	if err != nil {
		return nil, err
	}
	pinned, err := os.ReadFile(k.pin)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := atomicfile.Write(k.pin, []byte(key.String()+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("pinning the custody key of %s: %w", k.region, fault.Mark(fault.ErrUnavailable, err))
		}
	case err != nil:
		return nil, fault.Mark(fault.ErrUnavailable, err)
	case strings.TrimSpace(string(pinned)) != key.String():
		return nil, fmt.Errorf("custody offers another key for %s than the one pinned in %s; refusing it", k.region, k.pin)
	}
	return key, nil
}

// mayCommit authorises commitments on demand in region: the operator's
// token, or a supervisor or operator principal that may act there.
func (p *Platform) mayCommit(region string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if keys.BearerEqual(r, p.operatorToken) {
			return true
		}
		pr, err := p.principals.Authenticate(r)
		return err == nil && (pr.Role == principal.Supervisor || pr.Role == principal.Operator) && pr.MayActIn(region)
	}
}
