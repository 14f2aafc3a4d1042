package center

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
	"golang.org/x/mod/sumdb/note"
)

// ReleasePage is a release as its release-log entry and its provenance
// record it, what the known rebuilders say of it, and whether the update
// repository offers it.
type ReleasePage struct {
	Platform  string          `json:"platform"`
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Index     uint64          `json:"index"` // in the release log
	Artifacts []ArtifactState `json:"artifacts"`
	// Provenance is the SLSA provenance the envelope signs, decoded, once
	// the envelope's digest is the entry's, its signature verifies under
	// the pinned release key and its subjects are the entry's artifacts
	// (release.VerifyProvenance); ProvenanceProblem says otherwise.
	// Envelope is the envelope as the platform served it, which the
	// reader's browser checks again.
	Provenance        *Provenance `json:"provenance,omitempty"`
	ProvenanceProblem string      `json:"provenance_problem,omitempty"`
	Envelope          string      `json:"envelope,omitempty"`
	// Rebuilds are the known rebuilders' verdicts, in the order the
	// Center was given the rebuilders.
	Rebuilds []RebuildState `json:"rebuilds"`
	// Updates is whether the update repository offers each artifact.
	Updates *UpdateState `json:"updates"`
	// Raw and Proof are the release-log entry and its tlog-proof, which
	// the reader's browser checks (Verify).
	Raw    string      `json:"raw"`
	Proof  string      `json:"proof"`
	Verify VerifyInput `json:"-"`
	// Others are the release's other versions in the release log, newest
	// first, and Previous the newest one logged before this one: the
	// source diff's (source.go).
	Others   []string `json:"other_versions"`
	Previous string   `json:"previous_version,omitempty"`
	// Reviews are the auditors' reviews of the release in the review
	// log, newest first, each proven (reviews.go); ReviewsProblem says
	// why they could not be read.
	Reviews        []ReviewState `json:"reviews"`
	ReviewsProblem string        `json:"reviews_problem,omitempty"`
	Form           *ReviewForm   `json:"-"`
}

// Provenance is what a release's provenance says of its build.
type Provenance struct {
	Builder      string `json:"builder"`
	Invocation   string `json:"invocation"`
	Source       string `json:"source"`
	SourceSHA256 string `json:"source_sha256"`
	Toolchain    string `json:"toolchain"`
	Recipe       string `json:"recipe"` // JSON
	Started      string `json:"started"`
	Finished     string `json:"finished"`
}

// findRelease reads the release log, every entry proven, and returns the
// index and entry of the release that matches: by name and version (the
// newest of the name when version is ""), or
// (name "") the one with an artifact of that sha256, newest first.
func (c *Center) findRelease(ctx context.Context, l *client.Log, name, version, sha string) (uint64, *release.Entry, bool, error) {
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		return 0, nil, false, err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e, err := release.ParseEntry(entries[i])
		if err != nil {
			continue
		}
		if name != "" && e.Name == name && (e.Version == version || version == "") {
			return uint64(i), e, true, nil
		}
		for _, a := range e.Artifacts {
			if sha != "" && a.SHA256 == sha {
				return uint64(i), e, true, nil
			}
		}
	}
	return 0, nil, false, nil
}

func (c *Center) serveRelease(w http.ResponseWriter, r *http.Request) {
	page, err := c.releasePage(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !wantsJSON(r) {
		page.Form = c.reviewForm(w, r) // sets the form's cookie
		// "Recorded" is said only of a review the page shows.
		if f := page.Form; f.Recorded != nil && !slices.ContainsFunc(page.Reviews, func(rs ReviewState) bool { return rs.Index == *f.Recorded }) {
			f.Recorded = nil
		}
	}
	c.render(w, r, "release.html", page)
}

// releasePage reads the release name version from the release log, its
// provenance, and its reviews from the review log.
func (c *Center) releasePage(ctx context.Context, name, version string) (*ReleasePage, error) {
	l, cp, pins, err := c.openLog(ctx, "release")
	if err != nil {
		return nil, err
	}
	index, e, ok, err := c.findRelease(ctx, l, name, version, "")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no release %s %s in the release log", name, version))
	}
	entry, proof, err := l.Entry(ctx, cp, index)
	if err != nil {
		return nil, err
	}
	page := &ReleasePage{Platform: c.cfg.Platform, Name: e.Name, Version: e.Version, Index: index, Artifacts: []ArtifactState{},
		Raw: string(entry), Proof: string(proof.Marshal()),
		Verify: VerifyInput{Entry: string(entry), Proof: string(proof.Marshal()), VKey: pins.LogKeys["release"], Policy: pins.WitnessPolicy, Index: index, Origin: l.Origin(),
			ReleaseKey: pins.ReleaseKey}}
	for _, a := range e.Artifacts {
		page.Artifacts = append(page.Artifacts, ArtifactState{Name: a.Name, SHA256: a.SHA256})
	}
	page.Others, page.Previous = c.otherVersions(ctx, l, index, e)
	// The provenance, the rebuilders' verdicts and the update repository
	// are read at once: each waits on another server.
	var wg sync.WaitGroup
	wg.Go(func() {
		p, env, err := c.provenance(ctx, pins, e)
		if err != nil {
			page.ProvenanceProblem = err.Error()
		}
		page.Provenance = p
		// The browser checks the envelope whatever the Center found.
		page.Envelope, page.Verify.Envelope = string(env), string(env)
	})
	wg.Go(func() {
		idx, errs := c.rebuildIndexes(ctx)
		page.Rebuilds = c.verdicts(ctx, idx, errs, index, entry, e)
	})
	wg.Go(func() { page.Updates = c.offered(ctx, pins, index, e) })
	wg.Go(func() {
		var err error
		if page.Reviews, err = c.reviews(ctx, e.Name, e.Version, index, entry); err != nil {
			page.ReviewsProblem = err.Error()
		}
	})
	wg.Wait()
	return page, nil
}

// provenance reads the release's provenance envelope from the platform
// and decodes it once release.VerifyProvenance accepts it: its digest is
// the release-log entry's, its signature verifies under the pinned
// release key, its subjects are the entry's artifacts. The envelope is
// returned whenever one was read, for the reader's browser to check.
func (c *Center) provenance(ctx context.Context, pins *client.Pins, e *release.Entry) (*Provenance, []byte, error) {
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, nil, err
	}
	u := strings.TrimSuffix(d.Releases.URL, "/") + "/" + url.PathEscape(e.Name) + "/" + url.PathEscape(e.Version) + "/provenance.json"
	env, err := client.Get(ctx, c.cfg.HTTPClient, u, 1<<20)
	if err != nil {
		return nil, nil, err
	}
	key, err := release.ParsePublicKey([]byte(pins.ReleaseKey))
	if err != nil {
		return nil, env, fmt.Errorf("the pinned release key: %w", err)
	}
	v, err := release.VerifyProvenance(ctx, env, e, key)
	if err != nil {
		return nil, env, err
	}
	b, err := v.Build()
	if err != nil {
		return nil, env, err
	}
	return &Provenance{Builder: b.Builder, Invocation: b.Invocation, Source: b.Source, SourceSHA256: b.SourceSHA256,
		Toolchain: b.Toolchain, Recipe: string(b.Recipe), Started: b.Started, Finished: b.Finished}, env, nil
}

var (
	sha256Query = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)
	entryQuery  = regexp.MustCompile(`^([a-z0-9-]{1,40})[/#]([0-9]{1,19})$`)
	logName     = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
	// receiptQuery is an access receipt, as the gateway's
	// Vitrine-Access-Receipt header gives it: "<log origin> <index>".
	receiptQuery = regexp.MustCompile(`^([^\s/]+/[^\s]+) ([0-9]{1,19})$`)
)

// serveSearch is /center/search?q=: a principal's id or a pseudonym goes
// to the index's entries that name it; an artifact's sha256 goes to its
// release, "log/index" (access-zurich/17) or an access receipt
// ("<origin> <index>") to that entry, "name version"
// or "name@version" to that release.
func (c *Center) serveSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" || len(q) > 256 {
		httpapi.Error(w, http.StatusBadRequest, "search for an artifact's sha256, a log entry (access-zurich/17) or an access receipt, a release (name, or name version), a principal (analyst:alice) or a pseudonym (hmac-sha256:…)")
		return
	}
	ctx := r.Context()
	switch {
	case sha256Query.MatchString(strings.ToLower(q)):
		l, _, _, err := c.openLog(ctx, "release")
		if err != nil {
			c.fail(w, r, err)
			return
		}
		_, e, ok, err := c.findRelease(ctx, l, "", "", strings.TrimPrefix(strings.ToLower(q), "sha256:"))
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if !ok {
			httpapi.Error(w, http.StatusNotFound, "no release in the release log has an artifact of that sha256")
			return
		}
		http.Redirect(w, r, "/center/releases/"+url.PathEscape(e.Name)+"/"+url.PathEscape(e.Version), http.StatusSeeOther)
	case principalQuery.MatchString(q):
		http.Redirect(w, r, "/center/accesses?"+url.Values{"principal": {q}}.Encode(), http.StatusSeeOther)
	case strings.HasPrefix(q, "hmac-sha256:"):
		if _, ok := pseudonymBytes(q); !ok {
			httpapi.Error(w, http.StatusBadRequest, "a pseudonym is hmac-sha256: and 64 lowercase hex digits")
			return
		}
		http.Redirect(w, r, "/center/accesses?"+url.Values{"subject": {q}}.Encode(), http.StatusSeeOther)
	case receiptQuery.MatchString(q):
		m := receiptQuery.FindStringSubmatch(q)
		if _, err := strconv.ParseUint(m[2], 10, 64); err != nil {
			httpapi.Error(w, http.StatusBadRequest, "the receipt's index is too large")
			return
		}
		// The origin is the name of the log's key, as pinned: not the
		// discovery document's word for it, which nothing signs.
		pins, err := c.pins(ctx)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, name := range slices.Sorted(maps.Keys(pins.LogKeys)) {
			v, err := note.NewVerifier(pins.LogKeys[name])
			if err == nil && v.Name() == m[1] && logName.MatchString(name) {
				http.Redirect(w, r, "/center/logs/"+url.PathEscape(name)+"/"+m[2], http.StatusSeeOther)
				return
			}
		}
		httpapi.Error(w, http.StatusNotFound, "no log of the platform has the origin "+m[1])
	case entryQuery.MatchString(q):
		m := entryQuery.FindStringSubmatch(q)
		if _, err := strconv.ParseUint(m[2], 10, 64); err != nil {
			httpapi.Error(w, http.StatusBadRequest, "the entry's index is too large")
			return
		}
		http.Redirect(w, r, "/center/logs/"+m[1]+"/"+m[2], http.StatusSeeOther)
	default:
		name, version, ok := strings.Cut(strings.Replace(q, "@", " ", 1), " ")
		version = strings.TrimSpace(version)
		if !ok && releaseName.MatchString(name) {
			// A release's name alone: its newest version.
			l, _, _, err := c.openLog(ctx, "release")
			if err != nil {
				c.fail(w, r, err)
				return
			}
			_, e, found, err := c.findRelease(ctx, l, name, "", "")
			if err != nil {
				c.fail(w, r, err)
				return
			}
			if found {
				http.Redirect(w, r, "/center/releases/"+url.PathEscape(e.Name)+"/"+url.PathEscape(e.Version), http.StatusSeeOther)
				return
			}
		}
		if !ok || name == "" || version == "" || name == "." || name == ".." || version == "." || version == ".." {
			httpapi.Error(w, http.StatusNotFound, "nothing found: search for an artifact's sha256, a log entry (access-zurich/17) or an access receipt, a release (name, or name version), a principal (analyst:alice) or a pseudonym (hmac-sha256:…)")
			return
		}
		http.Redirect(w, r, "/center/releases/"+url.PathEscape(name)+"/"+url.PathEscape(version), http.StatusSeeOther)
	}
}
