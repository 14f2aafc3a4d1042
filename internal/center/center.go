// Package center is the Transparency Center: a web portal over a
// platform, in which anyone reviews its logs, residency, releases and the
// supervisor's alerts (docs/design/center.md). It reads everything through
// the public client package: the discovery document pinned on first use,
// every checkpoint verified under the pinned keys and witness policy and
// proven consistent with the one it saw before, every entry proven, every
// alert's proof checked. Pages are HTML rendered on the server, readable
// without JavaScript, and the same data as JSON with Accept:
// application/json.
package center

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// Config configures a Center.
type Config struct {
	// Platform is the base URL of the platform the Center shows.
	Platform string
	// Dir holds what the Center trusts and has seen: the platform's pins
	// and the last checkpoint of each log. Created (0700) if missing.
	Dir string
	// HTTPClient reads the platform and its monitors (default: a client
	// with a 30-second timeout that, for a platform on a public address,
	// connects to public addresses only: see NewHTTPClient).
	HTTPClient *http.Client
	// CacheFor is how long an overview is served before it is read again
	// (default 5 s): a page load is not a round of the platform's logs.
	CacheFor time.Duration
	// IndexEvery is how often the Center follows the access logs into its
	// index (default 5 s); a negative value leaves the index to
	// UpdateIndex.
	IndexEvery time.Duration
	// Rebuilders are the independent rebuilders whose verdicts release
	// pages show, each with the key the Center pins for it (see
	// Rebuilder).
	Rebuilders []Rebuilder
	Logger     *slog.Logger
	Now        func() time.Time
}

// Center serves the Transparency Center of one platform.
type Center struct {
	cfg  Config
	tmpl *template.Template

	// mu guards the cached overview, and makes concurrent page loads
	// wait for one read of the platform.
	mu     sync.Mutex
	cached *Overview
	at     time.Time
	// reportMu keeps one report counting at a time: they share the
	// counts kept in Dir.
	reportMu sync.Mutex
	// follows are the small logs kept whole (see entries).
	followMu sync.Mutex
	follows  map[string]*followed

	// index is the access logs' index (index.go), kept up to date by a
	// goroutine that Close stops.
	index *Index
	stop  context.CancelFunc
	done  chan struct{}
	// relocMu keeps one reading of the access logs for relocations at
	// a time: they share the entries kept in Dir.
	relocMu sync.Mutex
	// cache keeps releases' sources and rule databases, by digest.
	cache digestCache
	// tufMu guards the update repository's metadata, verified by go-tuf
	// in Dir/tuf/, and tuf, the targets read last.
	tufMu sync.Mutex
	tuf   *tufSnapshot
	// formKey and csrf guard the review form (reviews.go).
	formKey []byte
	csrf    *http.CrossOriginProtection
	seen    seenTimes // feeds.go
}

//go:generate env GOOS=js GOARCH=wasm go build -trimpath "-ldflags=-s -w -buildid=" -o static/verify.wasm ./wasm

//go:embed templates/*.html static/*
var files embed.FS

// New returns a Center of cfg.Platform, keeping its state in cfg.Dir.
func New(cfg Config) (*Center, error) {
	cfg.Platform = strings.TrimRight(cfg.Platform, "/")
	if cfg.Platform == "" || cfg.Dir == "" {
		return nil, errors.New("center: a platform and a directory are needed")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = NewHTTPClient(cfg.Platform, false)
	}
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 5 * time.Second
	}
	if cfg.IndexEvery == 0 {
		cfg.IndexEvery = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "pins"), filepath.Join(cfg.Dir, "seen")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("center: %w", err)
		}
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("center: templates: %w", err)
	}
	index, err := OpenIndex(filepath.Join(cfg.Dir, "index.db"))
	if err != nil {
		return nil, fmt.Errorf("center: %w", err)
	}
	formKey, err := loadFormKey(cfg.Dir)
	if err != nil {
		index.Close()
		return nil, fmt.Errorf("center: %w", err)
	}
	c := &Center{cfg: cfg, tmpl: tmpl, follows: map[string]*followed{}, index: index, done: make(chan struct{}), formKey: formKey, csrf: http.NewCrossOriginProtection()}
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	go func() {
		defer close(c.done)
		if cfg.IndexEvery > 0 {
			c.followIndex(ctx)
		}
	}()
	return c, nil
}

// Close stops following the logs and closes the index.
func (c *Center) Close() error {
	c.stop()
	<-c.done
	return c.index.Close()
}

// Ready returns nil when the Center's index database answers: it can
// serve its pages (those that read the platform say so when it does not
// answer). Its error names no file.
func (c *Center) Ready(ctx context.Context) error {
	if err := c.index.db.PingContext(ctx); err != nil {
		return errors.New("the index database does not answer")
	}
	return nil
}

// Handler serves the Center:
//
//	GET /                           the overview (HTML, or JSON with Accept: application/json)
//	GET /center/logs/{log}/         a log's entries, newest first (?before=N pages on)
//	GET /center/logs/{log}/{index}  one entry, decoded, with its proof
//	GET /center/releases/{n}/{v}    a release: artifacts, provenance, its entry's proof, its reviews
//	POST /center/releases/{n}/{v}/reviews  an auditor's review, forwarded to the platform
//	GET /center/supervisor          the monitors' alerts with their proofs, the witnesses
//	GET /center/feeds/{feed}.atom   releases, policy, alerts and reviews as Atom feeds
//	GET /center/accesses            the access logs' entries from the index, filtered
//	GET /center/search?q=           an artifact's sha256, log/index, "name version", a principal or a pseudonym
//	GET /center/releases/{n}/{v}/source/{path...}  its source: a directory ("" or ending in /) or a file
//	GET /center/releases/{n}/{v}/diff?from=V        what changed from version V: files, and rule databases' signatures
//	GET /center/report              the transparency report
//	GET /center/residency           the policy in force by country and on a map (?q= filters),
//	                                every version, every relocation checked
//	GET /center/center.css          the style sheet
//
// A browser (Accept: text/html) is shown an error as a page; other
// clients get httpapi's JSON. Every page but the overview is under
// /center/, so that the Center and
// the platform share one address space in `vitrine up`.
func (c *Center) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.serveOverview)
	mux.HandleFunc("GET /center/logs/{log}/{$}", c.serveLog)
	mux.HandleFunc("GET /center/logs/{log}/{index}", c.serveEntry)
	mux.HandleFunc("GET /center/releases/{name}/{version}", c.serveRelease)
	mux.HandleFunc("GET /center/releases/{name}/{version}/source/{path...}", c.serveSource)
	mux.HandleFunc("GET /center/releases/{name}/{version}/diff", c.serveDiff)
	mux.HandleFunc("POST /center/releases/{name}/{version}/reviews", c.serveReviewPost)
	mux.HandleFunc("GET /center/supervisor", c.serveSupervisor)
	mux.HandleFunc("GET /center/feeds/{feed}", c.serveFeed)
	mux.HandleFunc("GET /center/search", c.serveSearch)
	mux.HandleFunc("GET /center/accesses", c.serveAccesses)
	mux.HandleFunc("GET /center/report", c.serveReport)
	mux.HandleFunc("GET /center/residency", c.serveResidency)
	for name, ctype := range map[string]string{"center.css": "text/css; charset=utf-8", "center.js": "text/javascript; charset=utf-8",
		"wasm_exec.js": "text/javascript; charset=utf-8", "verify.wasm": "application/wasm"} {
		b, _ := files.ReadFile("static/" + name)
		sum := sha256.Sum256(b)
		digest := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
		mux.HandleFunc("GET /center/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Digest", digest) // RFC 9530
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(b)
		})
	}
	return c.htmlErrors(mux)
}

func (c *Center) serveOverview(w http.ResponseWriter, r *http.Request) {
	o, err := c.Overview(r.Context())
	if err != nil {
		httpapi.Fail(w, c.cfg.Logger, err, "reading the platform failed")
		return
	}
	c.render(w, r, "overview.html", o)
}

// render writes v as JSON to a client that asks for it, and otherwise as
// the named page.
func (c *Center) render(w http.ResponseWriter, r *http.Request, page string, v any) {
	c.renderStatus(w, r, http.StatusOK, page, v)
}

// renderStatus is render with status.
func (c *Center) renderStatus(w http.ResponseWriter, r *http.Request, status int, page string, v any) {
	w.Header().Set("Vary", "Accept")
	w.Header().Set("Cache-Control", "no-cache")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		httpapi.JSON(w, v)
		return
	}
	var b strings.Builder
	if err := c.tmpl.ExecuteTemplate(&b, page, v); err != nil {
		httpapi.Fail(w, c.cfg.Logger, err, "rendering the page failed")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// csp is the pages' Content-Security-Policy: scripts from the Center
// only, and WebAssembly compiled from them (the verifier); nothing from
// elsewhere.
// Forms post to the Center only (the review form carries a token).
const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// wantsJSON reports whether the request's Accept prefers JSON to HTML.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "application/json":
			return true
		case "text/html":
			return false
		}
	}
	return false
}

// Overview returns the overview, read again once it is older than
// CacheFor.
func (c *Center) Overview(ctx context.Context) (*Overview, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && c.cfg.Now().Sub(c.at) < c.cfg.CacheFor {
		return c.cached, nil
	}
	o, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	c.cached, c.at = o, c.cfg.Now()
	return o, nil
}

var funcs = template.FuncMap{
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	},
	"short": func(s string, n int) string {
		if len(s) > n {
			return s[:n] + "…"
		}
		return s
	},
	"join":      strings.Join,
	"hasPrefix": strings.HasPrefix,
	"rfc3339": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"client":   func() string { return client.DiscoveryPath },
	"verifier": func() string { return VerifierSHA256 },
	"get":      func(m map[string]int64, k string) int64 { return m[k] },
	"sub":      func(a, b int) int { return a - b },
	// pageOn is a page's query with ?before= set to the next page's.
	"pageOn": func(q url.Values, before string) string {
		q = maps.Clone(q)
		q.Set("before", before)
		return q.Encode()
	},
	"escape": url.PathEscape,
	"feeds":  func() any { return Feeds },
}

//go:embed static/verify.wasm
var verifierWasm []byte

// VerifierSHA256 is the hex SHA-256 of the verifier the Center serves to
// browsers (internal/center/wasm, built by `go generate`; see
// TestVerifierReproducible). Pages name it, and the browser refuses a
// verifier with another digest.
var VerifierSHA256 = func() string {
	sum := sha256.Sum256(verifierWasm)
	return hex.EncodeToString(sum[:])
}()
