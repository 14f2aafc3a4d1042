package platform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// appendLog is one of the deployment's logs as the platform's parts use
// it: a *logserver.Log opened in this process, or a *logserver.Remote
// served by the logs' own process (`vitrine serve --role logs`).
type appendLog interface {
	Append(ctx context.Context, entry []byte) (uint64, error)
	AwaitWitnessed(ctx context.Context, index uint64) (*tlog.Checkpoint, error)
	Prove(ctx context.Context, index uint64) (*tlog.Proof, error)
	Checkpoint(ctx context.Context) (*tlog.Checkpoint, error)
	Reader() tlog.Fetcher
	Origin() string
	VKey() string
	Verifier() note.Verifier
	Policy() *tlog.Policy
	ReadHandler() http.Handler
	Ready() error
	Health() tilestore.Health
	Close(ctx context.Context) error
}

var (
	_ appendLog = (*logserver.Log)(nil)
	_ appendLog = (*logserver.Remote)(nil)
)

// RemoteLogs is where the logs run when they run in a process of their
// own: the base URL of that process (`vitrine serve --role logs`) and its
// append token (its <data>/logs.token).
type RemoteLogs struct {
	URL, Token string
}

// LogsDescription is what a logs process serves at GET /v1/logs: its
// logs, the witness policy their checkpoints meet and its witnesses. The
// platform pins it on first use (<data>/logs.json) and refuses a logs
// process that later describes other keys or another policy.
type LogsDescription struct {
	WitnessPolicy string             `json:"witness_policy"`
	Witnesses     []DiscoveryWitness `json:"witnesses"`
	Logs          []DiscoveryLog     `json:"logs"`
}

// LogsPath is the route of the logs process's description.
const LogsPath = "/v1/logs"

// openLogs opens the deployment's logs: in this process, cosigned by the
// supervisor's witness or by one the platform runs, or, with
// cfg.RemoteLogs, through the logs' own process.
func (p *Platform) openLogs(ctx context.Context) error {
	cfg := p.cfg
	if rl := cfg.RemoteLogs; rl != nil {
		if err := p.openRemoteLogs(ctx, rl); err != nil {
			return err
		}
		if sup := cfg.Supervisor; sup != nil {
			// The supervisor cosigns the logs: the logs process must
			// ask for its quorum, no less.
			if strings.TrimSpace(p.policy) != strings.TrimSpace(sup.WitnessPolicy) {
				return fmt.Errorf("the logs process at %s publishes under another witness policy than the supervisor's: start it with the same supervisor_url (or its witness policy as witness_policy)", rl.URL)
			}
			p.witnesses = []DiscoveryWitness{sup.Witness}
		}
		return nil
	}
	var policy []byte
	if sup := cfg.Supervisor; sup != nil {
		policy = []byte(sup.WitnessPolicy)
		p.witnesses = []DiscoveryWitness{sup.Witness}
	}
	ol, err := openLocalLogs(ctx, localLogs{Data: cfg.Data, Name: cfg.Name, BaseURL: p.baseURL, WitnessPolicy: policy,
		CheckpointInterval: cfg.CheckpointInterval, LogStores: cfg.LogStores, Metrics: cfg.Metrics, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	p.witness, p.policy = ol.witness, ol.policy
	if ol.witness != nil {
		p.witnesses = []DiscoveryWitness{{Name: ol.witness.Name(), VKey: ol.witness.VKey(), URL: p.baseURL + "/witness/"}}
	}
	for name, l := range ol.logs {
		p.logs[name] = l
	}
	return nil
}

// logURL is where clients read the named log: under the platform, or at
// the logs' own process.
func (p *Platform) logURL(name string) string {
	if r, ok := p.logs[name].(*logserver.Remote); ok {
		return r.URL()
	}
	return p.baseURL + "/logs/" + name + "/"
}

func (p *Platform) openRemoteLogs(ctx context.Context, rl *RemoteLogs) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	d, err := pinLogsDescription(ctx, hc, rl.URL, filepath.Join(p.cfg.Data, "logs.json"))
	if err != nil {
		return err
	}
	logs, err := d.remotes(rl, hc)
	if err != nil {
		return err
	}
	p.policy, p.witnesses = d.WitnessPolicy, d.Witnesses
	for name, r := range logs {
		p.logs[name] = r
	}
	return nil
}

// remotes returns every log of LogNames as d describes it, reached at
// the logs process rl.
func (d *LogsDescription) remotes(rl *RemoteLogs, hc *http.Client) (map[string]*logserver.Remote, error) {
	base, err := url.Parse(rl.URL)
	if err != nil {
		return nil, err
	}
	out := map[string]*logserver.Remote{}
	for _, name := range LogNames {
		dl, ok := d.log(name)
		if !ok {
			return nil, fmt.Errorf("the logs process at %s serves no log %q", rl.URL, name)
		}
		// The append token goes with every append: only to where
		// logs_url says, never where a description sends it.
		if u, err := url.Parse(dl.URL); err != nil || u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil {
			return nil, fmt.Errorf("the logs process at %s lists log %s at %q, not under %s://%s", rl.URL, name, dl.URL, base.Scheme, base.Host)
		}
		r, err := logserver.NewRemote(dl.URL, dl.VKey, []byte(d.WitnessPolicy), rl.Token, hc)
		if err != nil {
			return nil, err
		}
		if r.Origin() != dl.Origin {
			return nil, fmt.Errorf("the logs process at %s describes log %s with origin %q, whose key names %q", rl.URL, name, dl.Origin, r.Origin())
		}
		out[name] = r
	}
	return out, nil
}

// RemoteLogKeys returns the verifier key of each log of the logs process
// at rl, by log name, as pinned in pin on first use (the file the
// platform pins it in, <data>/logs.json): what a supervisor's members
// file lists for a member whose logs run in a process of their own.
func RemoteLogKeys(ctx context.Context, rl *RemoteLogs, pin string) (map[string]string, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	d, err := pinLogsDescription(ctx, hc, rl.URL, pin)
	if err != nil {
		return nil, err
	}
	logs, err := d.remotes(rl, hc)
	if err != nil {
		return nil, err
	}
	vkeys := map[string]string{}
	for name, r := range logs {
		vkeys[name] = r.VKey()
	}
	return vkeys, nil
}

func (d *LogsDescription) log(name string) (DiscoveryLog, bool) {
	for _, l := range d.Logs {
		if l.Name == name {
			return l, true
		}
	}
	return DiscoveryLog{}, false
}

// pinLogsDescription returns the description of the logs process at base,
// pinned in the file pin: the first one read is kept there; after that,
// one that differs is refused, and the pinned one is used while the
// process cannot be reached (the logs then answer 503 until it can).
func pinLogsDescription(ctx context.Context, hc *http.Client, base, pin string) (*LogsDescription, error) {
	return pinOnFirstUse(pin, "the logs process at "+base, func() (*LogsDescription, error) {
		var d LogsDescription
		if err := client.GetJSON(ctx, hc, base+LogsPath, 1<<20, &d); err != nil {
			return nil, err
		}
		if p, err := tlog.ParsePolicy([]byte(d.WitnessPolicy)); err != nil {
			return nil, fmt.Errorf("witness policy: %w", err)
		} else if p.Quorum() == "none" {
			return nil, errors.New("its witness policy's quorum is none: its logs would be trusted on its word alone")
		}
		return &d, nil
	}, func(pinned, got *LogsDescription) error {
		if !reflect.DeepEqual(pinned, got) {
			return errors.New("it describes other logs, keys or witnesses than those pinned")
		}
		return nil
	})
}

// pinOnFirstUse returns what fetch reads from another process (what),
// pinned in the file pin: the first one read is kept there; after that,
// one that same says differs is refused, and the pinned one is used while
// fetch fails (the process cannot be reached: what depends on it then
// answers 503 until it can).
func pinOnFirstUse[T any](pin, what string, fetch func() (*T, error), same func(pinned, got *T) error) (*T, error) {
	var pinned *T
	switch b, err := os.ReadFile(pin); {
	case err == nil:
		pinned = new(T)
		if err := json.Unmarshal(b, pinned); err != nil {
			return nil, fmt.Errorf("%s: %w", pin, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	got, err := fetch()
	switch {
	case err != nil && pinned != nil:
		return pinned, nil
	case err != nil:
		return nil, fmt.Errorf("%s (nothing pinned yet): %w", what, err)
	case pinned != nil:
		if err := same(pinned, got); err != nil {
			return nil, fmt.Errorf("%s: %w, in %s; refusing it (remove the file only if the change is intended)", what, err, pin)
		}
		return pinned, nil
	}
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(pin, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	return got, nil
}

// localLogs configures openLocalLogs.
type localLogs struct {
	Data, Name, BaseURL string
	// WitnessPolicy, when set, is the policy of the witnesses that
	// cosign the logs; nil runs a witness in this process, under
	// BaseURL/witness.
	WitnessPolicy      []byte
	CheckpointInterval time.Duration
	LogStores          map[string]string
	Metrics            *metrics.Registry
	Logger             *slog.Logger
}

// openedLogs are the logs a process opened, with the witness it runs for
// them (nil when they are cosigned elsewhere) and their witness policy.
type openedLogs struct {
	witness *witness.Witness
	policy  string
	logs    map[string]*logserver.Log
}

// witnessHandler serves the in-process witness, its answers counted.
func (o *openedLogs) witnessHandler(m *metrics.Registry) http.Handler {
	return m.Witness().Handler(o.witness.Handler())
}

func (o *openedLogs) close(ctx context.Context) error {
	var errs []error
	for _, name := range LogNames {
		if l := o.logs[name]; l != nil {
			errs = append(errs, l.Close(ctx))
		}
	}
	if o.witness != nil {
		errs = append(errs, o.witness.Close())
	}
	return errors.Join(errs...)
}

// openLocalLogs opens every log of LogNames under cfg.Data, and the
// witness that cosigns them unless cfg.WitnessPolicy names others.
func openLocalLogs(ctx context.Context, cfg localLogs) (_ *openedLogs, err error) {
	o := &openedLogs{logs: map[string]*logserver.Log{}}
	defer func() {
		if err != nil {
			_ = o.close(context.Background())
		}
	}()
	hc := &http.Client{Timeout: 10 * time.Second}
	if cfg.WitnessPolicy != nil {
		o.policy = string(cfg.WitnessPolicy)
	} else {
		o.witness, err = witness.Open(ctx, witness.Config{Dir: filepath.Join(cfg.Data, "witness"), Name: cfg.Name + "/witness", Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		witnessURL := cfg.BaseURL + "/witness"
		policy, err := tlog.SingleWitnessPolicy("supervisor", o.witness.VKey(), witnessURL)
		if err != nil {
			return nil, err
		}
		o.policy = string(policy)
		// The logs reach the in-process witness without the network.
		wu, err := url.Parse(witnessURL)
		if err != nil {
			return nil, fmt.Errorf("witness URL: %w", err)
		}
		hc.Transport = &httpapi.HandlerTransport{
			Host:    wu.Host,
			Handler: http.StripPrefix("/witness", o.witnessHandler(cfg.Metrics)),
			Next:    http.DefaultTransport,
		}
	}
	vkeys, err := LogKeys(cfg.Data, cfg.Name)
	if err != nil {
		return nil, err
	}
	for _, name := range LogNames {
		dir, origin := filepath.Join(cfg.Data, "logs", name), cfg.Name+"/logs/"+name
		if o.witness != nil {
			if err := o.witness.AddLog(ctx, witness.LogKey{Origin: origin, VKey: vkeys[name]}); err != nil {
				return nil, err
			}
		}
		storage, interval, err := openLogStore(ctx, cfg.CheckpointInterval, cfg.LogStores, name)
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", name, err)
		}
		l, err := logserver.Open(ctx, logserver.Config{
			Dir:                dir,
			Origin:             origin,
			WitnessPolicy:      []byte(o.policy),
			HTTPClient:         hc,
			Logger:             cfg.Logger,
			CheckpointInterval: interval,
			Storage:            storage,
			Metrics:            cfg.Metrics.Log(origin),
		})
		if err != nil {
			if s, ok := storage.(logserver.StorageHealth); ok {
				s.Wait()
			}
			return nil, err
		}
		o.logs[name] = l
	}
	return o, nil
}

// LogServiceConfig configures the logs in a process of their own
// (`vitrine serve --role logs`).
type LogServiceConfig struct {
	// Data holds the logs' keys and, unless LogStores says otherwise,
	// their journaled tiles; Name prefixes their origins, as the
	// platform's Name does.
	Data, Name string
	// Listen and PublicURL: where the process listens and the base URL
	// its readers and the platform use.
	Listen, PublicURL string
	TLS               *tls.Config
	Metrics           *metrics.Registry
	// WitnessPolicy is the policy of the witnesses that cosign the logs
	// (the supervisor's, or a quorum of independent ones); nil runs a
	// witness in this process, under /witness/.
	WitnessPolicy      []byte
	CheckpointInterval time.Duration
	LogStores          map[string]string
	Logger             *slog.Logger
}

// LogService is the deployment's logs served by a process of their own.
// Reading is public (the C2SP tlog-tiles API under /logs/<name>/);
// appending (POST /logs/<name>/add) and waiting for a proof (GET
// /logs/<name>/prove?index=N) take the token in <data>/logs.token, which
// only the platform's process holds: it checks what it appends, as it does
// with the logs in its own process.
type LogService struct {
	cfg      LogServiceConfig
	logs     *openedLogs
	token    string
	baseURL  string
	listener net.Listener
	server   *http.Server
	serveErr chan error
}

// StartLogService opens the logs and serves them.
func StartLogService(ctx context.Context, cfg LogServiceConfig) (_ *LogService, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "vitrine.local"
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, err
	}
	s := &LogService{cfg: cfg, serveErr: make(chan error, 1)}
	if s.token, err = keys.LoadOrCreateToken(filepath.Join(cfg.Data, "logs.token")); err != nil {
		return nil, err
	}
	if s.listener, s.baseURL, err = listen(cfg.Listen, cfg.PublicURL, cfg.TLS); err != nil {
		return nil, err
	}
	s.logs, err = openLocalLogs(ctx, localLogs{Data: cfg.Data, Name: cfg.Name, BaseURL: s.baseURL, WitnessPolicy: cfg.WitnessPolicy,
		CheckpointInterval: cfg.CheckpointInterval, LogStores: cfg.LogStores, Metrics: cfg.Metrics, Logger: cfg.Logger})
	if err != nil {
		_ = s.listener.Close()
		return nil, err
	}
	// Above maxProveWait, which a proof on demand may take.
	s.server = newServer(s.routes(), cfg.Logger, maxProveWait+30*time.Second)
	go func() { s.serveErr <- s.server.Serve(s.listener) }()
	return s, nil
}

func (s *LogService) routes() http.Handler {
	mux := http.NewServeMux()
	appender := func(r *http.Request) bool { return keys.BearerEqual(r, s.token) }
	var checks []httpapi.Check
	for name, l := range s.logs.logs {
		prefix := "/logs/" + name
		mux.Handle(prefix+"/", http.StripPrefix(prefix, l.ReadHandler()))
		mux.Handle("POST "+prefix+"/add", l.AddHandler(appender))
		mux.HandleFunc("GET "+prefix+"/prove", func(w http.ResponseWriter, r *http.Request) {
			if !appender(r) {
				httpapi.Unauthorized(w, "proofs on demand need the logs' token (the logs process's <data>/logs.token)")
				return
			}
			s.serveProve(w, r, l)
		})
		checks = append(checks, httpapi.Check{Name: "log " + name, Ready: l.Serving})
	}
	if s.logs.witness != nil {
		mux.Handle("/witness/", http.StripPrefix("/witness", s.logs.witnessHandler(s.cfg.Metrics)))
	}
	mux.HandleFunc("GET "+LogsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		httpapi.JSON(w, s.Description())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path+"; see "+LogsPath)
	})
	return httpapi.WithHealth(mux, checks...)
}

// maxProveWait bounds how long a proof on demand waits for a witnessed
// checkpoint.
const maxProveWait = 30 * time.Second

func (s *LogService) serveProve(w http.ResponseWriter, r *http.Request, l *logserver.Log) {
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 63)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad index: want ?index=N")
		return
	}
	// Only an entry the log has sequenced can be waited for: an index
	// beyond it would hold the request until maxProveWait for nothing.
	next, err := l.NextIndex(r.Context())
	if err != nil {
		httpapi.Fail(w, s.cfg.Logger, fault.Mark(fault.ErrUnavailable, err), "reading the size of "+l.Origin())
		return
	}
	if index >= next {
		httpapi.Error(w, http.StatusNotFound, "no entry "+strconv.FormatUint(index, 10)+" yet: the log holds "+strconv.FormatUint(next, 10))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxProveWait)
	defer cancel()
	proof, err := l.Prove(ctx, index)
	if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
		// The witnesses have not cosigned it within maxProveWait: the
		// caller asks again, as long as it cares to wait.
		w.Header().Set("Retry-After", "1")
		httpapi.Error(w, http.StatusServiceUnavailable, logserver.NotWitnessedYet)
		return
	}
	if err != nil {
		httpapi.Fail(w, s.cfg.Logger, err, "proving an entry of "+l.Origin())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(proof.Marshal())
}

// Description is what GET /v1/logs serves.
func (s *LogService) Description() LogsDescription {
	d := LogsDescription{WitnessPolicy: s.logs.policy}
	if wi := s.logs.witness; wi != nil {
		d.Witnesses = []DiscoveryWitness{{Name: wi.Name(), VKey: wi.VKey(), URL: s.baseURL + "/witness/"}}
	} else if p, err := tlog.ParsePolicy(s.cfg.WitnessPolicy); err == nil {
		for _, wi := range p.Witnesses {
			d.Witnesses = append(d.Witnesses, DiscoveryWitness{Name: wi.Verifier.Name(), VKey: wi.VKey, URL: wi.URL})
		}
	}
	for _, name := range LogNames {
		l := s.logs.logs[name]
		d.Logs = append(d.Logs, DiscoveryLog{Name: name, Origin: l.Origin(), VKey: l.VKey(), URL: s.baseURL + "/logs/" + name + "/"})
	}
	return d
}

// URL returns the process's base URL.
func (s *LogService) URL() string { return s.baseURL }

// Token returns the append token, which the platform's process holds.
func (s *LogService) Token() string { return s.token }

// Done is closed with the server's error if it stops serving on its own.
func (s *LogService) Done() <-chan error { return s.serveErr }

// Close stops serving, then closes the logs once each has published a
// witnessed checkpoint for what it acknowledged (until ctx ends).
func (s *LogService) Close(ctx context.Context) error {
	return errors.Join(s.server.Shutdown(ctx), s.logs.close(ctx))
}
