package platform

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
)

// releaseConfig configures the release parts: the conveyer, the release
// key, the published releases and the update repository.
type releaseConfig struct {
	// Data holds release.key, releases/, updates/ and conveyer/.
	Data string
	// BaseURL is where they are served: the conveyer's builder id is
	// under it.
	BaseURL          string
	BuildSourceRoots []string
	GoProxy, GoSumDB string
	GoModCache       string
	TUFRoot          []byte
	TUFOfflineDir    string
	TUFExpiry        tufrepo.Expiry
}

// releaseParts build, sign, log and publish releases, in the trusted
// region where the release key is: in the platform's process, or in a
// process of their own (`vitrine serve --role releases`).
type releaseParts struct {
	cfg       releaseConfig
	logger    *slog.Logger
	operator  func(*http.Request) bool
	key       *release.Ed25519Key
	store     *publish.Store
	updates   *tufrepo.Repo
	publisher *publish.Publisher
	builds    buildTracker  // the builds in progress, for GET /v1/builds
	buildSlot chan struct{} // one conveyer build at a time
	bg        context.Context
	cancel    context.CancelFunc
	tufDone   chan struct{}
}

// openReleaseParts opens the release parts under cfg.Data, publishing to
// log; operator authorises builds and root updates.
func openReleaseParts(ctx context.Context, cfg releaseConfig, log publish.Log, operator func(*http.Request) bool, logger *slog.Logger) (_ *releaseParts, err error) {
	p := &releaseParts{cfg: cfg, logger: logger, operator: operator, buildSlot: make(chan struct{}, 1)}
	p.bg, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.key, err = release.LoadOrCreateKey(filepath.Join(cfg.Data, "release.key")); err != nil {
		return nil, err
	}
	if p.store, err = publish.Open(filepath.Join(cfg.Data, "releases")); err != nil {
		return nil, err
	}
	if err := p.startUpdates(ctx); err != nil {
		return nil, err
	}
	// A release a failure or a crash left out of the update repository
	// is added now; one that still cannot be is added by publishing it
	// again, and does not keep the parts down.
	p.publisher = &publish.Publisher{Store: p.store, Log: log, Key: p.key, Updates: p.updates, Logger: logger}
	if _, err := p.publisher.Sync(ctx); err != nil {
		logger.Warn("update repository: published releases not added", "err", err)
	}
	return p, nil
}

func (p *releaseParts) routes(mux *http.ServeMux) {
	mux.Handle("/releases/", http.StripPrefix("/releases", p.store.Handler(p.logger)))
	mux.Handle("/updates/", http.StripPrefix("/updates", p.updates.Handler()))
	mux.Handle("POST /updates/root", p.updates.RootHandler(p.operator))
	mux.HandleFunc("POST "+BuildPath, p.serveBuild)
	mux.HandleFunc("GET "+BuildPath, p.serveBuilds)
}

// description is what discovery says of the releases served at base.
func (p *releaseParts) description(base string) ReleasesDescription {
	return ReleasesDescription{
		Releases: DiscoveryReleases{URL: base + "/releases/", Key: string(release.PublicKey(p.key.Public().(ed25519.PublicKey)).PEM())},
		Updates:  DiscoveryUpdates{URL: base + "/updates/", Root: p.updates.Root()},
	}
}

func (p *releaseParts) close() {
	p.cancel()
	if p.tufDone != nil {
		<-p.tufDone
	}
}

// ReleasesDescription is what a releases process serves at GET
// /v1/releases-service: where its releases and update repository are, the
// release key and the update repository's root, which the platform's
// discovery document lists.
type ReleasesDescription struct {
	Releases DiscoveryReleases `json:"releases"`
	Updates  DiscoveryUpdates  `json:"updates"`
}

// ReleasesPath is the route of a releases process's description.
const ReleasesPath = "/v1/releases-service"

// RemoteReleases is the releases process (`vitrine serve --role
// releases`) a platform lists in its discovery document instead of
// building and publishing itself.
type RemoteReleases struct {
	URL string
}

// remoteReleases is the releases process as the platform's process uses
// it: its description, pinned on first use (the release key and the
// update repository's initial root, which endpoints take as trust
// anchors from discovery and which never change: a rotated root is
// reached from it), and the releases read for reviews, each checked
// against the release log.
type remoteReleases struct {
	base string
	hc   *http.Client
	log  appendLog // the release log
	desc ReleasesDescription
	// loads bounds the releases read at once for reviews.
	loads chan struct{}
}

// openRemoteReleases reads the releases process's description, pinning
// it in pin on first use; later, a description with another release key
// or another initial root is refused. While the process cannot be
// reached, the pinned description stands in.
func openRemoteReleases(ctx context.Context, rr *RemoteReleases, log appendLog, pin string) (*remoteReleases, error) {
	r := &remoteReleases{base: strings.TrimSuffix(rr.URL, "/"), log: log, loads: make(chan struct{}, 2),
		// Nothing the releases process answers sends the platform
		// elsewhere.
		hc: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	d, err := pinOnFirstUse(pin, "the releases process at "+r.base, func() (*ReleasesDescription, error) { return r.fetch(ctx) },
		func(pinned, got *ReleasesDescription) error {
			switch {
			case pinned.Releases.Key != got.Releases.Key:
				return errors.New("it offers another release key than the one pinned")
			case !jsonEqual(pinned.Updates.Root, got.Updates.Root):
				// A rotated root is reached from the initial one.
				return errors.New("it offers another initial TUF root than the one pinned")
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	r.desc = *d
	return r, nil
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// fetch reads the description and checks it: the release key parses, the
// update root is a TUF root its own root keys signed, and both URLs are
// under the process's URL.
func (r *remoteReleases) fetch(ctx context.Context) (*ReleasesDescription, error) {
	var d ReleasesDescription
	if err := client.GetJSON(ctx, r.hc, r.base+ReleasesPath, 1<<20, &d); err != nil {
		return nil, err
	}
	if _, err := release.ParsePublicKey([]byte(d.Releases.Key)); err != nil {
		return nil, fmt.Errorf("the releases process's release key: %w", err)
	}
	if err := tufrepo.CheckRoot(d.Updates.Root); err != nil {
		return nil, fmt.Errorf("the releases process's update root: %w", err)
	}
	for _, u := range []string{d.Releases.URL, d.Updates.URL} {
		if !strings.HasPrefix(u, r.base+"/") {
			return nil, fmt.Errorf("the releases process lists %q, not under %s", u, r.base)
		}
	}
	return &d, nil
}

func (r *remoteReleases) description() ReleasesDescription { return r.desc }

// maxReviewedSource bounds the source archive read for a review (the
// Center's bound), and maxReviewLoad the time a release's reading takes.
const (
	maxReviewedSource = 64 << 20
	maxReviewLoad     = 45 * time.Second
)

// Load reads the release name version from the releases process: its
// release-log entry, proven at its index in the release log; its
// provenance, the one the entry binds, signed by the pinned release key;
// and, if withSource, its source archive, of the digest the provenance
// names. Two run at once; a third waits, within maxReviewLoad.
func (r *remoteReleases) Load(ctx context.Context, name, version string, withSource bool) (*publish.Release, error) {
	ctx, cancel := context.WithTimeout(ctx, maxReviewLoad)
	defer cancel()
	select {
	case r.loads <- struct{}{}:
		defer func() { <-r.loads }()
	case <-ctx.Done():
		return nil, fault.Mark(fault.ErrBusy, fmt.Errorf("reading release %s %s: %w", name, version, ctx.Err()))
	}
	if !validName(name) || !validName(version) {
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no release %q %q is published here", name, version))
	}
	relURL := r.base + "/releases/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/"
	var idx publish.ReleaseIndex
	err := client.GetJSON(ctx, r.hc, relURL, 1<<20, &idx)
	var se *client.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no release %q %q is published here", name, version))
	case err != nil:
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading release %s %s: %w", name, version, err))
	}
	entry, err := client.Get(ctx, r.hc, relURL+"release.json", 1<<20)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading release %s %s: %w", name, version, err))
	}
	proof, err := r.log.Prove(ctx, idx.LogIndex)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("release %s %s: %w", name, version, err))
	}
	if _, err := proof.Verify(tlog.LeafHash(entry), r.log.Verifier(), r.log.Policy()); err != nil {
		return nil, &refusedRelease{fmt.Errorf("release %s %s: its entry is not the release log's entry %d: %w", name, version, idx.LogIndex, err)}
	}
	e, err := release.ParseEntry(entry)
	if err != nil || e.Name != name || e.Version != version {
		return nil, &refusedRelease{fmt.Errorf("release %s %s: the release log's entry %d is of another release (%v)", name, version, idx.LogIndex, err)}
	}
	envelope, err := client.Get(ctx, r.hc, relURL+"provenance.json", 1<<20)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading the provenance of release %s %s: %w", name, version, err))
	}
	key, err := release.ParsePublicKey([]byte(r.description().Releases.Key))
	if err != nil {
		return nil, err
	}
	v, err := release.VerifyProvenance(ctx, envelope, e, key)
	if err != nil {
		return nil, &refusedRelease{fmt.Errorf("release %s %s: %w", name, version, err)}
	}
	build, err := v.Build()
	if err != nil || build.SourceSHA256 == "" {
		return nil, &refusedRelease{fmt.Errorf("release %s %s: its provenance names no source archive (%v)", name, version, err)}
	}
	rel := &publish.Release{Entry: entry, Index: idx.LogIndex}
	if !withSource {
		return rel, nil
	}
	hc := *r.hc
	hc.Timeout = 0 // ctx bounds it
	source, err := client.Get(ctx, &hc, relURL+"source.tar.gz", maxReviewedSource)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading the source of release %s %s: %w", name, version, err))
	}
	if sum := sha256.Sum256(source); build.SourceSHA256 != hex.EncodeToString(sum[:]) {
		return nil, &refusedRelease{fmt.Errorf("release %s %s: the source served has sha256 %x, its provenance names %s", name, version, sum, build.SourceSHA256)}
	}
	rel.Source = source
	return rel, nil
}

// refusedRelease is a release the releases process served that does not
// check out against the release log or its provenance: answered 502, with
// what did not check out.
type refusedRelease struct{ err error }

func (e *refusedRelease) Error() string {
	return "the releases process served what does not check out: " + e.err.Error()
}
func (e *refusedRelease) Unwrap() error { return e.err }

// validName is a release name or version as the store keeps them: one
// path element, not hidden.
func validName(s string) bool {
	return s != "" && len(s) <= 128 && !strings.HasPrefix(s, ".") && !strings.ContainsAny(s, "/\\\x00")
}

// ReleaseServiceConfig configures the releases in a process of their own
// (`vitrine serve --role releases`): the conveyer, the release key, the
// published releases and the update repository, in the trusted region.
type ReleaseServiceConfig struct {
	Data, Listen, PublicURL string
	TLS                     *tls.Config
	// Logs is the logs process, whose release log takes the releases.
	Logs             RemoteLogs
	BuildSourceRoots []string
	GoProxy, GoSumDB string
	GoModCache       string
	TUFRoot          []byte
	TUFOfflineDir    string
	Logger           *slog.Logger
}

// ReleaseService is the releases served by a process of their own. Its
// operator token (<data>/operator.token) builds (POST /v1/builds) and
// updates the update repository's root.
type ReleaseService struct {
	parts    *releaseParts
	baseURL  string
	listener net.Listener
	server   *http.Server
	serveErr chan error
}

// StartReleaseService opens the release parts and serves them.
func StartReleaseService(ctx context.Context, cfg ReleaseServiceConfig) (_ *ReleaseService, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return nil, err
	}
	operator, err := keys.LoadOrCreateToken(filepath.Join(cfg.Data, "operator.token"))
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	d, err := pinLogsDescription(ctx, hc, cfg.Logs.URL, filepath.Join(cfg.Data, "logs.json"))
	if err != nil {
		return nil, err
	}
	logs, err := d.remotes(&cfg.Logs, hc)
	if err != nil {
		return nil, err
	}
	s := &ReleaseService{serveErr: make(chan error, 1)}
	if s.listener, s.baseURL, err = listen(cfg.Listen, cfg.PublicURL, cfg.TLS); err != nil {
		return nil, err
	}
	s.parts, err = openReleaseParts(ctx, releaseConfig{
		Data: cfg.Data, BaseURL: s.baseURL, BuildSourceRoots: cfg.BuildSourceRoots, GoProxy: cfg.GoProxy, GoSumDB: cfg.GoSumDB,
		GoModCache: cfg.GoModCache, TUFRoot: cfg.TUFRoot, TUFOfflineDir: cfg.TUFOfflineDir,
	}, logs["release"], func(r *http.Request) bool { return keys.BearerEqual(r, operator) }, cfg.Logger)
	if err != nil {
		_ = s.listener.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	s.parts.routes(mux)
	mux.HandleFunc("GET "+ReleasesPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		httpapi.JSON(w, s.parts.description(s.baseURL))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path+"; see "+ReleasesPath)
	})
	rl := logs["release"]
	ready := httpapi.Check{Name: "release log", Ready: func(context.Context) error { return rl.Ready() }}
	// No write deadline: a build answers once it is published, minutes
	// later (serveBuild lifts the deadline in the platform's process).
	s.server = newServer(httpapi.WithHealth(mux, ready), cfg.Logger, 0)
	go func() { s.serveErr <- s.server.Serve(s.listener) }()
	return s, nil
}

// URL returns the process's base URL.
func (s *ReleaseService) URL() string { return s.baseURL }

// Done is closed with the server's error if it stops serving on its own.
func (s *ReleaseService) Done() <-chan error { return s.serveErr }

// Close stops serving and lets the update repository's re-signing stop.
func (s *ReleaseService) Close(ctx context.Context) error {
	err := s.server.Shutdown(ctx)
	s.parts.close()
	return err
}
