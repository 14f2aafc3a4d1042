package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Config configures a Supervisor.
type Config struct {
	// Dir holds every key of the supervisor: the witness's, each
	// member's custody keys and pseudonymisation key, the supervisor's
	// token, the monitor's state. It is created (mode 0700) if missing.
	Dir string
	// Name is the supervisor's name, e.g. "supervisor.example": its
	// witness's key name is Name + "/witness". Keep it across restarts.
	Name string
	// URL is the base URL the supervisor is reached at, by its members'
	// platforms and by anyone reading its monitor.
	URL string
	// Members are the vendors it serves (ParseMembers).
	Members []Member
	// Monitor configures the monitor: its Rules, Interval, Webhooks,
	// HookCommand, Heartbeat, HTTPClient. What the supervisor decides
	// (Dir, Platforms, Custody, PseudonymKeys, Expect, Name,
	// SupervisorToken) is filled in.
	Monitor monitor.Config
	Logger  *slog.Logger
	// Metrics, if set, counts the witness's answers and each member's
	// unwraps (labelled with the member).
	Metrics *metrics.Registry
}

// Supervisor is an open supervisor: serve its Handler and Run its monitor.
type Supervisor struct {
	cfg     Config
	witness *witness.Witness
	policy  string
	token   string
	members map[string]*member
	monitor *monitor.Monitor
	// inner serves the witness and the members' custody, to the public
	// handler and, in process, to the monitor.
	inner *http.ServeMux
}

type member struct {
	Member
	custody *custody.Service
	pkey    endpoint.PseudonymKey
}

// TokenFile is the supervisor's token in Dir: it acknowledges alerts and
// may read every member's custody counts.
const TokenFile = "supervisor.token"

// Open opens the supervisor's state in cfg.Dir, making the keys it lacks.
func Open(ctx context.Context, cfg Config) (s *Supervisor, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.Dir == "" || cfg.Name == "" || cfg.URL == "" {
		return nil, errors.New("opening the supervisor: Dir, Name and URL are required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening the supervisor: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening the supervisor: %w", err)
	}
	s = &Supervisor{cfg: cfg, members: map[string]*member{}}
	defer func() {
		if err != nil {
			s.Close()
			err = fmt.Errorf("opening the supervisor: %w", err)
		}
	}()
	if s.token, err = keys.LoadOrCreateToken(filepath.Join(cfg.Dir, TokenFile)); err != nil {
		return s, err
	}
	// The monitor's acknowledgement log is cosigned by the supervisor's
	// own witness, reached in this process.
	monDir, monName := filepath.Join(cfg.Dir, "monitor"), cfg.Name+"/monitor"
	ackKey, err := logserver.LoadOrCreateKey(filepath.Join(monDir, "acknowledgements"), monName+"/acknowledgements")
	if err != nil {
		return s, err
	}
	logs := []witness.LogKey{{Origin: monName + "/acknowledgements", VKey: ackKey}}
	for _, m := range cfg.Members {
		for _, k := range m.Logs {
			v, err := note.NewVerifier(k)
			if err != nil {
				return s, fmt.Errorf("member %s: %w", m.Name, err)
			}
			logs = append(logs, witness.LogKey{Origin: v.Name(), VKey: k})
		}
	}
	if s.witness, err = witness.Open(ctx, witness.Config{Dir: filepath.Join(cfg.Dir, "witness"), Name: cfg.Name + "/witness", Logs: logs, Logger: cfg.Logger}); err != nil {
		return s, err
	}
	policy, err := tlog.SingleWitnessPolicy("supervisor", s.witness.VKey(), cfg.URL+"/witness")
	if err != nil {
		return s, err
	}
	s.policy = string(policy)
	parsed, err := tlog.ParsePolicy(policy)
	if err != nil {
		return s, err
	}

	u, err := url.Parse(cfg.URL)
	if err != nil {
		return s, err
	}
	// What the monitor reaches of the supervisor itself (the witness, for
	// its acknowledgement log; each member's custody, for the counts) it
	// reaches in this process: its token never crosses the network.
	self := http.NewServeMux()
	s.inner = self
	mc := cfg.Monitor
	mc.Dir, mc.Name, mc.SupervisorToken, mc.Logger = monDir, monName, s.token, cfg.Logger
	mc.AckWitnessPolicy = policy
	local := &httpapi.HandlerTransport{Host: u.Host, Handler: self, Next: http.DefaultTransport}
	mc.AckHTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: local}
	if mc.HTTPClient == nil {
		mc.HTTPClient = &http.Client{Timeout: time.Minute, Transport: local}
	}
	mc.Platforms, mc.Custody, mc.PseudonymKeys, mc.Expect = nil, nil, map[string][]byte{}, map[string]*client.Pins{}
	for _, m := range cfg.Members {
		dir := filepath.Join(cfg.Dir, "members", m.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return s, err
		}
		mem := &member{Member: m}
		s.members[m.Name] = mem
		// The pseudonymisation key: one per member, so that one vendor's
		// pseudonyms say nothing of another's endpoints.
		pkey, err := keys.LoadOrCreateToken(filepath.Join(dir, "pseudonym.key"))
		if err != nil {
			return s, err
		}
		mem.pkey = endpoint.PseudonymKey(pkey)
		var regions []custody.RegionConfig
		exp := &client.Pins{Platform: m.Discovery, LogKeys: map[string]string{}, WitnessPolicy: s.policy}
		for _, k := range m.Logs {
			log := m.LogName(k)
			exp.LogKeys[log] = k
			region, ok := strings.CutPrefix(log, "access-")
			if !ok {
				continue
			}
			v, err := note.NewVerifier(k)
			if err != nil {
				return s, err
			}
			regions = append(regions, custody.RegionConfig{Name: region, AccessLogVerifier: v, WitnessPolicy: parsed})
		}
		if mem.custody, err = custody.Open(custody.Config{Dir: filepath.Join(dir, "custody"), Regions: regions, Logger: cfg.Logger, Metrics: cfg.Metrics.Custody(m.Name)}); err != nil {
			return s, fmt.Errorf("member %s: %w", m.Name, err)
		}
		mc.Platforms = append(mc.Platforms, m.Discovery)
		mc.Custody = append(mc.Custody, monitor.Custody{Platform: m.Discovery, URL: s.custodyURL(m.Name), Token: s.token})
		mc.PseudonymKeys[m.Discovery] = []byte(pkey)
		mc.Expect[m.Discovery] = exp
	}
	self.Handle("/witness/", http.StripPrefix("/witness", cfg.Metrics.Witness().Handler(s.witness.Handler())))
	for name, m := range s.members {
		prefix := "/members/" + name + "/custody"
		self.Handle(prefix+"/", http.StripPrefix(prefix, m.custody.Handler(func(r *http.Request) bool {
			// The member's token for everything; the supervisor's for
			// reading the counts, which its monitor reconciles.
			return m.TokenMatches(keys.Bearer(r)) || r.Method == http.MethodGet && r.URL.Path == "/v1/counts" && keys.BearerEqual(r, s.token)
		})))
	}
	if s.monitor, err = monitor.New(ctx, mc); err != nil {
		return s, err
	}
	return s, nil
}

func (s *Supervisor) custodyURL(name string) string {
	return s.cfg.URL + "/members/" + name + "/custody"
}

// Token is the supervisor's bearer token.
func (s *Supervisor) Token() string { return s.token }

// Run runs the monitor until ctx ends.
func (s *Supervisor) Run(ctx context.Context) error { return s.monitor.Run(ctx) }

// Close closes everything Open opened.
func (s *Supervisor) Close() error {
	var errs []error
	if s.monitor != nil {
		errs = append(errs, s.monitor.Close())
	}
	for _, m := range s.members {
		if m.custody != nil {
			errs = append(errs, m.custody.Close())
		}
	}
	if s.witness != nil {
		errs = append(errs, s.witness.Close())
	}
	return errors.Join(errs...)
}

// Ready returns nil when the witness's state and every member's unwrap
// counts answer. Its error names no file.
func (s *Supervisor) Ready(ctx context.Context) error {
	if err := s.witness.Ready(ctx); err != nil {
		return err
	}
	for name, m := range s.members {
		if err := m.custody.Ready(ctx); err != nil {
			return fmt.Errorf("member %s: %w", name, err)
		}
	}
	return nil
}

// About is the supervisor's public description, at GET /v1/supervisor:
// what a member's platform needs to use it, and what anyone needs to
// check what it says.
type About struct {
	Name          string                  `json:"name"`
	Witness       client.DiscoveryWitness `json:"witness"`
	WitnessPolicy string                  `json:"witness_policy"`
	Monitor       client.DiscoveryMonitor `json:"monitor"`
	Members       []AboutMember           `json:"members"`
}

// AboutMember is a member as the supervisor serves it.
type AboutMember struct {
	Name      string   `json:"name"`
	Discovery string   `json:"discovery"`
	Logs      []string `json:"logs"`
	// Custody is the base URL of the member's key custody; Pseudonyms
	// the route that gives its endpoints' pseudonyms.
	Custody    string `json:"custody"`
	Pseudonyms string `json:"pseudonyms"`
	Contact    string `json:"contact,omitempty"`
}

// About returns the supervisor's description.
func (s *Supervisor) About() *About {
	a := &About{
		Name:          s.cfg.Name,
		Witness:       client.DiscoveryWitness{Name: s.witness.Name(), VKey: s.witness.VKey(), URL: s.cfg.URL + "/witness/"},
		WitnessPolicy: s.policy,
		Monitor:       client.DiscoveryMonitor{Name: s.cfg.Name + "/monitor", URL: s.cfg.URL + "/monitor/"},
		Members:       []AboutMember{},
	}
	for _, m := range s.cfg.Members {
		a.Members = append(a.Members, AboutMember{Name: m.Name, Discovery: m.Discovery, Logs: m.Logs,
			Custody: s.custodyURL(m.Name), Pseudonyms: s.cfg.URL + "/members/" + m.Name + "/pseudonyms", Contact: m.Contact})
	}
	return a
}

// Handler serves the supervisor:
//
//	GET  /v1/supervisor                     About (public)
//	POST /witness/add-checkpoint            the witness (C2SP tlog-witness)
//	     /members/{name}/custody/…          the member's key custody
//	POST /members/{name}/pseudonyms         its endpoints' pseudonyms
//	     /monitor/…                         the monitor (alerts, checkpoints, accesses)
//
// A member's routes take its own token (its hash is in the members file);
// custody's counts also take the supervisor's, for the monitor.
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/supervisor", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		httpapi.JSON(w, s.About())
	})
	mux.Handle("/witness/", s.inner)
	mux.Handle("/monitor/", http.StripPrefix("/monitor", s.monitor.Handler()))
	for name, m := range s.members {
		prefix := "/members/" + name
		mux.Handle(prefix+"/custody/", s.inner)
		mux.HandleFunc("POST "+prefix+"/pseudonyms", func(w http.ResponseWriter, r *http.Request) { s.servePseudonyms(w, r, m) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusNotFound, "no such route: the supervisor serves /v1/supervisor, /witness/, /members/<name>/ and /monitor/")
	})
	return mux
}

// maxPseudonymsBody bounds the body of a request for pseudonyms: 1,000
// ids of 29 characters, quoted, and some slack.
const maxPseudonymsBody = 64 << 10

func (s *Supervisor) servePseudonyms(w http.ResponseWriter, r *http.Request, m *member) {
	if !m.TokenMatches(keys.Bearer(r)) {
		httpapi.Unauthorized(w, "pseudonyms need the member's bearer token")
		return
	}
	var req pseudonyms.Request
	b, ok := httpapi.ReadLimited(w, r, maxPseudonymsBody)
	if !ok {
		return
	}
	if err := httpapi.DecodeStrict(b, &req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad request: "+err.Error())
		return
	}
	ids, err := checkIDs(req.IDs)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ans := pseudonyms.Answer{Pseudonyms: make([]string, len(ids))}
	for i, id := range ids {
		ans.Pseudonyms[i] = endpoint.Pseudonym(m.pkey, id)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, ans)
}

// checkIDs returns ids if they are 1 to pseudonyms.Max endpoint ids.
func checkIDs(ids []string) ([]string, error) {
	if len(ids) == 0 || len(ids) > pseudonyms.Max {
		return nil, fmt.Errorf("bad request: %d ids; ask for 1 to %d", len(ids), pseudonyms.Max)
	}
	for i, id := range ids {
		if !endpoint.ValidID(id) {
			return nil, fmt.Errorf("bad request: ids[%d] is not an endpoint id (ep_ and 26 base32 characters)", i)
		}
	}
	return ids, nil
}
