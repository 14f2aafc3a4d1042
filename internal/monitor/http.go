package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/feeds"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// AlertsAnswer is the answer of GET /v1/alerts: a page of alerts, oldest
// first, and the id to ask after for the next page (absent when this page
// is the last, for now).
type AlertsAnswer struct {
	Alerts []Alert `json:"alerts"`
	Next   int64   `json:"next,omitempty"`
}

// Handler serves the monitor's public routes:
//
//	GET /v1/alerts?after=ID&limit=N&rule=R&severity=S&platform=URL
//	GET /v1/alerts/{id}
//	GET /v1/alerts.atom?rule=R&severity=S&platform=URL (the newest 100, Atom)
//	POST /v1/alerts/{id}/acknowledgements {"note": "…"} (the supervisor's
//	     token): logs the note in the acknowledgement log, then keeps it
//	GET /v1/monitor: the monitor's id and its acknowledgement log
//	GET /v1/accesses?platform=URL&after=N (an endpoint's own token): the
//	     access entries that name the endpoint, with proofs
//	GET /v1/acknowledgements/checkpoint, /tile/…: the acknowledgement log
//	POST /v1/checkpoints (body: a checkpoint someone was served; see
//	     CheckCheckpoint): 200 consistent, 409 a fork (with the alert), 400
//	     not a witnessed checkpoint of a followed log, 404 a log not followed
//	     (yet)
//
// Alerts are public, like the logs they come from: each carries its entry
// and the proof that the log holds it.
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/alerts", m.serveAlerts)
	mux.HandleFunc("GET /v1/alerts/{id}", m.serveAlert)
	mux.HandleFunc("GET /v1/alerts.atom", m.serveFeed)
	mux.HandleFunc("POST /v1/alerts/{id}/acknowledgements", m.serveAcknowledge)
	mux.HandleFunc("GET /v1/monitor", m.serveAbout)
	mux.HandleFunc("GET /v1/accesses", m.serveAccesses)
	mux.Handle("/v1/acknowledgements/", http.StripPrefix("/v1/acknowledgements", m.acks.ReadHandler()))
	mux.HandleFunc("POST /v1/checkpoints", m.serveCheckpoint)
	return mux
}

// maxAlertsPage bounds the alerts of one page of GET /v1/alerts, in bytes.
const maxAlertsPage = 4 << 20

// maxCheckpoint bounds a posted checkpoint, as client bounds a served one.
const maxCheckpoint = 64 << 10

func (m *Monitor) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, ok := httpapi.ReadLimited(w, r, maxCheckpoint)
	if !ok {
		return
	}
	// Proven under the server's own deadline, not the client's: one that
	// hangs up at once must not make a true checkpoint look unprovable.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	ans, err := m.CheckCheckpoint(ctx, body)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "checking the checkpoint failed")
		return
	}
	if !ans.Consistent {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(ans)
		return
	}
	httpapi.JSON(w, ans)
}

func (m *Monitor) serveAlerts(w http.ResponseWriter, r *http.Request) {
	q, err := parseAlertQuery(r)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "bad query")
		return
	}
	alerts, err := m.store.alerts(r.Context(), q)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "reading the alerts failed")
		return
	}
	ans := AlertsAnswer{Alerts: alerts}
	// A page is cut at maxAlertsPage bytes (an alert holds its entry, up
	// to 64 KiB): next then names the last alert it holds.
	size := 0
	for i, a := range alerts {
		b, err := json.Marshal(a)
		if err != nil {
			httpapi.Fail(w, m.cfg.Logger, err, "encoding the alerts failed")
			return
		}
		if size += len(b); size > maxAlertsPage && i > 0 {
			ans.Alerts = alerts[:i]
			break
		}
	}
	if !q.Newest && (len(ans.Alerts) < len(alerts) || len(alerts) == q.Limit) {
		ans.Next = ans.Alerts[len(ans.Alerts)-1].ID
	}
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.JSON(w, ans)
}

func parseAlertQuery(r *http.Request) (AlertQuery, error) {
	v := r.URL.Query()
	q := AlertQuery{Limit: 100, Rule: v.Get("rule"), MinSeverity: v.Get("severity"), Platform: v.Get("platform")}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, fault.New(fault.ErrInvalid, "after must be a non-negative decimal (an alert's id)")
		}
		q.After = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAlerts {
			return q, fault.New(fault.ErrInvalid, fmt.Sprintf("limit must be 1 to %d", MaxAlerts))
		}
		q.Limit = n
	}
	switch v.Get("order") {
	case "", "oldest":
	case "newest":
		// The newest first, without paging (next is for oldest first).
		q.Newest = true
	default:
		return q, fault.New(fault.ErrInvalid, "order must be oldest or newest")
	}
	if q.Rule != "" && !validName.MatchString(q.Rule) {
		return q, fault.New(fault.ErrInvalid, "rule must be a rule's name")
	}
	if len(q.Platform) > 2048 {
		return q, fault.New(fault.ErrInvalid, "platform is too long")
	}
	return q, nil
}

func (m *Monitor) serveAlert(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		httpapi.Error(w, http.StatusNotFound, "no such alert: an alert's id is a positive decimal")
		return
	}
	alerts, err := m.store.alerts(r.Context(), AlertQuery{ID: id, Limit: 1})
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "reading the alert failed")
		return
	}
	if len(alerts) == 0 {
		httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("no alert %d", id))
		return
	}
	httpapi.JSON(w, alerts[0])
}

// feedSize is how many alerts the Atom feed holds.
const feedSize = 100

// serveFeed serves the newest alerts as an Atom feed, for feed readers:
// each entry links to the alert's JSON, which holds its proof.
func (m *Monitor) serveFeed(w http.ResponseWriter, r *http.Request) {
	q, err := parseAlertQuery(r)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "bad query")
		return
	}
	q.After, q.Limit, q.Newest = 0, feedSize, true
	alerts, err := m.store.alerts(r.Context(), q)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "reading the alerts failed")
		return
	}
	base := requestBase(r)
	f := &feeds.Feed{
		Title:       "Vitrine monitor alerts",
		Link:        &feeds.Link{Href: base + "/v1/alerts.atom", Rel: "self"},
		Description: "Alerts raised by a supervisor's monitor of Vitrine platforms; each alert's JSON carries its log entry and a proof that the log holds it.",
		Id:          base + "/v1/alerts.atom",
		Updated:     time.Unix(0, 0).UTC(),
	}
	for _, a := range alerts {
		if a.Time.After(f.Updated) {
			f.Updated = a.Time
		}
		title := fmt.Sprintf("[%s] %s", a.Severity, a.Rule)
		if a.Log != "" {
			title += " in " + a.Log
			if a.Index != nil {
				title += fmt.Sprintf(" entry %d", *a.Index)
			}
		}
		if a.Platform != "" {
			title += " of " + a.Platform
		}
		content := "<p>" + html.EscapeString(a.Detail) + "</p>"
		if a.Entry != "" {
			content += "<pre>" + html.EscapeString(a.Entry) + "</pre>"
		}
		f.Items = append(f.Items, &feeds.Item{
			Title:   title,
			Link:    &feeds.Link{Href: fmt.Sprintf("%s/v1/alerts/%d", base, a.ID)},
			Id:      fmt.Sprintf("%s/v1/alerts/%d", base, a.ID),
			Updated: a.Time,
			Content: content,
		})
	}
	atom, err := f.ToAtom()
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "writing the feed failed")
		return
	}
	w.Header().Set("Content-Type", "application/atom+xml; charset=utf-8")
	w.Header().Set("Vary", "Host") // its links are made from the Host the reader asked
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = io.WriteString(w, atom)
}

// requestBase is the scheme and host a request was made to, and the
// prefix it was served under (the monitor inside vitrine up is under
// /monitor): the base of the feed's links.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// RequestURI is the path as the client sent it, before any
	// http.StripPrefix.
	path, _, _ := strings.Cut(r.RequestURI, "?")
	prefix, _, _ := strings.Cut(path, "/v1/alerts")
	return scheme + "://" + r.Host + prefix
}
