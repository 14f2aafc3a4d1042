package center

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// AccessesPage is a page of the index: the access-log entries a filter
// selects, newest first.
type AccessesPage struct {
	Platform string    `json:"platform"`
	Filter   Filter    `json:"filter"`
	Entries  []Indexed `json:"entries"`
	// Before is the ?before= of the next page (older entries); absent on
	// the last.
	Before string `json:"before,omitempty"`
	// Indexed is how far each access log is indexed.
	Indexed []IndexStatus `json:"indexed"`
	// The choices the filter form offers.
	Logs, Actions, Codes []string   `json:"-"`
	Query                url.Values `json:"-"`
}

// maxFilterValue bounds each filter's value.
const maxFilterValue = 256

var principalQuery = regexp.MustCompile(`^(operator|analyst|processor|supervisor|auditor|endpoint):[a-z0-9][a-z0-9._-]{0,127}$`)

// parseFilter reads a filter from a page's query: every field checked,
// so that a bad one is a clear 400 rather than a page of nothing.
func parseFilter(q url.Values) (Filter, error) {
	var f Filter
	for k, vs := range q {
		if len(vs) > 1 {
			return f, fmt.Errorf("%s is given more than once", k)
		}
		if len(vs[0]) > maxFilterValue {
			return f, fmt.Errorf("%s is longer than %d bytes", k, maxFilterValue)
		}
	}
	f.Log = q.Get("log")
	if f.Log != "" && !strings.HasPrefix(f.Log, "access-") {
		return f, errors.New("log must be an access log, access-<region>")
	}
	f.Principal = q.Get("principal")
	if f.Principal != "" && !principalQuery.MatchString(f.Principal) {
		return f, errors.New("principal must be a principal's id, role:name (analyst:alice)")
	}
	f.Subject = q.Get("subject")
	if _, ok := pseudonymBytes(f.Subject); f.Subject != "" && !ok {
		return f, errors.New("subject must be a pseudonym, hmac-sha256:<64 lowercase hex>")
	}
	f.Action = q.Get("action")
	if f.Action != "" && !slices.Contains(access.Actions, f.Action) {
		return f, fmt.Errorf("action must be one of %s", strings.Join(access.Actions, ", "))
	}
	f.Justification = q.Get("justification")
	if f.Justification != "" && f.Justification != "(none)" && !slices.Contains(access.Codes, f.Justification) {
		return f, errors.New("justification must be one of the justification codes, or (none)")
	}
	f.Outcome = q.Get("outcome")
	if f.Outcome != "" && f.Outcome != "granted" && f.Outcome != "denied" {
		return f, errors.New("outcome must be granted or denied")
	}
	var err error
	if f.From, err = parseWhen(q.Get("from"), false); err != nil {
		return f, fmt.Errorf("from: %w", err)
	}
	if f.To, err = parseWhen(q.Get("to"), true); err != nil {
		return f, fmt.Errorf("to: %w", err)
	}
	if s := q.Get("before"); s != "" {
		if f.Before, err = ParseCursor(s); err != nil {
			return f, fmt.Errorf("before: %w", err)
		}
	}
	return f, nil
}

// parseWhen reads a date (2026-12-07, the whole day: "to" is the day
// after) or an RFC 3339 time.
func parseWhen(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Year() < 1970 || t.Year() > 9999 {
		return time.Time{}, errors.New("a date (2026-12-07) or a time (2026-12-07T10:00:00Z)")
	}
	return t, nil
}

func (c *Center) serveAccesses(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	// A page's query is bounded in time: a filter the indexes do not
	// serve well (while they are made after a first catch-up) walks the
	// table, and a reader who asks for one does not hold the index.
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	entries, next, err := c.index.Query(ctx, f, PageSize)
	if errors.Is(err, context.DeadlineExceeded) {
		httpapi.Unavailable(w, 10*time.Second, "the index took too long to answer that filter: the Center may still be making its indexes")
		return
	}
	if err != nil {
		httpapi.Fail(w, c.cfg.Logger, err, "reading the index failed")
		return
	}
	page := &AccessesPage{Platform: c.cfg.Platform, Filter: f, Entries: entries, Actions: access.Actions,
		Codes: append([]string{"(none)"}, access.Codes...), Query: r.URL.Query()}
	if page.Entries == nil {
		page.Entries = []Indexed{}
	}
	if next != nil {
		page.Before = next.String()
	}
	status := c.index.Status()
	for _, name := range slices.Sorted(maps.Keys(status)) {
		page.Indexed = append(page.Indexed, status[name])
		page.Logs = append(page.Logs, name)
	}
	c.render(w, r, "accesses.html", page)
}

// UpdateIndex follows every access log of the platform into the index,
// under the pins, from where it stopped. A log that does not verify is
// indexed no further (its status says why) and the others go on; the
// first such error is returned.
func (c *Center) UpdateIndex(ctx context.Context) error {
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return fmt.Errorf("%w: %v", errPlatform, err)
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	if err != nil {
		return err
	}
	var first error
	for _, dl := range d.Logs {
		if !strings.HasPrefix(dl.Name, "access-") {
			continue
		}
		err := func() error {
			if pins.LogKeys[dl.Name] != dl.VKey {
				return fmt.Errorf("log %s: not a pinned log", dl.Name)
			}
			l, err := d.OpenLog(dl.Name, []byte(pins.WitnessPolicy), c.cfg.HTTPClient)
			if err != nil {
				return fmt.Errorf("log %s: %w", dl.Name, err)
			}
			_, err = c.index.Follow(ctx, dl.Name, l, nil)
			return err
		}()
		if err != nil {
			st := c.index.Status()[dl.Name]
			st.Log, st.Problem = dl.Name, err.Error()
			c.index.setStatus(st)
			c.cfg.Logger.Warn("center: indexing", "log", dl.Name, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// followIndex keeps the index up to date until ctx ends.
func (c *Center) followIndex(ctx context.Context) {
	t := time.NewTicker(c.cfg.IndexEvery)
	defer t.Stop()
	for {
		_ = c.UpdateIndex(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
