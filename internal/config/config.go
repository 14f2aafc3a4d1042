// Package config reads the platform's configuration file.
//
// The file is one JSON object. Every key is documented on [Config];
// an unknown key, a value of the wrong type, or a residency policy that
// breaks its rules is an error that names the line of the file.
//
//	{
//	  "name": "vitrine.example.com",
//	  "data": "/var/lib/vitrine",
//	  "listen": "0.0.0.0:8080",
//	  "public_url": "https://vitrine.example.com",
//	  "tls_cert": "/etc/vitrine/tls/cert.pem", "tls_key": "/etc/vitrine/tls/key.pem",
//	  "metrics_listen": "127.0.0.1:9100",
//	  "residency": {"version": 2, "default": "moscow", "regions": [
//	    {"name": "zurich", "countries": ["CH", "DE", "…"]},
//	    {"name": "moscow"}]},
//	  "stores": {"zurich": "postgres://vitrine@db.zurich/vitrine", "moscow": "sqlite:/var/lib/vitrine/moscow.db"},
//	  "log_stores": {"default": "journal", "access-zurich": "mysql://vitrine@db.zurich:3306/logs?password_file=/etc/vitrine/mysql.pass"},
//	  "build_source_roots": ["/srv/vitrine/src"],
//	  "checkpoint_interval": "200ms", "commitment_interval": "1h",
//	  "custody_url": "https://custody.example.org", "custody_token": "/etc/vitrine/custody.token",
//	  "tuf_root": "/etc/vitrine/root.json", "debug_listen": "127.0.0.1:6060"
//	}
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/residency"
)

// MaxSize is the largest configuration file read.
const MaxSize = 4 << 20

// Config is the platform's configuration. Zero values mean the defaults of
// `vitrine up`.
type Config struct {
	// Name prefixes every log origin and names the witness (default
	// "vitrine.local"). It is part of each log's identity.
	Name string `json:"name"`
	// Data is the data directory (default ./vitrine-data).
	Data string `json:"data"`
	// Listen is the address to listen on (default 127.0.0.1:8080).
	Listen string `json:"listen"`
	// PublicURL is the base URL clients use (default http://<listen>, or
	// https://<listen> with TLS).
	PublicURL string `json:"public_url"`
	// TLSCert and TLSKey are PEM files of the server's certificate chain
	// and private key: with both, the platform serves HTTPS (TLS 1.2 at
	// least) and reads the files again when they change and on SIGHUP;
	// without them, plain HTTP (default).
	TLSCert string `json:"tls_cert"`
	TLSKey  string `json:"tls_key"`
	// MetricsListen is the address of the Prometheus metrics listener
	// (GET /metrics; default: not served): open on a loopback address,
	// with the bearer token in <data>/metrics.token on any other.
	MetricsListen string `json:"metrics_listen"`
	// Residency is the residency policy (default: residency.Default()).
	// A changed policy needs a higher version; it takes effect once it is
	// in the policy log.
	Residency *residency.Policy `json:"-"`
	// Stores chooses each region's store: "sqlite:PATH" or a postgres://
	// URL (default: SQLite under the data directory).
	Stores map[string]string `json:"stores"`
	// LogStores chooses where each log's tiles are kept, by log name
	// ("release", "policy", "access-<region>") or "default" for every log
	// not named: "journal" (the embedded journaled tiles under the data
	// directory, the default) or mysql://USER@HOST:PORT/DB for Tessera's
	// MySQL driver (see package logstore; the password comes from the
	// location's password_file or $VITRINE_MYSQL_PASSWORD, never from
	// the configuration).
	LogStores map[string]string `json:"log_stores"`
	// BuildSourceRoots are the absolute directories from which recipes
	// posted to /v1/builds may take local sources (a git repository or a
	// directory; symlinks are followed before the check). Absent means the
	// working directory `vitrine up` was started in; [] allows only
	// https:// and ssh:// git sources.
	BuildSourceRoots []string `json:"build_source_roots"`
	// CheckpointInterval is how often each log publishes a witnessed
	// checkpoint while it grows, as a Go duration ("200ms", the default).
	CheckpointInterval Duration `json:"checkpoint_interval"`
	// CommitmentInterval is how often each region commits to its dataset
	// in its access log (default "1h").
	CommitmentInterval Duration `json:"commitment_interval"`
	// CustodyURL is the base URL of the supervisor's key custody run in
	// its own process (`vitrine custody`); empty runs custody in the
	// platform's process.
	CustodyURL string `json:"custody_url"`
	// CustodyToken is the file holding custody's token (its
	// <data>/custody.token); needed with CustodyURL. With SupervisorURL,
	// a region's processes need it instead: the file holding the
	// platform's member token (its <data>/member.token), with which they
	// reach the member's custody at the supervisor. The token itself
	// never goes in the configuration.
	CustodyToken string `json:"custody_token"`
	// SupervisorURL is the base URL of the supervisor in its own process
	// (`vitrine supervisor`) that the platform is a member of: its witness,
	// custody, pseudonyms and monitor serve the platform, which then runs
	// none of its own. Excludes CustodyURL.
	SupervisorURL string `json:"supervisor_url"`
	// PlatformURL is the base URL of the platform's process, for the
	// processes of a region's service (`vitrine serve --role
	// region:<name>`).
	PlatformURL string `json:"platform_url"`
	// PeerToken is the file holding the deployment's peer token (the
	// platform's <data>/peer.token), for the processes of a region's
	// service. The token itself never goes in the configuration.
	PeerToken string `json:"peer_token"`
	// InternalTokens name, by region, the file holding the region's
	// internal token (the platform's <data>/internal/<region>.token),
	// for the processes of that region's service; each region's hosts
	// get their own region's file only.
	InternalTokens map[string]string `json:"internal_tokens"`
	// LogsURL is the base URL of the logs' own process (`vitrine serve
	// --role logs`), and LogsToken the file holding its append token
	// (that process's <data>/logs.token): the platform's process then
	// opens no log and appends through it. Empty keeps the logs in the
	// platform's process.
	LogsURL   string `json:"logs_url"`
	LogsToken string `json:"logs_token"`
	// FrontToken is the file holding the front door's token (the
	// platform's <data>/front.token), for the front door's processes
	// (`vitrine serve --role front`), with which they read the policy
	// and the revocations at PlatformURL.
	FrontToken string `json:"front_token"`
	// ReleasesURL is the base URL of the releases process (`vitrine
	// serve --role releases`: the conveyer, the release key, the
	// published releases and the update repository), which then builds
	// and publishes instead of the platform's process; it needs LogsURL.
	ReleasesURL string `json:"releases_url"`
	// WitnessPolicy is, for the logs' own process, the file holding the
	// C2SP tlog-policy of the witnesses that cosign the logs (with their
	// URLs); without it that process runs a witness of its own.
	WitnessPolicy string `json:"witness_policy"`
	// ExternalRegions are the regions whose service runs in processes of
	// its own (`vitrine serve --role region:<name>`) on a PostgreSQL store
	// (stores) they share with the platform's process: the platform's
	// process then does none of their background work.
	ExternalRegions []string `json:"external_regions"`
	// TUFRoot is the file holding the update repository's initial
	// root.json (made by `vitrine tuf init`); without it the first start
	// makes one.
	TUFRoot string `json:"tuf_root"`
	// TUFOffline is where the first start writes the TUF root keys when it
	// makes the root (default: a new directory under
	// ~/.config/vitrine/tuf-offline/); move them offline.
	TUFOffline string `json:"tuf_offline"`
	// DebugListen serves Go's profiling endpoints on this loopback
	// address (default: not served).
	DebugListen string `json:"debug_listen"`
	// Monitor configures the supervisor's monitor that `vitrine up` runs
	// over its own platform.
	Monitor MonitorConfig `json:"monitor"`
}

// MonitorConfig configures the monitor inside `vitrine up` (see
// docs/design/monitor.md).
type MonitorConfig struct {
	// Off leaves the monitor out.
	Off bool `json:"off"`
	// Webhooks receive every alert, signed (Standard Webhooks) with the
	// secret in <data>/monitor/webhook.secret.
	Webhooks []string `json:"webhooks"`
	// HookCommand is an absolute path of a program run for every alert.
	HookCommand string `json:"hook_command"`
	// Rules is a rules file; empty means the rules that ship.
	Rules string `json:"rules"`
	// Interval is the time between the monitor's passes (default 1s).
	Interval Duration `json:"interval"`
}

// UnmarshalJSON reads the monitor's object, refusing keys it does not
// know.
func (m *MonitorConfig) UnmarshalJSON(b []byte) error {
	type plain MonitorConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*m = MonitorConfig(p)
	return nil
}

// Duration is a time.Duration written as a Go duration string ("1h30m").
type Duration time.Duration

// UnmarshalJSON reads a duration string; a negative one is refused.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a duration such as \"200ms\" or \"1h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"200ms\" or \"1h\": %v", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %s is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// keys are the configuration's keys, each with where its value goes;
// "residency" is read apart, with the file's line numbers.
func (c *Config) keys() []struct {
	name   string
	target any
} {
	return []struct {
		name   string
		target any
	}{
		{"name", &c.Name}, {"data", &c.Data}, {"listen", &c.Listen}, {"public_url", &c.PublicURL},
		{"tls_cert", &c.TLSCert}, {"tls_key", &c.TLSKey}, {"metrics_listen", &c.MetricsListen},
		{"residency", nil}, {"stores", &c.Stores}, {"log_stores", &c.LogStores}, {"build_source_roots", &c.BuildSourceRoots},
		{"checkpoint_interval", &c.CheckpointInterval}, {"commitment_interval", &c.CommitmentInterval},
		{"custody_url", &c.CustodyURL}, {"custody_token", &c.CustodyToken}, {"supervisor_url", &c.SupervisorURL},
		{"platform_url", &c.PlatformURL}, {"peer_token", &c.PeerToken}, {"internal_tokens", &c.InternalTokens}, {"external_regions", &c.ExternalRegions},
		{"logs_url", &c.LogsURL}, {"logs_token", &c.LogsToken}, {"releases_url", &c.ReleasesURL}, {"front_token", &c.FrontToken}, {"witness_policy", &c.WitnessPolicy},
		{"tuf_root", &c.TUFRoot}, {"tuf_offline", &c.TUFOffline}, {"debug_listen", &c.DebugListen},
		{"monitor", &c.Monitor},
	}
}

// Keys lists the configuration's keys, in the order the documentation gives
// them.
func Keys() []string {
	var out []string
	for _, k := range new(Config).keys() {
		out = append(out, k.name)
	}
	return out
}

// Load reads the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a configuration document.
func Parse(doc []byte) (*Config, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("configuration is larger than %d bytes", MaxSize)
	}
	lineErr := func(off int64, format string, args ...any) error {
		return fmt.Errorf("configuration line %d: %s", residency.LineOf(doc, off), fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, lineErr(dec.InputOffset(), "the configuration must be a JSON object")
	}
	var c Config
	seen := map[string]bool{}
	for dec.More() {
		keyOff := valueStart(doc, dec.InputOffset())
		t, err := dec.Token()
		if err != nil {
			return nil, lineErr(dec.InputOffset(), "%v", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return nil, lineErr(keyOff, "key %q appears twice", key)
		}
		seen[key] = true
		var target any
		known := false
		for _, k := range c.keys() {
			if k.name == key {
				target, known = k.target, true
			}
		}
		switch {
		case !known:
			return nil, lineErr(keyOff, "unknown key %q (known: %s)", key, strings.Join(Keys(), ", "))
		case key == "residency":
			// The value starts after the colon: find it, then let the
			// residency parser read it with this file's line numbers.
			off := valueStart(doc, dec.InputOffset())
			p, err := residency.ParsePolicyAt(doc, off)
			if err != nil {
				var pe *residency.ParseError
				if errors.As(err, &pe) {
					return nil, fmt.Errorf("configuration line %d column %d: residency: %s", pe.Line, pe.Column, pe.Msg)
				}
				return nil, err
			}
			c.Residency = p
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, lineErr(off, "residency: %v", err)
			}
			continue
		}
		valOff := valueStart(doc, dec.InputOffset())
		if err := dec.Decode(target); err != nil {
			return nil, lineErr(valOff, "%s: %v", key, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, lineErr(dec.InputOffset(), "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, lineErr(dec.InputOffset(), "unexpected data after the configuration object")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("configuration: tls_cert and tls_key go together: set both (HTTPS) or neither (plain HTTP)")
	}
	if seen["build_source_roots"] && c.BuildSourceRoots == nil {
		c.BuildSourceRoots = []string{} // null: no local sources, as []
	}
	for _, r := range c.BuildSourceRoots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("configuration: build_source_roots: %q is not an absolute path", r)
		}
	}
	for region, spec := range c.Stores {
		if c.Residency != nil && c.Residency.Region(region) == nil {
			return nil, fmt.Errorf("configuration: stores: the residency policy has no region %q", region)
		}
		if !strings.HasPrefix(spec, "sqlite:") && !isPostgres(spec) {
			return nil, fmt.Errorf("configuration: stores: region %q: want \"sqlite:PATH\" or a postgres:// URL, not %q", region, spec)
		}
	}
	for region := range c.InternalTokens {
		if c.Residency != nil && c.Residency.Region(region) == nil {
			return nil, fmt.Errorf("configuration: internal_tokens: the residency policy has no region %q", region)
		}
	}
	for _, region := range c.ExternalRegions {
		if !isPostgres(c.Stores[region]) {
			return nil, fmt.Errorf("configuration: external_regions: region %q needs a postgres:// store in stores, which its processes and the platform's share", region)
		}
	}
	for name, spec := range c.LogStores {
		if !c.knownLog(name) {
			return nil, fmt.Errorf("configuration: log_stores: no log is named %q (want \"default\", \"release\", \"policy\" or \"access-<region>\" for a region of the residency policy)", name)
		}
		if _, err := logstore.ParseLocation(spec); err != nil {
			return nil, fmt.Errorf("configuration: log_stores: log %q: %w", name, err)
		}
	}
	return &c, nil
}

// isPostgres reports whether a store location is a PostgreSQL URL.
func isPostgres(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// knownLog reports whether name is a key log_stores may have.
func (c *Config) knownLog(name string) bool {
	switch name {
	case "default", "release", "policy":
		return true
	}
	region, ok := strings.CutPrefix(name, "access-")
	if !ok {
		return false
	}
	p := c.Residency
	if p == nil {
		p = residency.Default()
	}
	return p.Region(region) != nil
}

// valueStart skips the separators (white space, colon, comma) before the
// next key or value.
func valueStart(doc []byte, off int64) int64 {
	for off < int64(len(doc)) {
		switch doc[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
}
