package logserver

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/tlog"
)

// state is what the log reports at a scrape (metrics.LogState): its
// storage's health and the checkpoint it serves, with the time it was
// made: its newest cosignature, which the publisher renews at least every
// minute while the witnesses answer, so that the age grows when they do
// not; or, for a log without witnesses, when this process first read it.
func (l *Log) state() metrics.LogState {
	st := metrics.LogState{Healthy: l.Ready() == nil}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil || len(raw) == 0 {
		return st
	}
	cp, err := l.verifyCheckpoint(raw)
	if err != nil {
		return st
	}
	st.Published, st.Size = true, cp.Size
	for _, t := range cp.CosignedAt {
		if t.After(st.Made) {
			st.Made = t
		}
	}
	if st.Made.IsZero() {
		l.seenMu.Lock()
		if !bytes.Equal(l.seen, raw) {
			l.seen, l.seenAt = raw, time.Now()
		}
		st.Made = l.seenAt
		l.seenMu.Unlock()
	}
	return st
}

// timeWitnesses returns hc (http.DefaultClient if nil) with a transport
// that times each request to a witness of policy in m, by the witness's
// name in the policy. Without metrics it returns hc itself.
func timeWitnesses(hc *http.Client, policy *tlog.Policy, m *metrics.Log) *http.Client {
	if m == nil || len(policy.Witnesses) == 0 {
		return hc
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	t := &witnessTimer{next: hc.Transport}
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	for _, w := range policy.Witnesses {
		u, err := url.Parse(w.URL)
		if err != nil || w.URL == "" {
			continue
		}
		t.witnesses = append(t.witnesses, timedWitness{host: u.Host, path: strings.TrimSuffix(u.Path, "/"), calls: m.Witness(w.Name)})
	}
	c := *hc
	c.Transport = t
	return &c
}

// witnessTimer times the requests to witnesses it knows by their URL, and
// passes every request on to next.
type witnessTimer struct {
	next      http.RoundTripper
	witnesses []timedWitness
}

type timedWitness struct {
	host, path string
	calls      *metrics.WitnessCalls
}

func (t *witnessTimer) RoundTrip(req *http.Request) (*http.Response, error) {
	var calls *metrics.WitnessCalls
	for _, w := range t.witnesses {
		if req.URL.Host == w.host && strings.HasPrefix(req.URL.Path, w.path) {
			calls = w.calls
			break
		}
	}
	if calls == nil {
		return t.next.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	calls.Done(time.Since(start), status)
	return resp, err
}
