package center

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
)

// LogPage is a page of a log's entries, newest first, each proven in the
// log's checkpoint.
type LogPage struct {
	Platform string         `json:"platform"`
	Log      string         `json:"log"`
	Origin   string         `json:"origin"`
	Size     uint64         `json:"size"` // the verified checkpoint's
	Entries  []EntrySummary `json:"entries"`
	// Before is the index to page on from (older entries); absent on the
	// last page.
	Before *uint64 `json:"before,omitempty"`
}

// EntrySummary is one entry as a row of a log's table: what it is, and
// for an access record who did what, why and with what outcome.
type EntrySummary struct {
	Index         uint64    `json:"index"`
	Kind          string    `json:"kind"`
	Time          time.Time `json:"time,omitzero"`
	Principal     string    `json:"principal,omitempty"`
	Action        string    `json:"action,omitempty"`
	Justification string    `json:"justification,omitempty"`
	Count         int64     `json:"count,omitempty"`
	Outcome       string    `json:"outcome,omitempty"`
	Summary       string    `json:"summary,omitempty"` // for other entries
	Verified      bool      `json:"verified"`
}

// EntryPage is one entry, decoded, with its proof.
type EntryPage struct {
	Platform string         `json:"platform"`
	Log      string         `json:"log"`
	Origin   string         `json:"origin"`
	Entry    EntrySummary   `json:"summary"`
	Record   *access.Record `json:"record,omitempty"`
	// Raw is the entry as logged; Proof its c2sp.org/tlog-proof in the
	// checkpoint the Center verified, which anyone can check offline
	// (vitrine log verify-proof).
	Raw   string `json:"raw"`
	Proof string `json:"proof"`
	// Verify is what the reader's browser checks the proof with: the
	// entry, the proof, and the log's key and witness policy as this
	// Center pinned them.
	Verify VerifyInput `json:"-"`
}

// VerifyInput is what the page hands the verifier in the browser.
type VerifyInput struct {
	Entry  string `json:"entry"`
	Proof  string `json:"proof"`
	VKey   string `json:"vkey"`
	Policy string `json:"policy"`
	// Index and Origin are the entry the page is about: the browser
	// checks that the proof is of it.
	Index  uint64 `json:"index"`
	Origin string `json:"origin"`
	// On a release's page: the provenance envelope as the platform served
	// it, and the release key as this Center pinned it (PEM). The browser
	// checks that the envelope is the one the entry binds, that it
	// verifies under the key, and that its subjects are the entry's
	// artifacts.
	Envelope   string `json:"envelope,omitempty"`
	ReleaseKey string `json:"release_key,omitempty"`
}

// PageSize is how many entries a log's page shows.
const PageSize = 50

// openLog returns the named log under the pins and its latest checkpoint,
// verified and consistent with what the Center saw before.
func (c *Center) openLog(ctx context.Context, name string) (*client.Log, *tlog.Checkpoint, *client.Pins, error) {
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", errPlatform, err)
	}
	if _, ok := d.Log(name); !ok {
		return nil, nil, nil, fault.New(fault.ErrNotFound, "the platform names no log "+name)
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	if err != nil {
		return nil, nil, nil, err
	}
	l, cp, err := c.checkpoint(ctx, d, pins, name)
	return l, cp, pins, err
}

func (c *Center) serveLog(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("log")
	l, cp, _, err := c.openLog(r.Context(), name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	before := cp.Size
	if s := r.URL.Query().Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > cp.Size {
			httpapi.Error(w, http.StatusBadRequest, fmt.Sprintf("before must be an entry index, at most the log's size %d", cp.Size))
			return
		}
		before = n
	}
	l = memoized(l) // the page's entries share their bundles and tiles
	page := &LogPage{Platform: c.cfg.Platform, Log: name, Origin: l.Origin(), Size: cp.Size, Entries: []EntrySummary{}}
	for i := before; i > 0 && len(page.Entries) < PageSize; i-- {
		entry, _, err := l.Entry(r.Context(), cp, i-1)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		s, _ := summarize(name, i-1, entry)
		s.Verified = true
		page.Entries = append(page.Entries, s)
	}
	if n := len(page.Entries); n > 0 && page.Entries[n-1].Index > 0 {
		next := page.Entries[n-1].Index
		page.Before = &next
	}
	c.render(w, r, "log.html", page)
}

func (c *Center) serveEntry(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("log")
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		httpapi.Error(w, http.StatusNotFound, "no such entry: an entry's index is a decimal")
		return
	}
	l, cp, pins, err := c.openLog(r.Context(), name)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if index >= cp.Size {
		httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("no entry %d: the log's verified checkpoint has %d", index, cp.Size))
		return
	}
	entry, proof, err := l.Entry(r.Context(), cp, index)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	s, rec := summarize(name, index, entry)
	s.Verified = true
	c.render(w, r, "entry.html", &EntryPage{Platform: c.cfg.Platform, Log: name, Origin: l.Origin(), Entry: s, Record: rec, Raw: string(entry), Proof: string(proof.Marshal()),
		Verify: VerifyInput{Entry: string(entry), Proof: string(proof.Marshal()), VKey: pins.LogKeys[name], Policy: pins.WitnessPolicy, Index: index, Origin: l.Origin()}})
}

// fail answers err: a log that does not verify is a 502 that names why
// (the platform, not the Center, is at fault), the rest as httpapi says.
func (c *Center) fail(w http.ResponseWriter, r *http.Request, err error) {
	if fault.Kind(err) != nil || errors.Is(err, errPlatform) {
		httpapi.Fail(w, c.cfg.Logger, err, "")
		return
	}
	httpapi.Error(w, http.StatusBadGateway, "the platform's answer did not verify: "+err.Error())
}

// summarize describes an entry of the named log.
func summarize(log string, index uint64, entry []byte) (EntrySummary, *access.Record) {
	s := EntrySummary{Index: index}
	switch {
	case log == "release":
		s.Kind = "release"
		if e, err := release.ParseEntry(entry); err == nil {
			s.Summary = fmt.Sprintf("%s %s, %d artifacts", e.Name, e.Version, len(e.Artifacts))
		}
	case log == "policy":
		s.Kind = "policy"
		s.Summary = "a residency policy version"
	default:
		s.Kind = access.EntryKind(entry)
		if s.Kind == access.KindAccess {
			if rec, err := access.Parse(entry); err == nil {
				s.Time, s.Principal, s.Action = rec.Time, rec.Principal.ID, rec.Action
				s.Justification, s.Count, s.Outcome = rec.Justification.Code, rec.Resource.Count, rec.Outcome
				return s, rec
			}
			s.Summary = "an access record that does not parse"
			return s, nil
		}
		var head struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(entry, &head) == nil {
			s.Time = head.Time
		}
		s.Summary = s.Kind
	}
	return s, nil
}

// pins returns the platform's pins: its discovery document's keys and
// witness policy as this Center pinned them on first use (a document that
// names others now is an error).
func (c *Center) pins(ctx context.Context) (*client.Pins, error) {
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPlatform, err)
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	return pins, err
}
