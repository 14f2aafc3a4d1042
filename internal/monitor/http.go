package monitor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

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
	mux.HandleFunc("POST /v1/checkpoints", m.serveCheckpoint)
	return mux
}

// maxCheckpoint bounds a posted checkpoint, as client bounds a served one.
const maxCheckpoint = 64 << 10

func (m *Monitor) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, ok := httpapi.ReadLimited(w, r, maxCheckpoint)
	if !ok {
		return
	}
	ans, err := m.CheckCheckpoint(r.Context(), body)
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
	if len(alerts) == q.Limit {
		ans.Next = alerts[len(alerts)-1].ID
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
	if q.Rule != "" && !validName.MatchString(q.Rule) {
		return q, fault.New(fault.ErrInvalid, "rule must be a rule's name")
	}
	if len(q.Platform) > 2048 {
		return q, fault.New(fault.ErrInvalid, "platform is too long")
	}
	return q, nil
}
