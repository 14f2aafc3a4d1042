package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/telemetry"
	"github.com/vitrine-dev/vitrine/tlog"
)

// env is a region's gateway over real parts, each reached the way a
// deployment reaches it: a SQLite store, the access log on disk whose
// checkpoints a witness cosigns over HTTP, key custody over HTTP, and a
// principal registry. Tests can stop the witness and custody.
type env struct {
	t          testing.TB
	log        *logserver.Log
	policy     *tlog.Policy
	witnessSrv *httptest.Server
	custody    *custody.Service
	custodySrv *httptest.Server
	store      store.Store
	principals *principal.Registry
	issuer     *endpoint.Issuer
	pkey       []byte
	srv        *httptest.Server
	tokens     map[string]string // principal id -> token
	gw         *Gateway
	glog       *recordingLog // the gateway's access log
}

// recordingLog is the access log as the gateway sees it: it keeps the
// entries the gateway appended, and refuses entries on demand.
type recordingLog struct {
	Log
	mu      sync.Mutex
	indexes []uint64
	entries [][]byte
	// refuse is how many appends succeed before the log refuses every
	// append; -1 never refuses.
	refuse int
}

func (l *recordingLog) Append(ctx context.Context, entry []byte) (uint64, error) {
	l.mu.Lock()
	if l.refuse == 0 {
		l.mu.Unlock()
		return 0, errors.New("injected: the access log refuses entries")
	}
	if l.refuse > 0 {
		l.refuse--
	}
	l.mu.Unlock()
	i, err := l.Log.Append(ctx, entry)
	if err == nil {
		l.mu.Lock()
		l.indexes = append(l.indexes, i)
		l.entries = append(l.entries, entry)
		l.mu.Unlock()
	}
	return i, err
}

// refuseAfter makes the log take n more entries and refuse the ones
// after; -1 takes every entry again.
func (l *recordingLog) refuseAfter(n int) {
	l.mu.Lock()
	l.refuse = n
	l.mu.Unlock()
}

// appended returns the gateway's entries so far and their indexes.
func (l *recordingLog) appended() ([][]byte, []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries), slices.Clone(l.indexes)
}

func (l *recordingLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

const (
	testRegion = "zurich"
	origin     = "vitrine.test/logs/access-zurich"
)

// newEnv starts the parts; the access log lives in logDir ("" for a
// temporary directory).
func newEnv(t testing.TB, logDir string) *env {
	t.Helper()
	return newEnvWith(t, logDir, nil)
}

// newEnvWith is newEnv with the gateway's configuration changed by
// configure, if not nil.
func newEnvWith(t testing.TB, logDir string, configure func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	if logDir == "" {
		logDir = t.TempDir()
	}
	e := &env{t: t, tokens: map[string]string{}, pkey: []byte("0123456789abcdef0123456789abcdef")}
	vkey, err := logserver.LoadOrCreateKey(logDir, origin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(ctx, witness.Config{Dir: t.TempDir(), Name: "vitrine.test/supervisor", Logs: []witness.LogKey{{Origin: origin, VKey: vkey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e.witnessSrv = httptest.NewServer(w.Handler())
	t.Cleanup(e.witnessSrv.Close)
	policyText, err := tlog.SingleWitnessPolicy("supervisor", w.VKey(), e.witnessSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	e.log, err = logserver.Open(ctx, logserver.Config{
		Dir: logDir, Origin: origin, WitnessPolicy: policyText,
		CheckpointInterval: 100 * time.Millisecond, WitnessTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		e.log.Close(ctx)
	})
	e.policy = e.log.Policy()

	e.custody, err = custody.Open(custody.Config{Dir: t.TempDir(), Regions: []custody.RegionConfig{
		{Name: testRegion, AccessLogVerifier: e.log.Verifier(), WitnessPolicy: e.log.Policy()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.custody.Close() })
	const custodyToken = "custody-token-for-tests"
	e.custodySrv = httptest.NewServer(e.custody.Handler(func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+custodyToken
	}))
	t.Cleanup(e.custodySrv.Close)

	e.store, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "telemetry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.principals, err = principal.Open(filepath.Join(t.TempDir(), "principals.json"), func(r string) bool { return r == testRegion || r == "moscow" })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.issuer, err = endpoint.LoadOrCreateIssuer(filepath.Join(dir, "endpoint.key"), filepath.Join(dir, "endpoint.vkey"), "vitrine.test/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	e.glog = &recordingLog{Log: e.log, refuse: -1}
	cfg := Config{
		Region: testRegion, Store: e.store, Log: e.glog,
		Custody:    custody.NewClient(e.custodySrv.URL, custodyToken, nil),
		Principals: e.principals, Pseudonyms: endpoint.PseudonymKey(e.pkey), WitnessTimeout: 3 * time.Second,
	}
	if configure != nil {
		configure(&cfg)
	}
	e.gw = New(cfg)
	e.srv = httptest.NewServer(e.gw.Handler())
	t.Cleanup(e.srv.Close)
	for _, p := range []principal.Principal{
		{ID: "analyst:jdoe", Role: principal.Analyst, Location: "CH", Regions: []string{testRegion}},
		{ID: "analyst:ivan", Role: principal.Analyst, Location: "RU", Regions: []string{"moscow"}},
		{ID: "auditor:ann", Role: principal.Auditor, Location: "DE", Regions: []string{testRegion}},
		{ID: "operator:ops", Role: principal.Operator, Location: "CH", Regions: []string{testRegion}},
		{ID: "supervisor:sv", Role: principal.Supervisor, Location: "CH", Regions: []string{testRegion}},
	} {
		tok, err := e.principals.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[p.ID] = tok
	}
	return e
}

// ingest stores a batch of recs from a new endpoint of country, sealed as
// the region's ingest seals it, and returns the endpoint's id.
func (e *env) ingest(country string, recs ...telemetry.Record) string {
	e.t.Helper()
	id, _, err := e.issuer.Register(country, testRegion)
	if err != nil {
		e.t.Fatal(err)
	}
	e.ingestAs(id.ID, country, "b1", recs...)
	return id.ID
}

func (e *env) ingestAs(endpointID, country, batchID string, recs ...telemetry.Record) {
	e.t.Helper()
	pk, _ := e.custody.PublicKey(testRegion)
	wrapped, sealed, err := seal.Records(pk, endpointID, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.PutBatch(context.Background(), &store.Batch{
		Pseudonym: endpoint.Pseudonym(e.pkey, endpointID), Country: country, BatchID: batchID,
		Received: time.Now().UTC(), Records: recs, Sealed: store.Sealed{WrappedKey: wrapped, Records: sealed},
	}); err != nil {
		e.t.Fatal(err)
	}
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func hash(s string) string {
	return fmt.Sprintf("%064x", []byte(s))[:64]
}

func rec(sha string, d time.Duration, path string) telemetry.Record {
	return telemetry.Record{Time: t0.Add(d), Kind: "detection", SHA256: sha, Size: 68, Detection: "EICAR-Test-File",
		Path: path, URL: "https://example.com/" + path, Product: "vitrine-agent/1.0.0", RuleDB: 42}
}

// response is an answer of the gateway.
type response struct {
	status  int
	header  http.Header
	body    []byte
	answer  Answer
	receipt uint64 // the index in the receipt header
	hasRcpt bool
}

// do sends method path with the principal's token (none if "") and the
// justification (none if "").
func (e *env) do(method, path, principalID, justification string) *response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if principalID != "" {
		tok, ok := e.tokens[principalID]
		if !ok {
			tok = principalID // a raw token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if justification != "" {
		req.Header.Set(access.Header, justification)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := &response{status: resp.StatusCode, header: resp.Header}
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		e.t.Fatal(err)
	}
	if h := resp.Header.Get(access.ReceiptHeader); h != "" {
		o, idx, ok := strings.Cut(h, " ")
		if !ok || o != origin {
			e.t.Fatalf("receipt header %q, want %q and an index", h, origin)
		}
		if _, err := fmt.Sscan(idx, &r.receipt); err != nil {
			e.t.Fatalf("receipt header %q: %v", h, err)
		}
		r.hasRcpt = true
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(r.body, &r.answer); err != nil {
			e.t.Fatalf("answer %s: %v", r.body, err)
		}
	}
	return r
}

// entry returns the access record at index, read back from the log's
// tiles once a witnessed checkpoint covers it, and the entry's bytes.
func (e *env) entry(index uint64) (*access.Record, []byte) {
	e.t.Helper()
	raw := e.rawEntry(index)
	r, err := access.Parse(raw)
	if err != nil {
		e.t.Fatalf("entry %d: %v\n%s", index, err, raw)
	}
	return r, raw
}

// rawEntry returns the entry at index, of any kind, read back from the
// log's tiles once a witnessed checkpoint covers it.
func (e *env) rawEntry(index uint64) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp, err := e.log.AwaitWitnessed(ctx, index)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := client.GetEntryBundle(ctx, e.log.Reader().ReadEntryBundle, index/256, cp.Size)
	if err != nil {
		e.t.Fatal(err)
	}
	return b.Entries[index%256]
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
