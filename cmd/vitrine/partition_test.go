//go:build linux

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/tlog"
)

// partitionCut is a link between two hosts that TestPartitions cuts, and
// what must fail closed while it is cut.
type partitionCut struct {
	name, link string // what the link is, between which hosts
	a, b       string // the hosts, by their names in the lab
	// readsFail: every analyst's read in zurich is refused;
	// ingestFails: zurich refuses batches before the link is back;
	// newEndpointFails: a new endpoint's first batch is refused (its
	// pseudonym cannot be had); checkpointStill: the access log's
	// witnessed checkpoint does not grow.
	readsFail, ingestFails, newEndpointFails, checkpointStill bool
	// zurichPullFails: moscow's aggregates do not reach zurich;
	// moscowPullFails: zurich's do not reach moscow.
	zurichPullFails, moscowPullFails bool
}

// partitionRow is what TestPartitions saw of one cut.
type partitionRow struct {
	cut                   partitionCut
	ingest, reads         []outcome // while cut; reads with personal fields
	threat                outcome   // a read of threat fields only, while cut
	first, zFresh, mFresh outcome   // a new endpoint's first batch; zurich's and moscow's batch of a new hash
	zurichTook            bool      // zurich's verdicts counted moscow's new hash while cut
	moscowTook            bool      // and moscow's zurich's
	cpSettled, cpEnd      uint64    // the witnessed checkpoint's size 6 s into the cut, and at its end
	cpAfter               uint64    // once back, covering every entry
	resumed               []resumption
}

// resumption is how long after the link came back something that had
// failed worked again.
type resumption struct {
	what  string
	after time.Duration
}

// partitionRun is the deployment TestPartitions runs and what it has seen
// of it.
type partitionRun struct {
	t                    *testing.T
	hc                   *http.Client
	core, zurich, moscow string // base URLs
	operator, analyst    string // tokens
	eps                  []*crashEndpoint
	moscowEP             *crashEndpoint
	log                  *vclient.Log // access-zurich, read as outsiders read it
	recTime              string

	mu         sync.Mutex
	sent       int
	acked      map[string]map[string]*crashBatch // by region, by id
	pending    map[string]*crashBatch            // refused or unanswered: sent again at the end
	refused    map[string]bool                   // answered 503: must not have been stored
	unanswered map[string]bool
	receipts   map[string]bool
	maxReceipt int64
}

// cutSettle is how long into a cut a witnessing round started before it
// has ended (the logs' witness timeout, 5 s, and a margin); minCut is how
// long a cut lasts at least.
const (
	cutSettle = 6 * time.Second
	minCut    = 7 * time.Second
)

// TestPartitions runs a deployment on five hosts of its own, each a
// network namespace with its own address: the platform's process (front
// door, principals, policy; `vitrine up --config`), the logs (`vitrine
// serve --role logs`), zurich's and moscow's services (`vitrine serve
// --role region:…`, each on a PostgreSQL schema of its own) and the
// supervisor (`vitrine supervisor`: witness, custody, pseudonyms,
// monitor); the logs and the supervisor behind TLS terminators, since the
// platform reaches both over https only. It then cuts the links between
// them one at a time while endpoints send batches and an analyst reads
// records: region to platform, platform to logs, region to custody, logs
// to witness, platform to supervisor, region to region. While a link is cut, what needs it must fail closed:
// 503 with Retry-After and a reason, within a bounded time, nothing
// released; once it is back, everything must work again. At the end every
// acknowledged batch must be stored once, every read that released
// records must have its granted entry in the witnessed access log, and
// the checkpoints must cover every entry and be consistent with those
// before the cuts. VITRINE_PARTITION_TABLE=FILE writes what the run saw as
// the table of "Partitions" in docs/deploy.md.
//
// It skips, saying so, where network namespaces cannot be made (not root,
// or no CAP_NET_ADMIN and CAP_SYS_ADMIN) or PostgreSQL is absent.
func TestPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command, makes network namespaces and cuts links between them; skipped in -short mode")
	}
	began := time.Now()
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	t.Logf("the command built in %s", built.Sub(began).Round(time.Millisecond))
	dsnZ, dsnM := gotest.PostgresDSN(t), gotest.PostgresDSN(t)
	lab := newNetLab(t, "core", "logs", "zrh", "msk", "sup")
	dir := t.TempDir()
	core, logsHost, zrh, msk, sup := lab.hosts["core"], lab.hosts["logs"], lab.hosts["zrh"], lab.hosts["msk"], lab.hosts["sup"]
	base := func(h *labHost) string { return "http://" + h.addr + ":8080" }

	// PostgreSQL listens on this machine's loopback: the hosts reach it
	// through a relay on the bridge, a link no cut touches.
	pg, err := url.Parse(dsnZ)
	if err != nil {
		t.Fatal(err)
	}
	pgRelay, err := net.Listen("tcp", net.JoinHostPort(lab.gateway, "0"))
	if err != nil {
		t.Fatal(err)
	}
	relay(t, pgRelay, pg.Host)
	viaBridge := func(dsn string) string {
		u, _ := url.Parse(dsn)
		u.Host = pgRelay.Addr().String()
		q := u.Query()
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
		return u.String()
	}

	// The supervisor, behind its TLS terminator.
	supData, supURL := filepath.Join(dir, "sup"), "https://"+sup.addr+":8443"
	supProc := sup.start(t, bin, nil, 8080, "supervisor", "--data", supData, "--listen", sup.addr+":8080",
		"--name", "supervisor.test", "--public-url", supURL, "--interval", "1s")
	waitServing(t, supProc, "/v1/supervisor", http.StatusOK, 30*time.Second)
	// The logs too: the platform sends them its append token over
	// https only.
	certs := filepath.Join(dir, "fronts.pem")
	var pems []byte
	for _, f := range []string{tlsFront(t, sup, 8443, sup.addr+":8080"), tlsFront(t, logsHost, 8443, logsHost.addr+":8080")} {
		pems = append(pems, mustRead(t, f)...)
	}
	if err := os.WriteFile(certs, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSL_CERT_FILE=" + certs}
	// This test reads the logs as outsiders do, from the logs' host, over
	// https: it trusts the terminators' certificates for its duration.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pems)
	dt := http.DefaultTransport.(*http.Transport)
	saved := dt.TLSClientConfig
	dt.TLSClientConfig = &tls.Config{RootCAs: pool}
	t.Cleanup(func() { dt.TLSClientConfig = saved })

	// The platform's process joins the supervisor with the keys of the
	// logs, which run on a host of their own; the regions' processes
	// reach its custody with the member token.
	coreData, logsData := filepath.Join(dir, "core"), filepath.Join(dir, "logs")
	cfg := map[string]any{
		"logs_url": "https://" + logsHost.addr + ":8443", "logs_token": filepath.Join(logsData, "logs.token"),
		"name": "partition.test", "data": coreData, "listen": core.addr + ":8080",
		"residency": map[string]any{"version": 1, "default": "moscow", "regions": []any{
			map[string]any{"name": "zurich", "url": base(zrh), "countries": []string{"CH", "DE", "US"}},
			map[string]any{"name": "moscow", "url": base(msk)},
		}},
		"stores":           map[string]string{"zurich": viaBridge(dsnZ), "moscow": viaBridge(dsnM)},
		"external_regions": []string{"zurich", "moscow"},
		"platform_url":     base(core),
		"peer_token":       filepath.Join(coreData, "peer.token"),
		"internal_tokens":  map[string]string{"zurich": filepath.Join(coreData, "internal", "zurich.token"), "moscow": filepath.Join(coreData, "internal", "moscow.token")},
		"custody_token":    filepath.Join(coreData, "member.token"),
		"supervisor_url":   supURL,
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	// The logs take the supervisor's witness policy and serve their
	// description at once; their checkpoints wait for the supervisor to
	// list the member.
	logsProc := logsHost.start(t, bin, env, 8080, "serve", "--config", cfgFile, "--role", "logs", "--listen", logsHost.addr+":8080", "--data", logsData)
	waitServing(t, logsProc, "/v1/logs", http.StatusOK, 30*time.Second)
	coreProc := core.start(t, bin, env, 8080, "up", "--config", cfgFile)
	entry := waitFile(t, filepath.Join(coreData, "member.txt"))
	members, err := os.ReadFile(filepath.Join(supData, "members.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(supData, "members.txt"), append(members, entry...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := supProc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServing(t, coreProc, "/.well-known/vitrine.json", http.StatusOK, 60*time.Second)
	waitServing(t, logsProc, "/readyz", http.StatusOK, 30*time.Second)
	regions := map[string]*upProcess{}
	for name, h := range map[string]*labHost{"zurich": zrh, "moscow": msk} {
		regions[name] = h.start(t, bin, env, 8080, "serve", "--config", cfgFile, "--role", "region:"+name,
			"--listen", h.addr+":8080", "--data", filepath.Join(dir, name))
	}
	for _, p := range regions {
		waitServing(t, p, "/readyz", http.StatusOK, 30*time.Second)
	}
	t.Logf("five hosts up in %s: core %s, logs %s, zurich %s, moscow %s, supervisor %s", time.Since(built).Round(time.Millisecond), core.addr, logsHost.addr, zrh.addr, msk.addr, sup.addr)
	t.Cleanup(func() {
		if t.Failed() {
			for name, p := range map[string]*upProcess{"core": coreProc, "logs": logsProc, "zurich": regions["zurich"], "moscow": regions["moscow"], "supervisor": supProc} {
				t.Logf("%s's output:\n%s", name, p.out.String())
			}
		}
	})

	op, err := os.ReadFile(filepath.Join(coreData, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	r := &partitionRun{
		t: t, hc: &http.Client{Timeout: 60 * time.Second}, core: base(core), zurich: base(zrh), moscow: base(msk),
		operator: strings.TrimSpace(string(op)), recTime: time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339),
		acked: map[string]map[string]*crashBatch{"zurich": {}, "moscow": {}}, pending: map[string]*crashBatch{},
		refused: map[string]bool{}, unanswered: map[string]bool{}, receipts: map[string]bool{}, maxReceipt: -1,
	}
	for _, c := range []string{"DE", "CH"} {
		ep := registerCrashEndpoint(t, r.core, r.operator, c)
		if ep.Region != "zurich" || !strings.HasPrefix(ep.IngestURL, r.zurich) {
			t.Fatalf("%s registered in %s with ingest URL %s, want zurich at %s", c, ep.Region, ep.IngestURL, r.zurich)
		}
		r.eps = append(r.eps, ep)
	}
	r.moscowEP = registerCrashEndpoint(t, r.core, r.operator, "RU")
	var pr struct{ Token string }
	gotest.Call(t, "POST", r.core+"/v1/principals", r.operator, `{"id":"analyst:ana","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)
	r.analyst = pr.Token
	d := discover(t, r.core)
	if r.log, err = d.OpenLog("access-zurich", []byte(d.WitnessPolicy), nil); err != nil {
		t.Fatal(err)
	}

	// Before any cut, everything works: ingest (which pins custody's
	// key), reads, the exchange both ways.
	for _, b := range []*crashBatch{r.newBatch(r.eps[0], ""), r.newBatch(r.eps[1], ""), r.newBatch(r.eps[0], "zurich#warm"), r.newBatch(r.moscowEP, "moscow#warm")} {
		if o := r.ingest(t.Context(), b); o.code != http.StatusOK {
			t.Fatalf("batch %s before any cut: %d %s", b.id, o.code, o.msg)
		}
	}
	if o := r.read(t.Context(), true); o.code != http.StatusOK {
		t.Fatalf("a read before any cut: %d %s", o.code, o.msg)
	}
	for deadline := time.Now().Add(60 * time.Second); r.prevalence(r.zurich, r.eps[0].Token, "moscow#warm") < 1 || r.prevalence(r.moscow, r.moscowEP.Token, "zurich#warm") < 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the exchange does not work before any cut")
		}
	}
	t.Logf("ingest, reads and the exchange work; cutting links")

	cuts := []partitionCut{
		{name: "region ↔ platform (and the logs through it)", link: "zurich ↔ core", a: "zrh", b: "core",
			readsFail: true, ingestFails: true, newEndpointFails: true, moscowPullFails: true},
		{name: "platform ↔ logs", link: "core ↔ logs", a: "core", b: "logs", readsFail: true, checkpointStill: true},
		{name: "region ↔ custody", link: "zurich ↔ supervisor", a: "zrh", b: "sup", readsFail: true},
		{name: "logs ↔ witness", link: "logs ↔ supervisor", a: "logs", b: "sup", readsFail: true, checkpointStill: true},
		{name: "platform ↔ supervisor (pseudonyms)", link: "core ↔ supervisor", a: "core", b: "sup", newEndpointFails: true},
		{name: "region ↔ region", link: "zurich ↔ moscow", a: "zrh", b: "msk", zurichPullFails: true, moscowPullFails: true},
	}
	var rows []partitionRow
	for i, c := range cuts {
		rows = append(rows, r.runCut(lab, i, c))
		if t.Failed() {
			t.FailNow()
		}
	}

	// What was refused or left unanswered is sent again, as an agent's
	// spool would.
	r.mu.Lock()
	pending := slices.Collect(maps.Values(r.pending))
	r.mu.Unlock()
	t.Logf("%d batches sent again", len(pending))
	for _, b := range pending {
		if o := r.ingest(t.Context(), b); o.code != http.StatusOK {
			t.Fatalf("batch %s sent again with every link up: %d %s", b.id, o.code, o.msg)
		}
	}
	checkScaleOutStore(t, dsnZ, r.acked["zurich"])
	checkScaleOutStore(t, dsnM, r.acked["moscow"])
	checkReceipts(t, r.core, r.receipts)
	t.Logf("%d reads released records, each with its granted entry in the witnessed access log", len(r.receipts))

	table := partitionTable(rows)
	t.Logf("run time %s, %s of it after the build\n%s", time.Since(began).Round(time.Second), time.Since(built).Round(time.Second), table)
	if f := os.Getenv("VITRINE_PARTITION_TABLE"); f != "" {
		if err := os.WriteFile(f, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// runCut cuts c's link while endpoints send batches and the analyst
// reads, checks that what needs the link fails closed, restores the link
// and checks that everything works again.
func (r *partitionRun) runCut(lab *netLab, n int, c partitionCut) partitionRow {
	t := r.t
	ctx := t.Context()
	row := partitionRow{cut: c}
	// A new endpoint's first batch needs its pseudonym, which no process
	// has yet; zurich and moscow each store a hash the other has not seen.
	newEP := registerCrashEndpoint(t, r.core, r.operator, "DE")
	first := r.newBatch(newEP, "")
	zName, mName := fmt.Sprintf("zurich#%d", n), fmt.Sprintf("moscow#%d", n)
	zFresh, mFresh := r.newBatch(r.eps[0], zName), r.newBatch(r.moscowEP, mName)
	before, err := r.checkpoint()
	if err != nil {
		t.Fatal(err)
	}

	lab.setLink(c.a, c.b, false)
	ph := &phase{start: time.Now()} // while cut
	var probes sync.WaitGroup
	probes.Go(func() { row.first = r.ingest(ctx, first) })
	probes.Go(func() { row.zFresh = r.ingest(ctx, zFresh) })
	probes.Go(func() { row.mFresh = r.ingest(ctx, mFresh) })
	probes.Go(func() { row.threat = r.read(ctx, false) })
	// The witnessed checkpoint as outsiders see it, while cut.
	type sample struct {
		at   time.Time
		size uint64
	}
	var (
		samples  []sample
		sampling atomic.Bool
		sampled  sync.WaitGroup
	)
	sampling.Store(true)
	sampled.Go(func() {
		for sampling.Load() {
			if cp, err := r.checkpoint(); err == nil {
				samples = append(samples, sample{time.Now(), cp.Size})
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
	stop := r.load(ph, func() bool { return time.Since(ph.start) >= minCut && ph.count(&ph.reads) > 0 })
	for deadline := ph.start.Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, refused := ph.first(&ph.ingest, http.StatusServiceUnavailable)
		if time.Since(ph.start) >= minCut && ph.count(&ph.reads) > 0 && (!c.ingestFails || refused) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after 90 s, %d reads answered, ingest refused: %v", c.name, ph.count(&ph.reads), refused)
		}
	}
	stop()
	probes.Wait()
	row.zurichTook = r.prevalence(r.zurich, r.eps[0].Token, mName) > 0
	row.moscowTook = r.prevalence(r.moscow, r.moscowEP.Token, zName) > 0
	sampling.Store(false)
	sampled.Wait()
	row.ingest, row.reads = ph.ingest, ph.reads
	for _, s := range samples {
		if row.cpSettled == 0 && s.at.Sub(ph.start) >= cutSettle {
			row.cpSettled = s.size
		}
		row.cpEnd = s.size
	}
	if row.cpSettled == 0 {
		row.cpSettled = row.cpEnd
	}

	// What must fail closed did.
	for _, o := range row.reads {
		if c.readsFail && o.code == http.StatusOK {
			t.Errorf("%s: a read released records while %s was cut", c.name, c.link)
		}
	}
	if c.newEndpointFails && row.first.code != http.StatusServiceUnavailable {
		t.Errorf("%s: a new endpoint's first batch answered %d while %s was cut, want 503", c.name, row.first.code, c.link)
	}
	if c.checkpointStill && row.cpEnd != row.cpSettled {
		t.Errorf("%s: the witnessed checkpoint grew from %d to %d while %s was cut", c.name, row.cpSettled, row.cpEnd, c.link)
	}
	if c.moscowPullFails && row.zFresh.code == http.StatusOK && row.moscowTook {
		t.Errorf("%s: zurich's aggregates reached moscow while %s was cut", c.name, c.link)
	}
	if c.zurichPullFails && row.mFresh.code == http.StatusOK && row.zurichTook {
		t.Errorf("%s: moscow's aggregates reached zurich while %s was cut", c.name, c.link)
	}
	t.Logf("%s (%s) cut for %s: %d batches, %d reads", c.name, c.link, time.Since(ph.start).Round(time.Millisecond), len(row.ingest), len(row.reads))

	// Back: everything works again.
	lab.setLink(c.a, c.b, true)
	healed := time.Now()
	back := &phase{start: healed}
	stop = r.load(back, func() bool { _, ok := back.first(&back.reads, http.StatusOK); return ok })
	var (
		rmu     sync.Mutex
		resumed = map[string]time.Duration{}
	)
	done := func(what string) {
		rmu.Lock()
		defer rmu.Unlock()
		if _, ok := resumed[what]; !ok {
			resumed[what] = time.Since(healed)
		}
	}
	var want []string
	failed := func(list []outcome) bool {
		return slices.ContainsFunc(list, func(o outcome) bool { return o.code != http.StatusOK })
	}
	if failed(row.ingest) {
		want = append(want, "ingest")
	}
	if failed(row.reads) {
		want = append(want, "reads")
	}
	// Batches refused while cut go again until they are taken.
	for _, p := range []struct {
		what string
		b    *crashBatch
	}{{"new endpoint", first}, {"zurich's new hash", zFresh}, {"moscow's new hash", mFresh}} {
		what, b := p.what, p.b
		if r.isAcked(b) {
			continue
		}
		want = append(want, what)
		probes.Go(func() {
			for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if r.ingest(ctx, b).code == http.StatusOK {
					done(what)
					return
				}
			}
		})
	}
	if !row.zurichTook {
		want = append(want, "zurich's verdicts")
	}
	if !row.moscowTook {
		want = append(want, "moscow's verdicts")
	}
	if row.cpEnd == row.cpSettled {
		want = append(want, "checkpoint")
	}
	var after *tlog.Checkpoint
	for deadline := healed.Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if at, ok := back.first(&back.ingest, http.StatusOK); ok {
			rmu.Lock()
			if _, ok := resumed["ingest"]; !ok {
				resumed["ingest"] = at.Sub(healed)
			}
			rmu.Unlock()
		}
		if at, ok := back.first(&back.reads, http.StatusOK); ok {
			rmu.Lock()
			if _, ok := resumed["reads"]; !ok {
				resumed["reads"] = at.Sub(healed)
			}
			rmu.Unlock()
		}
		if r.prevalence(r.zurich, r.eps[0].Token, mName) > 0 {
			done("zurich's verdicts")
		}
		if r.prevalence(r.moscow, r.moscowEP.Token, zName) > 0 {
			done("moscow's verdicts")
		}
		if cp, err := r.checkpoint(); err == nil && cp.Size > row.cpEnd {
			r.mu.Lock()
			covers := int64(cp.Size) > r.maxReceipt
			r.mu.Unlock()
			if covers {
				after = cp
				done("checkpoint")
			}
		}
		rmu.Lock()
		var missing []string
		for _, w := range append(slices.Clone(want), "ingest", "reads", "zurich's verdicts", "moscow's verdicts", "checkpoint") {
			if _, ok := resumed[w]; !ok && !slices.Contains(missing, w) {
				missing = append(missing, w)
			}
		}
		rmu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: 90 s after %s came back, these have not resumed: %s", c.name, c.link, strings.Join(missing, ", "))
		}
	}
	stop()
	probes.Wait()
	// The checkpoint that covers every entry acknowledged so far verifies
	// (r.checkpoint checked the log's signature and the witness policy)
	// and is consistent with the one before the cut.
	if err := r.log.Consistent(ctx, before.Raw, after); err != nil {
		t.Errorf("%s: the checkpoint after the cut is not consistent with the one before: %v", c.name, err)
	}
	row.cpAfter = after.Size
	for _, w := range want {
		row.resumed = append(row.resumed, resumption{w, resumed[w]})
	}
	t.Logf("%s (%s) back: everything resumed within %s", c.name, c.link, time.Since(healed).Round(time.Millisecond))
	return row
}
