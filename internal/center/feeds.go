package center

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/feeds"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/review"
)

// Feeds are the Atom feeds the Center serves under /center/feeds/, by
// file name, with their titles.
var Feeds = []struct{ File, Title string }{
	{"releases.atom", "Releases"},
	{"policy.atom", "Residency policy versions"},
	{"alerts.atom", "Supervisor's alerts"},
	{"reviews.atom", "Auditors' reviews"},
}

// maxFeedItems bounds a feed: its newest items.
const maxFeedItems = 50

// serveFeed serves /center/feeds/{feed}: an Atom feed of what this Center
// verified, and nothing else. Releases and policy versions come from
// their logs, every entry proven (a policy only if it verifies under the
// pinned policy key); alerts only once their proof verifies; reviews only
// once proven and bound to the release-log entry they name. Releases and
// policies carry no time of their own: their entries' updated time is
// when this Center first verified them (kept in Dir/feeds).
func (c *Center) serveFeed(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	base := feedBase(r)
	f := &feeds.Feed{Author: &feeds.Author{Name: "Vitrine Transparency Center over " + c.cfg.Platform}, Updated: time.Unix(0, 0).UTC()}
	var items []*feeds.Item
	var err error
	switch name := r.PathValue("feed"); name {
	case "releases.atom":
		f.Title, f.Description = "Releases of "+c.cfg.Platform, "Every release in the platform's release log, each entry proven in a checkpoint this Center verified."
		items, err = c.releaseItems(ctx, base)
	case "policy.atom":
		f.Title, f.Description = "Residency policy versions of "+c.cfg.Platform, "Every version of the residency policy in the policy log that verifies under the pinned policy key, each entry proven."
		items, err = c.policyItems(ctx, base)
	case "alerts.atom":
		f.Title, f.Description = "Supervisor's alerts about "+c.cfg.Platform, "The monitors' alerts whose proof this Center verified under the pinned log key and witness policy; the monitors' own feeds have every alert."
		items, err = c.alertItems(ctx, base)
	case "reviews.atom":
		f.Title, f.Description = "Auditors' reviews of "+c.cfg.Platform+"'s releases", "Every review in the review log, each entry proven and bound to the release-log entry it names."
		items, err = c.reviewItems(ctx, base)
	default:
		httpapi.Error(w, http.StatusNotFound, "no such feed: the feeds are releases.atom, policy.atom, alerts.atom and reviews.atom")
		return
	}
	if err == nil {
		err = c.saveSeen()
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Link = &feeds.Link{Href: base + "/center/feeds/" + r.PathValue("feed"), Rel: "self"}
	for _, it := range items {
		if it.Updated.After(f.Updated) {
			f.Updated = it.Updated
		}
	}
	f.Items = items
	atom, err := f.ToAtom()
	if err != nil {
		httpapi.Fail(w, c.cfg.Logger, err, "writing the feed failed")
		return
	}
	w.Header().Set("Content-Type", "application/atom+xml; charset=utf-8")
	w.Header().Set("Vary", "Host") // its links are made from the Host the reader asked
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(atom))
}

// feedBase is the scheme and host the request was made to: the base of a
// feed's links.
func feedBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (c *Center) releaseItems(ctx context.Context, base string) ([]*feeds.Item, error) {
	l, _, _, err := c.openLog(ctx, "release")
	if err != nil {
		return nil, err
	}
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		return nil, err
	}
	var items []*feeds.Item
	for i := len(entries) - 1; i >= 0 && len(items) < maxFeedItems; i-- {
		e, err := release.ParseEntry(entries[i])
		if err != nil {
			continue
		}
		at, err := c.firstSeen(l.Origin(), uint64(i))
		if err != nil {
			return nil, err
		}
		link := base + "/center/releases/" + url.PathEscape(e.Name) + "/" + url.PathEscape(e.Version)
		var b strings.Builder
		fmt.Fprintf(&b, "<p>Release-log entry %d of %s, proven.</p><ul>", i, html.EscapeString(l.Origin()))
		for _, a := range e.Artifacts {
			fmt.Fprintf(&b, "<li><code>%s</code> sha256 <code>%s</code></li>", html.EscapeString(a.Name), a.SHA256)
		}
		b.WriteString("</ul>")
		items = append(items, &feeds.Item{Title: e.Name + " " + e.Version, Link: &feeds.Link{Href: link}, Id: base + fmt.Sprintf("/center/logs/release/%d", i), Updated: at, Content: b.String()})
	}
	return items, nil
}

func (c *Center) policyItems(ctx context.Context, base string) ([]*feeds.Item, error) {
	l, _, pins, err := c.openLog(ctx, "policy")
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(pins.PolicyKey)
	if err != nil {
		return nil, fmt.Errorf("the pinned policy key: %w", err)
	}
	entries, err := c.entries(ctx, "policy", l)
	if err != nil {
		return nil, err
	}
	var items []*feeds.Item
	var versions []*residency.Policy
	var at []int
	for i, e := range entries {
		if !residency.IsPolicyEntry(e) {
			continue
		}
		if p, err := residency.Open(e, v); err == nil {
			versions, at = append(versions, p), append(at, i)
		}
	}
	for k := len(versions) - 1; k >= 0 && len(items) < maxFeedItems; k-- {
		p := versions[k]
		seen, err := c.firstSeen(l.Origin(), uint64(at[k]))
		if err != nil {
			return nil, err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "<p>Policy-log entry %d, proven, signed with the pinned policy key.</p><ul>", at[k])
		if k == 0 {
			b.WriteString("<li>the first policy</li>")
		} else {
			for _, ch := range residency.Diff(versions[k-1], p) {
				fmt.Fprintf(&b, "<li>%s</li>", html.EscapeString(ch.String()))
			}
		}
		b.WriteString("</ul>")
		items = append(items, &feeds.Item{Title: fmt.Sprintf("Residency policy version %d", p.Version), Link: &feeds.Link{Href: base + "/center/residency"},
			Id: base + fmt.Sprintf("/center/logs/policy/%d", at[k]), Updated: seen, Content: b.String()})
	}
	return items, nil
}

func (c *Center) alertItems(ctx context.Context, base string) ([]*feeds.Item, error) {
	o, err := c.Overview(ctx)
	if err != nil {
		return nil, err
	}
	var items []*feeds.Item
	for _, m := range o.Monitors {
		for _, a := range m.Alerts {
			if !a.ProofVerified {
				continue
			}
			title := fmt.Sprintf("[%s] %s in %s entry %d", a.Severity, a.Rule, a.Log, *a.Index)
			content := "<p>" + html.EscapeString(a.Detail) + "</p><p>Raised by " + html.EscapeString(m.Name) + "; its proof verified under the pinned key of " + html.EscapeString(a.Log) + ".</p>"
			items = append(items, &feeds.Item{Title: title, Link: &feeds.Link{Href: base + "/center/supervisor#" + a.Anchor},
				Id: fmt.Sprintf("%s/center/supervisor#%s", base, a.Anchor), Updated: a.Time, Content: content})
		}
	}
	return items[:min(len(items), maxFeedItems)], nil
}

func (c *Center) reviewItems(ctx context.Context, base string) ([]*feeds.Item, error) {
	rl, _, _, err := c.openLog(ctx, "release")
	if err != nil {
		return nil, err
	}
	releases, err := c.entries(ctx, "release", rl)
	if err != nil {
		return nil, err
	}
	l, _, _, err := c.openLog(ctx, "review")
	if err != nil {
		return nil, err
	}
	entries, err := c.entries(ctx, "review", l)
	if err != nil {
		return nil, err
	}
	var items []*feeds.Item
	for i := len(entries) - 1; i >= 0 && len(items) < maxFeedItems; i-- {
		r, err := review.Parse(entries[i])
		if err != nil || r.Release.Index >= uint64(len(releases)) || release.Digest(releases[r.Release.Index]) != r.Release.Entry {
			continue // not a review, or not bound to the release-log entry it names
		}
		link := fmt.Sprintf("%s/center/releases/%s/%s#review-%d", base, url.PathEscape(r.Release.Name), url.PathEscape(r.Release.Version), i)
		var b strings.Builder
		fmt.Fprintf(&b, "<p>%s by %s, review-log entry %d, proven.</p>", r.Verdict, html.EscapeString(r.Auditor), i)
		if len(r.Files) > 0 {
			b.WriteString("<p>Files:</p><ul>")
			for _, f := range r.Files {
				fmt.Fprintf(&b, "<li><code>%s</code></li>", html.EscapeString(f))
			}
			b.WriteString("</ul>")
		}
		if r.Notes != "" {
			fmt.Fprintf(&b, "<pre>%s</pre>", html.EscapeString(r.Notes))
		}
		items = append(items, &feeds.Item{Title: fmt.Sprintf("%s %s: %s (%s)", r.Release.Name, r.Release.Version, r.Verdict, r.Auditor),
			Link: &feeds.Link{Href: link}, Id: base + fmt.Sprintf("/center/logs/review/%d", i), Updated: r.Time, Content: b.String(), Author: &feeds.Author{Name: r.Auditor}})
	}
	return items, nil
}

// seenTimes are when this Center first verified each entry a feed lists
// without a time of its own, kept in Dir/feeds/first-seen.json.
type seenTimes struct {
	mu    sync.Mutex
	m     map[string]time.Time
	dirty bool
}

// firstSeen returns when this Center first verified the entry at index
// of the log of origin: now, the first time.
func (c *Center) firstSeen(origin string, index uint64) (time.Time, error) {
	s := &c.seen
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]time.Time{}
		b, err := os.ReadFile(filepath.Join(c.cfg.Dir, "feeds", "first-seen.json"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			s.m = nil
			return time.Time{}, err
		default:
			if err := json.Unmarshal(b, &s.m); err != nil {
				s.m = nil
				return time.Time{}, fmt.Errorf("the feeds' first-seen times: %w", err)
			}
		}
	}
	key := fmt.Sprintf("%s %d", origin, index)
	if t, ok := s.m[key]; ok {
		return t, nil
	}
	t := c.cfg.Now().UTC().Truncate(time.Second)
	s.m[key], s.dirty = t, true
	return t, nil
}

// saveSeen keeps the first-seen times, if any is new.
func (c *Center) saveSeen() error {
	s := &c.seen
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(c.cfg.Dir, "feeds"), 0o700); err != nil {
		return err
	}
	out, err := json.Marshal(s.m)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(c.cfg.Dir, "feeds", "first-seen.json"), out, 0o600); err != nil {
		return err
	}
	s.dirty = false
	return nil
}
