package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/reputation"
)

// balancer is the load balancer in front of a region's processes: it
// sends each request to the next process, and to the one after if the
// first cannot be reached, as a load balancer with health checks does.
type balancer struct {
	mu       sync.Mutex
	backends []string
	next     int
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	b.mu.Lock()
	if len(b.backends) == 0 {
		b.mu.Unlock()
		http.Error(w, "no process of the region yet", http.StatusServiceUnavailable)
		return
	}
	order := slices.Concat(b.backends[b.next:], b.backends[:b.next])
	b.next = (b.next + 1) % len(b.backends)
	b.mu.Unlock()
	var last error
	for _, base := range order {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				last = err
				continue // not serving: the next one
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, fmt.Sprint("no process of the region answers: ", last), http.StatusServiceUnavailable)
}

// regionProcess is one `vitrine serve --role region:zurich`.
type regionProcess struct {
	*upProcess
	name string
}

// leased reports whether the process's output says it holds lease now.
func (p *regionProcess) leased(lease string) bool {
	out := p.out.String()
	return strings.LastIndex(out, "lease "+lease+" taken") > strings.LastIndex(out, "lease "+lease+" let go")
}

// TestRegionScaleOut runs the zurich service as two processes of
// `vitrine serve --role region:zurich` on one PostgreSQL store, beside the
// platform's process, behind a load balancer, and SIGKILLs the one that
// holds the exchange's lease, again and again, while endpoints send
// batches and an analyst reads records. It checks that every
// acknowledged batch is stored exactly once, that the aggregates count
// every record once, that every read that released data was logged
// first, and that the survivor takes over the background work: the
// exchange (zurich's verdicts come to count what moscow stored after the
// kill) and the commitments.
func TestRegionScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes; skipped in -short mode")
	}
	dsn := gotest.PostgresDSN(t)
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	coreData := filepath.Join(dir, "core")
	coreAddr := freeAddr(t)
	lb := &balancer{}
	lbServer := httptest.NewServer(lb)
	defer lbServer.Close()
	cfg := map[string]any{
		"name": "scaleout.test", "data": coreData, "listen": coreAddr,
		"residency": map[string]any{"version": 1, "default": "moscow", "regions": []any{
			map[string]any{"name": "zurich", "url": lbServer.URL, "countries": []string{"CH", "DE", "US"}},
			map[string]any{"name": "moscow"},
		}},
		"stores":              map[string]string{"zurich": dsn},
		"external_regions":    []string{"zurich"},
		"platform_url":        "http://" + coreAddr,
		"peer_token":          filepath.Join(coreData, "peer.token"),
		"internal_tokens":     map[string]string{"zurich": filepath.Join(coreData, "internal", "zurich.token")},
		"custody_token":       filepath.Join(coreData, "custody.token"),
		"commitment_interval": "1s",
		"monitor":             map[string]any{"off": true},
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	core := startUpArgs(t, bin, coreAddr, "up", "--config", cfgFile)
	t.Cleanup(core.kill)
	start := func(name, addr string) *regionProcess {
		p := startServing(t, bin, addr, "/readyz", http.StatusOK, "serve", "--config", cfgFile, "--role", "region:zurich",
			"--listen", addr, "--data", filepath.Join(dir, name))
		return &regionProcess{p, name}
	}
	addrs := map[string]string{"a": freeAddr(t), "b": freeAddr(t)}
	procs := map[string]*regionProcess{"a": start("a", addrs["a"]), "b": start("b", addrs["b"])}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})
	t.Logf("platform and two zurich processes up")
	lb.mu.Lock()
	lb.backends = []string{procs["a"].base, procs["b"].base}
	lb.mu.Unlock()

	op, err := os.ReadFile(filepath.Join(coreData, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	operator := strings.TrimSpace(string(op))
	var eps []*crashEndpoint
	for _, c := range []string{"DE", "US", "CH"} {
		ep := registerCrashEndpoint(t, core.base, operator, c)
		if ep.Region != "zurich" || !strings.HasPrefix(ep.IngestURL, lbServer.URL) {
			t.Fatalf("%s registered in %s with ingest URL %s, want zurich behind %s", c, ep.Region, ep.IngestURL, lbServer.URL)
		}
		eps = append(eps, ep)
	}
	moscowEP := registerCrashEndpoint(t, core.base, operator, "RU")
	var pr struct{ Token string }
	gotest.Call(t, "POST", core.base+"/v1/principals", operator, `{"id":"analyst:ana","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)

	const exchange = "region/zurich/exchange"
	// holder returns the one live process that holds the exchange's
	// lease.
	holder := func(dead *regionProcess) *regionProcess {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var held []*regionProcess
			for _, p := range procs {
				if p != dead && p.leased(exchange) {
					held = append(held, p)
				}
			}
			if len(held) == 1 {
				return held[0]
			}
		}
		t.Fatalf("no single process holds the exchange's lease:\na: %s\nb: %s", procs["a"].out, procs["b"].out)
		return nil
	}

	var (
		mu       sync.Mutex
		acked    = map[string]*crashBatch{} // acknowledged batches, by id
		pending  []*crashBatch              // sent without an answer
		sent     int
		reads    atomic.Int64 // reads that released records
		receipts = map[string]bool{}
		hc       = &http.Client{Timeout: 20 * time.Second}
	)
	recTime := time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339)
	newBatch := func(ep *crashEndpoint) *crashBatch {
		mu.Lock()
		sent++
		b := &crashBatch{id: fmt.Sprintf("scale-%s-%d", ep.Country, sent), ep: ep}
		mu.Unlock()
		var body bytes.Buffer
		body.WriteString(`{"batch_id":"` + b.id + `","records":[`)
		for i := range 8 {
			// Every batch carries the same hashes, so that every
			// endpoint counts in each aggregate once.
			sum := sha256.Sum256([]byte("scale#" + strconv.Itoa(i)))
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"time":%q,"kind":"file","sha256":%q,"size":1,"detection":"","url":"","path":"C:/x/%d.exe","product":"vitrine-agent/1.0.0","ruledb":1}`,
				recTime, hex.EncodeToString(sum[:]), i)
			b.recs = append(b.recs, crashRecord{batch: b, sha256: hex.EncodeToString(sum[:])})
		}
		body.WriteString(`]}`)
		b.body = body.Bytes()
		return b
	}
	send := func(ctx context.Context, b *crashBatch) bool {
		code, ans, err := postBatch(ctx, hc, b.ep.IngestURL, b.ep.Token, b.body)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil && code == http.StatusOK:
			if ans.BatchID != b.id || ans.Records != len(b.recs) {
				t.Errorf("batch %s: answer %s", b.id, ans.raw)
			}
			acked[b.id] = b
			return true
		case err == nil && code != http.StatusServiceUnavailable && code != http.StatusBadGateway:
			t.Errorf("batch %s: %d %s", b.id, code, ans.raw)
		}
		pending = append(pending, b)
		return false
	}
	read := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, "GET", lbServer.URL+"/v1/records?sha256="+eps[0].lastHash(), nil)
		req.Header.Set("Authorization", "Bearer "+pr.Token)
		req.Header.Set(access.Header, "CUSTOMER_INITIATED_SUPPORT; case 7")
		resp, err := hc.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		switch resp.StatusCode {
		case http.StatusOK:
			rc := resp.Header.Get("Vitrine-Access-Receipt")
			if rc == "" {
				t.Errorf("a read released records without a receipt of its access entry")
			}
			mu.Lock()
			receipts[rc] = true
			mu.Unlock()
			reads.Add(1)
		case http.StatusServiceUnavailable, http.StatusBadGateway:
		default:
			t.Errorf("read: %s", resp.Status)
		}
	}

	const kills = 5
	for k := range kills {
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for _, ep := range eps {
			wg.Go(func() {
				for ctx.Err() == nil {
					send(ctx, newBatch(ep))
				}
			})
		}
		wg.Go(func() {
			for ctx.Err() == nil {
				read(ctx)
				time.Sleep(50 * time.Millisecond)
			}
		})
		time.Sleep(1500 * time.Millisecond)
		victim := holder(nil)
		victim.kill()
		killed := time.Now()
		// The survivor takes over the exchange while ingest goes on.
		survivor := holder(victim)
		took := time.Now()
		// Moscow stores a hash now: zurich's verdicts count it once the
		// survivor's exchange has pulled it.
		fresh := sha256.Sum256([]byte("moscow#" + strconv.Itoa(k)))
		mb := &crashBatch{id: "moscow-" + strconv.Itoa(k), ep: moscowEP}
		mb.body = fmt.Appendf(nil, `{"batch_id":%q,"records":[{"time":%q,"kind":"file","sha256":"%x","size":1,"detection":"","url":"","path":"C:/m.exe","product":"vitrine-agent/1.0.0","ruledb":1}]}`, mb.id, recTime, fresh)
		if code, ans, err := postBatch(t.Context(), hc, moscowEP.IngestURL, moscowEP.Token, mb.body); err != nil || code != http.StatusOK {
			t.Fatalf("moscow batch: %d %v %s", code, err, ans.raw)
		}
		waitVerdict(t, lbServer.URL, eps[0].Token, hex.EncodeToString(fresh[:]), 1)
		exchanged := time.Now()
		cancel()
		wg.Wait()
		procs[victim.name] = start(victim.name, addrs[victim.name])
		t.Logf("kill %d: %s held the exchange's lease; %s took it over; %d batches acknowledged, %d reads; takeover %s, exchange %s, restart %s",
			k+1, victim.name, survivor.name, len(acked), reads.Load(), took.Sub(killed).Round(time.Millisecond), exchanged.Sub(took).Round(time.Millisecond), time.Since(exchanged).Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
	}
	// What was sent without an answer is sent again, as an agent's spool
	// would.
	t.Logf("%d batches sent again", len(pending))
	for len(pending) > 0 {
		b := pending[0]
		pending = pending[1:]
		if !send(t.Context(), b) {
			t.Fatalf("batch %s: no answer with both processes up", b.id)
		}
	}
	checkScaleOutStore(t, dsn, acked)
	if reads.Load() == 0 {
		t.Fatal("no read released records")
	}
	checkReceipts(t, core.base, receipts)
	t.Logf("every read's receipt checked in the access log")
	// The commitments went on after the last kill.
	cs := commitmentTimes(t, core.base)
	if len(cs) == 0 || time.Since(cs[len(cs)-1]) > 30*time.Second {
		t.Errorf("no commitment of zurich in the last 30 s: %v", cs)
	}
}

// lastHash returns a hash the endpoint's batches carry.
func (ep *crashEndpoint) lastHash() string {
	sum := sha256.Sum256([]byte("scale#0"))
	return hex.EncodeToString(sum[:])
}

// waitVerdict waits until the region at base gives sha's prevalence as at
// least want.
func waitVerdict(t *testing.T, base, token, sha string, want int64) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+"/v1/verdicts/"+sha, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		var a reputation.Answer
		if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &a) == nil && a.Prevalence >= want {
			return
		}
	}
	t.Fatalf("zurich's verdict on %s never counted moscow's sighting (the exchange did not resume): %s", sha, last)
}

// checkScaleOutStore checks the shared store: every acknowledged batch
// once, with its records, and no batch the test did not send; every
// aggregate's prevalence equal to the endpoints that sent its hash.
func checkScaleOutStore(t *testing.T, dsn string, acked map[string]*crashBatch) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT batch_id, count, (SELECT count(*) FROM records r WHERE r.batch_pk = b.pk) FROM batches b")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		var count, recs int64
		if err := rows.Scan(&id, &count, &recs); err != nil {
			t.Fatal(err)
		}
		if stored[id] {
			t.Errorf("batch %s stored twice", id)
		}
		stored[id] = true
		if count != 8 || recs != 8 {
			t.Errorf("batch %s: %d records counted, %d stored; want 8", id, count, recs)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged batch %s is not in the store", id)
		}
	}
	// A batch stored whose answer was lost is in the store but not
	// acknowledged: every pending batch was sent again, so none is left.
	for id := range stored {
		if acked[id] == nil {
			t.Errorf("batch %s is stored but was never acknowledged", id)
		}
	}
	// Each hash's prevalence counts the endpoints that sent it, once
	// each.
	var bad int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM aggregates a WHERE a.prevalence <>
		(SELECT count(DISTINCT b.pseudonym) FROM records r JOIN batches b ON b.pk = r.batch_pk WHERE r.sha256 = a.sha256)`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Errorf("%d aggregates do not count their endpoints once each", bad)
	}
	t.Logf("%d batches acknowledged, all stored once", len(acked))
}

// checkReceipts checks that each receipt of a read that released records
// names its own entry in zurich's access log, a granted read of the
// analyst, proven in the log's witnessed checkpoint.
func checkReceipts(t *testing.T, base string, receipts map[string]bool) {
	t.Helper()
	l, entries := zurichEntries(t, base)
	for rc := range receipts {
		origin, idx, _ := strings.Cut(rc, " ")
		i, err := strconv.ParseUint(idx, 10, 64)
		if origin != l.Origin() || err != nil || i >= uint64(len(entries)) {
			t.Errorf("receipt %q names no entry of %s (%d entries)", rc, l.Origin(), len(entries))
			continue
		}
		rec, err := access.Parse(entries[i])
		if err != nil || rec.Outcome != "granted" || rec.Principal.ID != "analyst:ana" || rec.Action != "read" {
			t.Errorf("receipt %q: entry %q is not the analyst's granted read (%v)", rc, entries[i], err)
		}
	}
}

// commitmentTimes returns the times of zurich's commitments, in log order,
// from its proven access log.
func commitmentTimes(t *testing.T, base string) []time.Time {
	t.Helper()
	_, entries := zurichEntries(t, base)
	var out []time.Time
	for _, e := range entries {
		if access.EntryKind(e) == access.KindCommitment {
			c, err := access.ParseCommitment(e)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c.Time)
		}
	}
	return out
}

// zurichEntries returns zurich's access log, as discovery names it, and
// its entries, each proven in its witnessed checkpoint.
func zurichEntries(t *testing.T, base string) (*client.Log, [][]byte) {
	t.Helper()
	d := discover(t, base)
	l, err := d.OpenLog("access-zurich", []byte(d.WitnessPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := l.Entries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return l, entries
}

// writeConfig writes cfg as a deployment's configuration file at path
// (mode 0600) and returns path.
func writeConfig(t *testing.T, path string, cfg map[string]any) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
