package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
)

// hookReceiver is a webhook receiver: it keeps every delivery's body and
// headers as they came, to be checked once the secret is known.
type hookReceiver struct {
	mu         sync.Mutex
	deliveries []delivery
}

type delivery struct {
	header http.Header
	body   []byte
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.deliveries = append(h.deliveries, delivery{r.Header.Clone(), b})
	h.mu.Unlock()
}

// alerts checks every delivery's signature with the Standard Webhooks
// library and returns the alerts, by webhook-id, and every attempt's id in
// order.
func (h *hookReceiver) alerts(t *testing.T, secret string) (map[string]monitor.Alert, []string) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	byID := map[string]monitor.Alert{}
	var ids []string
	for _, d := range h.deliveries {
		if err := wh.VerifyIgnoringTimestamp(d.body, d.header); err != nil {
			t.Fatalf("a delivery's signature: %v", err)
		}
		var a monitor.Alert
		if err := json.Unmarshal(d.body, &a); err != nil {
			t.Fatalf("a delivery's body: %v: %s", err, d.body)
		}
		id := d.header.Get("webhook-id")
		if prev, ok := byID[id]; ok && prev.ID != a.ID {
			t.Fatalf("webhook-id %s was alert %d, then alert %d", id, prev.ID, a.ID)
		}
		byID[id] = a
		ids = append(ids, id)
	}
	return byID, ids
}

// waitAlerts waits up to 30 s until the webhook got alerts of every rule
// in rules.
func waitAlerts(t *testing.T, h *hookReceiver, secret string, rules ...string) map[string]monitor.Alert {
	t.Helper()
	var got map[string]monitor.Alert
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got, _ = h.alerts(t, secret)
		missing := false
		for _, r := range rules {
			found := false
			for _, a := range got {
				found = found || a.Rule == r
			}
			missing = missing || !found
		}
		if !missing {
			return got
		}
	}
	t.Fatalf("after 30 s the webhook has %d alerts, not every one of %v: %+v", len(got), rules, got)
	return nil
}

// checkProof verifies an alert's proof as anyone would, from the
// discovery document alone.
func checkProof(t *testing.T, base string, a monitor.Alert) {
	t.Helper()
	d := discover(t, base)
	gotest.CheckProof(t, &d, a.Log, a.Index, a.Entry, a.Proof)
}

// upClient is what a test does on a running `vitrine up`: register an
// endpoint, ingest, make principals, read.
type upClient struct {
	t        *testing.T
	base     string
	operator string
}

func newUpClient(t *testing.T, base, data string) *upClient {
	b, err := os.ReadFile(filepath.Join(data, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &upClient{t: t, base: base, operator: strings.TrimSpace(string(b))}
}

// call sends a request and decodes a 2xx answer into out; it returns the
// answer's headers.
func (c *upClient) call(method, path, token, body, justification string, out any) http.Header {
	c.t.Helper()
	var h []string
	if justification != "" {
		h = []string{access.Header, justification}
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = c.base + path
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.Header
}

// ingestRecords registers an endpoint in country, ingests n records, each
// its own file, in batches of 500, and returns the endpoint's id.
func (c *upClient) ingestRecords(country string, n int) string {
	var ep struct {
		ID string `json:"id"`
		testEndpoint
	}
	c.call("POST", "/v1/endpoints", c.operator, `{"country":"`+country+`"}`, "", &ep)
	for start := 0; start < n; start += 500 {
		var recs []string
		for i := start; i < min(n, start+500); i++ {
			recs = append(recs, testRecord(fmt.Sprintf("%064x", i+1), fmt.Sprintf("/home/a/%d", i)))
		}
		c.call("POST", ep.IngestURL, ep.Token, `{"batch_id":"b`+fmt.Sprint(start)+`","records":[`+strings.Join(recs, ",")+`]}`, "", nil)
	}
	return ep.ID
}

// principal creates a principal and returns its token.
func (c *upClient) principal(id, role, location, region string) string {
	var pr struct{ Token string }
	c.call("POST", "/v1/principals", c.operator, `{"id":"`+id+`","role":"`+role+`","location":"`+location+`","regions":["`+region+`"]}`, "", &pr)
	return pr.Token
}

// TestMonitorInUp: `vitrine up` runs the supervisor's monitor with the
// default rules; a read justified by a third party's request, an export
// of 1,001 records (two pages), a delete through the gateway and records
// deleted in the store behind its back (caught by the next commitment)
// reach a webhook as signed alerts whose proofs verify, and `vitrine
// monitor test-alert` shows delivery working.
func TestMonitorInUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts vitrine up; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	hook := &hookReceiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	data, addr := t.TempDir(), freeAddr(t)
	p := startUpArgs(t, bin, addr, "up", "--data", data, "--listen", addr, "--monitor-webhook", hs.URL+"/alerts")
	defer stopUpCleanly(t, p)
	d := discover(t, p.base)
	if len(d.Monitors) != 1 || d.Monitors[0].URL != p.base+"/monitor/" {
		t.Fatalf("the discovery document's monitors: %+v", d.Monitors)
	}
	// The monitor starts once the platform serves.
	secret := strings.TrimSpace(string(waitFile(t, filepath.Join(data, "monitor", monitor.WebhookSecretFile))))

	c := newUpClient(t, p.base, data)
	endpoint := c.ingestRecords("DE", 1001)
	analyst := c.principal("analyst:jdoe", "analyst", "CH", "zurich")
	c.call("GET", "/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 7), analyst, "", "THIRD_PARTY_DATA_REQUEST; court order 12", nil)
	exported := 0
	after := ""
	for page := 0; page < 3; page++ {
		h := c.call("GET", "/regions/zurich/v1/records/export?limit=1000&endpoint="+endpoint+after, analyst, "", "CUSTOMER_INITIATED_SUPPORT; case 31", nil)
		n := 0
		fmt.Sscan(h.Get("Vitrine-Access-Count"), &n)
		exported += n
		if h.Get("Vitrine-Next") == "" {
			break
		}
		after = "&after=" + h.Get("Vitrine-Next")
	}
	if exported != 1001 {
		t.Fatalf("exported %d records, want 1001", exported)
	}

	// A delete through the gateway, then a commitment: the count drops
	// by what the log shows deleted. Then records deleted in the store
	// itself, behind the gateway's back, and a commitment: the count drops
	// by more than the log explains.
	c.call("DELETE", "/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 9), analyst, "", "CUSTOMER_INITIATED_SUPPORT; case 32", nil)
	c.call("POST", "/regions/zurich/v1/commitments", c.operator, "", "", nil)
	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(data, "regions", "zurich", "telemetry.db"), "busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`DELETE FROM records WHERE id IN (SELECT id FROM records ORDER BY id DESC LIMIT 2)`)
	db.Close()
	if n, _ := res.RowsAffected(); err != nil || n != 2 {
		t.Fatalf("deleting two records in the store: %v, %d", err, n)
	}
	c.call("POST", "/regions/zurich/v1/commitments", c.operator, "", "", nil)

	got := waitAlerts(t, hook, secret, "third-party-request", "bulk-export", "delete-outside-relocation", "dataset-shrank", "heartbeat")
	for _, a := range got {
		switch a.Rule {
		case "third-party-request":
			if !strings.Contains(a.Entry, "court order 12") {
				t.Errorf("the third-party alert's entry: %s", a.Entry)
			}
			checkProof(t, p.base, a)
		case "bulk-export":
			if !strings.Contains(a.Entry, `"action":"export"`) || !strings.Contains(a.Detail, "1001") {
				t.Errorf("the bulk-export alert: %+v", a)
			}
			checkProof(t, p.base, a)
		case "delete-outside-relocation":
			checkProof(t, p.base, a)
		case "dataset-shrank":
			if a.Severity != "critical" || !strings.Contains(a.Entry, `"kind":"commitment"`) || !strings.Contains(a.Detail, "2 records vanished") {
				t.Errorf("the dataset-shrank alert: %+v", a)
			}
			checkProof(t, p.base, a)
		case "heartbeat":
		default:
			t.Errorf("an alert nobody asked for: %+v", a)
		}
	}
	// The same alerts are public at the monitor's route.
	var page monitor.AlertsAnswer
	c.call("GET", "/monitor/v1/alerts?severity=notice", "", "", "", &page)
	if len(page.Alerts) != 4 {
		t.Errorf("GET /monitor/v1/alerts?severity=notice: %d alerts, want the four", len(page.Alerts))
	}

	// The supervisor acknowledges the shrunk dataset, and the note shows
	// with the alert.
	var shrank monitor.Alert
	for _, a := range got {
		if a.Rule == "dataset-shrank" {
			shrank = a
		}
	}
	out, err := runVitrine(t, bin, "monitor", "ack", "--monitor", p.base+"/monitor", "--token", filepath.Join(data, "monitor", "supervisor.token"),
		"--alert", fmt.Sprint(shrank.ID), "--note", "Asked the vendor: a restore from an old backup. Reviewed.")
	if err != nil || !strings.Contains(out, "acknowledgement log") {
		t.Fatalf("monitor ack: %v\n%s", err, out)
	}
	var acked monitor.Alert
	c.call("GET", fmt.Sprintf("/monitor/v1/alerts/%d", shrank.ID), "", "", "", &acked)
	if len(acked.Acknowledgements) != 1 || !strings.Contains(acked.Acknowledgements[0].Entry, "old backup") {
		t.Errorf("the acknowledged alert: %+v", acked.Acknowledgements)
	}

	out, err = runVitrine(t, bin, "monitor", "test-alert", "--data", filepath.Join(data, "monitor"), "--wait", "20s")
	if err != nil || !strings.Contains(out, "webhook "+hs.URL+"/alerts: delivered") {
		t.Fatalf("monitor test-alert: %v\n%s", err, out)
	}
	waitAlerts(t, hook, secret, "test-alert")

	// An endpoint asks the monitor who accessed its data.
	agentDir := filepath.Join(t.TempDir(), "agent")
	if out, err := runVitrine(t, bin, "agent", "register", "--platform", p.base, "--token", filepath.Join(data, "operator.token"), "--country", "DE", "--dir", agentDir); err != nil {
		t.Fatalf("agent register: %v\n%s", err, out)
	}
	var id struct {
		ID, Token, IngestURL string `json:",omitempty"`
	}
	b, err := os.ReadFile(filepath.Join(agentDir, "identity.json"))
	if err != nil || json.Unmarshal(b, &id) != nil {
		t.Fatalf("identity.json: %v %s", err, b)
	}
	c.call("POST", p.base+"/regions/zurich/v1/telemetry", id.Token, `{"batch_id":"mine","records":[`+testRecord(fmt.Sprintf("%064x", 5000), "/home/me/x")+`]}`, "", nil)
	c.call("GET", "/regions/zurich/v1/records?endpoint="+id.ID, analyst, "", "THIRD_PARTY_DATA_REQUEST; court order 13", nil)
	var out2 string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out2, err = runVitrine(t, bin, "agent", "accesses", "--dir", agentDir); err == nil && strings.Contains(out2, "court order 13") {
			break
		}
	}
	if err != nil || !strings.Contains(out2, ": 1 accesses, each proven") || !strings.Contains(out2, "analyst:jdoe (analyst, CH)") {
		t.Fatalf("agent accesses: %v\n%s", err, out2)
	}
}

// TestMonitorKilled: `vitrine monitor` is SIGKILLed at random moments, 20
// times, while accesses that raise alerts go on and a slow webhook takes
// them. Afterwards every access has its alert, raised once, and the
// webhook has every one of them under one webhook-id each. A delivery the
// webhook acknowledged just before a kill, before the monitor saved its
// cursor, comes again with the same webhook-id, which is how a Standard
// Webhooks receiver knows it has it; the test counts those.
func TestMonitorKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	p, data := startPlatform(t)
	c := newUpClient(t, p.URL(), data)
	c.ingestRecords("DE", 3)
	analyst := c.principal("analyst:jdoe", "analyst", "CH", "zurich")
	hook := &hookReceiver{}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		hook.ServeHTTP(w, r)
	})
	hs := httptest.NewServer(slow)
	defer hs.Close()

	// Reads, each raising a third-party-request alert, go on throughout.
	stop := make(chan struct{})
	var reads atomic.Int64
	readsDone := make(chan struct{})
	go func() {
		defer close(readsDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", p.URL()+"/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 1), nil)
			req.Header.Set("Authorization", "Bearer "+analyst)
			req.Header.Set(access.Header, fmt.Sprintf("THIRD_PARTY_DATA_REQUEST; order %d", reads.Load()))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				reads.Add(1)
			}
		}
	}()

	mdir, addr := t.TempDir(), freeAddr(t)
	args := []string{"monitor", "--data", mdir, "--listen", addr, "--platform", p.URL(), "--webhook", hs.URL, "--interval", "100ms", "--heartbeat", "0"}
	const kills = 20
	for i := range kills {
		m := startServing(t, bin, addr, "/v1/alerts", http.StatusOK, args...)
		time.Sleep(time.Duration(200+rand.IntN(1300)) * time.Millisecond)
		m.kill()
		if i%5 == 4 {
			t.Logf("kill %d: %d reads so far", i+1, reads.Load())
		}
	}
	close(stop)
	<-readsDone
	want := int(reads.Load())

	// A last run delivers what is left.
	m := startServing(t, bin, addr, "/v1/alerts", http.StatusOK, args...)
	defer m.kill()
	secretB, err := os.ReadFile(filepath.Join(mdir, monitor.WebhookSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(secretB))
	var got map[string]monitor.Alert
	var attempts []string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, attempts = hook.alerts(t, secret)
		if len(got) >= want+want/101 {
			break
		}
	}
	// Each access once: one alert per entry and rule, under one
	// webhook-id. Every 101st read of the one analyst is also a burst
	// (more than 100 within an hour): counted across the kills, since the
	// windows are committed with the alerts.
	entries := map[string]string{}
	bursts := 0
	for id, a := range got {
		switch {
		case a.Index == nil:
			t.Fatalf("an alert about no entry: %+v", a)
		case a.Rule == "burst":
			bursts++
		case a.Rule != "third-party-request":
			t.Fatalf("an alert nobody asked for: %+v", a)
		}
		k := fmt.Sprint(a.Rule, *a.Index)
		if other, ok := entries[k]; ok {
			t.Fatalf("%s entry %d was delivered as two alerts, %s and %s", a.Rule, *a.Index, other, id)
		}
		entries[k] = id
	}
	if len(got) != want+want/101 || bursts != want/101 {
		t.Fatalf("the webhook has %d alerts (%d bursts) for %d third-party reads, want %d and %d", len(got), bursts, want, want+want/101, want/101)
	}
	var stored monitor.AlertsAnswer
	c.call("GET", "http://"+addr+"/v1/alerts?limit=1000", "", "", "", &stored)
	if len(stored.Alerts) != len(got) {
		t.Errorf("the monitor stores %d alerts, the webhook has %d", len(stored.Alerts), len(got))
	}
	again := len(attempts) - len(got)
	t.Logf("%d kills, %d reads, %d alerts delivered once each; %d deliveries repeated under their webhook-id after a kill", kills, want, len(got), again)
	if again > kills {
		t.Errorf("%d repeated deliveries for %d kills: at most one per kill", again, kills)
	}
}
