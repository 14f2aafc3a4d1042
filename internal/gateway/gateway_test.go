package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/tlog"
)

const justified = "CUSTOMER_INITIATED_SUPPORT; case 1234"

func TestReadReleasesDataWithReceiptAndProof(t *testing.T) {
	e := newEnv(t, "")
	a, b := hash("a"), hash("b")
	ep1 := e.ingest("CH", rec(a, 0, "C:/Users/anna/eicar.com"), rec(b, time.Minute, "C:/Users/anna/b.exe"))
	ep2 := e.ingest("DE", rec(a, time.Hour, "/home/bert/eicar.com"))

	r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified)
	if r.status != http.StatusOK || !r.hasRcpt {
		t.Fatalf("read: %d %s (receipt %v)", r.status, r.body, r.hasRcpt)
	}
	got := r.answer.Records
	if len(got) != 2 || r.answer.Count != 2 || r.answer.More {
		t.Fatalf("read %d records (count %d, more %v), want 2: %s", len(got), r.answer.Count, r.answer.More, r.body)
	}
	for i, want := range []struct{ ep, path, country string }{{ep1, "C:/Users/anna/eicar.com", "CH"}, {ep2, "/home/bert/eicar.com", "DE"}} {
		g := got[i]
		if g.Endpoint != want.ep || g.Path != want.path || g.URL != "https://example.com/"+want.path || g.Country != want.country || g.SHA256 != a || g.Detection != "EICAR-Test-File" {
			t.Errorf("record %d = %+v, want endpoint %s path %s", i, g, want.ep, want.path)
		}
	}
	if r.answer.Receipt.Index != r.receipt || r.answer.Receipt.Log != origin {
		t.Errorf("answer receipt %+v, header index %d", r.answer.Receipt, r.receipt)
	}

	// The log holds the access record the answer was released under.
	lr, raw := e.entry(r.receipt)
	ids := []int64{got[0].ID, got[1].ID}
	wantSubjects := []string{endpoint.Pseudonym(e.pkey, ep1), endpoint.Pseudonym(e.pkey, ep2)}
	slices.Sort(wantSubjects)
	if lr.Action != "read" || lr.Outcome != "granted" || lr.Principal.ID != "analyst:jdoe" || lr.Principal.Location != "CH" ||
		lr.Resource.Count != 2 || lr.Resource.Digest != access.Digest(ids) || lr.Resource.Digest != r.answer.Digest ||
		lr.Resource.Query != "sha256="+a+"&limit=100" || lr.Justification.Code != "CUSTOMER_INITIATED_SUPPORT" || lr.Justification.Detail != "case 1234" ||
		!slices.Equal(lr.Subjects, wantSubjects) || len(lr.Keys) != 2 || lr.Region != testRegion {
		t.Errorf("access record = %s", raw)
	}
	if bytes.Contains(raw, []byte(ep1)) || bytes.Contains(raw, []byte("anna")) {
		t.Errorf("access record names the endpoint or a path in clear: %s", raw)
	}

	// The receipt's proof, fetched from the gateway, verifies for the
	// entry under the log's key and the witness policy.
	pr := e.do("GET", "/"+r.answer.Receipt.Proof, "", "")
	if pr.status != http.StatusOK {
		t.Fatalf("proof: %d %s", pr.status, pr.body)
	}
	proof, err := tlog.ParseProof(pr.body)
	if err != nil {
		t.Fatal(err)
	}
	if proof.Index != r.receipt {
		t.Errorf("proof of index %d, want %d", proof.Index, r.receipt)
	}
	if _, err := proof.Verify(tlog.LeafHash(raw), e.log.Verifier(), e.policy); err != nil {
		t.Errorf("proof does not verify: %v", err)
	}
	if _, err := proof.Verify(tlog.LeafHash(append(raw[:len(raw):len(raw)], ' ')), e.log.Verifier(), e.policy); err == nil {
		t.Error("proof verifies for another entry")
	}

	// Custody counted the unwrap against that entry, and nothing else.
	counts, err := e.custody.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if c := counts[testRegion]; len(c) != 1 || c[r.receipt] != 2 {
		t.Errorf("custody counts = %v, want 2 keys at index %d", counts, r.receipt)
	}
}

func TestReadByEndpointPagesAndTimeRange(t *testing.T) {
	e := newEnv(t, "")
	a, b, c := hash("a"), hash("b"), hash("c")
	ep := e.ingest("CH", rec(a, 0, "p1"), rec(b, time.Minute, "p2"))
	e.ingestAs(ep, "CH", "b2", rec(c, time.Hour, "p3"))
	e.ingest("CH", rec(a, 0, "other"))

	var paths []string
	after := ""
	for page := 0; ; page++ {
		r := e.do("GET", "/v1/records?endpoint="+ep+"&limit=2"+after, "supervisor:sv", "SUPERVISOR_REVIEW; quarterly review")
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		for _, g := range r.answer.Records {
			if g.Endpoint != ep {
				t.Errorf("record of %s in a query for %s", g.Endpoint, ep)
			}
			paths = append(paths, g.Path)
		}
		lr, raw := e.entry(r.receipt)
		if strings.Contains(lr.Resource.Query, ep) || !strings.Contains(lr.Resource.Query, "endpoint="+endpoint.Pseudonym(e.pkey, ep)) {
			t.Errorf("logged query %q does not name the endpoint by its pseudonym only", lr.Resource.Query)
		}
		if bytes.Contains(raw, []byte(ep)) {
			t.Errorf("access record holds the endpoint id: %s", raw)
		}
		if !r.answer.More {
			break
		}
		if page > 3 {
			t.Fatal("paging does not end")
		}
		after = fmt.Sprintf("&after=%d", r.answer.Next)
	}
	if fmt.Sprint(paths) != "[p1 p2 p3]" {
		t.Errorf("pages gave %v, want [p1 p2 p3]", paths)
	}

	r := e.do("GET", "/v1/records?endpoint="+ep+"&from="+t0.Add(time.Minute).Format(time.RFC3339)+"&to="+t0.Add(time.Hour).Format(time.RFC3339),
		"analyst:jdoe", justified)
	if r.status != http.StatusOK || len(r.answer.Records) != 1 || r.answer.Records[0].Path != "p2" {
		t.Errorf("time range: %d %s", r.status, r.body)
	}
}

func TestDeniedAttemptsAreLogged(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	e.ingest("CH", rec(a, 0, "secret-path"))
	for _, tc := range []struct {
		name, method, path, principal, justification string
		status                                       int
		reason, says                                 string
	}{
		{"no credential", "GET", "/v1/records?sha256=" + a, "", justified, 401, "read: no credential", "bearer token"},
		{"unknown token", "GET", "/v1/records?sha256=" + a, "vp1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", justified, 401, "read: bad credential", "bearer token"},
		{"wrong role", "GET", "/v1/records?sha256=" + a, "auditor:ann", justified, 403, "read: role auditor may not read records", "may not read"},
		{"operator reads", "GET", "/v1/records/export?sha256=" + a, "operator:ops", justified, 403, "export: role operator may not export records", "may not export"},
		{"other region", "GET", "/v1/records?sha256=" + a, "analyst:ivan", justified, 403, "read: principal may not act in region zurich", "region zurich"},
		{"no justification", "GET", "/v1/records?sha256=" + a, "analyst:jdoe", "", 400, "read: no justification", "CUSTOMER_INITIATED_SUPPORT, CUSTOMER_INITIATED_ACCESS"},
		{"unknown code", "GET", "/v1/records?sha256=" + a, "analyst:jdoe", "CURIOSITY; just looking", 400, "read: bad justification", "unknown code"},
		{"bad query", "GET", "/v1/records?sha256=" + a + "&limit=5000", "analyst:jdoe", justified, 400, "read: bad query", "limit"},
		{"no selector", "GET", "/v1/records?limit=5", "analyst:jdoe", justified, 400, "read: bad query", "sha256, an endpoint"},
		{"delete by analyst of another region", "DELETE", "/v1/records?sha256=" + a, "analyst:ivan", justified, 403, "delete: principal may not act in region zurich", "region zurich"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.principal, tc.justification)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.says) {
				t.Fatalf("%d %s, want %d saying %q", r.status, r.body, tc.status, tc.says)
			}
			if bytes.Contains(r.body, []byte("secret-path")) {
				t.Fatalf("a denied answer released data: %s", r.body)
			}
			if !r.hasRcpt {
				t.Fatal("no receipt: the denied attempt was not logged")
			}
			lr, raw := e.entry(r.receipt)
			if lr.Action != "denied" || lr.Outcome != "denied" || lr.Reason != tc.reason || lr.Resource.Count != 0 || len(lr.Keys) != 0 {
				t.Errorf("logged %s, want a denied record with reason %q", raw, tc.reason)
			}
			if tc.principal == "analyst:ivan" && (lr.Principal.ID != "analyst:ivan" || lr.Principal.Location != "RU") {
				t.Errorf("denied record names principal %+v", lr.Principal)
			}
		})
	}
	// Nothing was unwrapped for any of them.
	if counts, err := e.custody.Counts(); err != nil || len(counts[testRegion]) != 0 {
		t.Errorf("custody counts after denied attempts: %v, %v", counts, err)
	}
	// The records are all still there.
	if n, err := e.store.CountRecords(t.Context()); err != nil || n != 1 {
		t.Errorf("store holds %d records (%v), want 1", n, err)
	}
}

func TestExport(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	ep := e.ingest("CH", rec(a, 0, "p1"), rec(a, time.Second, "p2"), rec(a, 2*time.Second, "p3"))
	r := e.do("GET", "/v1/records/export?endpoint="+ep+"&limit=2", "analyst:jdoe", "THIRD_PARTY_DATA_REQUEST; court order 77")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("export: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var ids []int64
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		var g Record
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		ids, paths = append(ids, g.ID), append(paths, g.Path)
	}
	if fmt.Sprint(paths) != "[p1 p2]" || r.header.Get(CountHeader) != "2" || r.header.Get(NextHeader) != fmt.Sprint(ids[1]) {
		t.Errorf("export gave %v, count %s, next %s", paths, r.header.Get(CountHeader), r.header.Get(NextHeader))
	}
	lr, _ := e.entry(r.receipt)
	if lr.Action != "export" || lr.Resource.Digest != access.Digest(ids) || r.header.Get(DigestHeader) != lr.Resource.Digest {
		t.Errorf("export logged %+v; digest header %s, ids %v", lr, r.header.Get(DigestHeader), ids)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	ep := e.ingest("CH", rec(a, 0, "p1"), rec(a, time.Second, "p2"))
	keep := e.ingest("CH", rec(a, 0, "keep"))
	r := e.do("DELETE", "/v1/records?endpoint="+ep, "operator:ops", "CUSTOMER_INITIATED_ACCESS; erasure request 9")
	if r.status != http.StatusOK || r.answer.Deleted != 2 || r.answer.Count != 2 || len(r.answer.Records) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	lr, raw := e.entry(r.receipt)
	if lr.Action != "delete" || lr.Resource.Count != 2 || len(lr.Keys) != 0 || !slices.Equal(lr.Subjects, []string{endpoint.Pseudonym(e.pkey, ep)}) {
		t.Errorf("delete logged %s", raw)
	}
	r = e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified)
	if r.status != http.StatusOK || len(r.answer.Records) != 1 || r.answer.Records[0].Endpoint != keep {
		t.Errorf("after delete, read %d %s", r.status, r.body)
	}
	// A delete releases no personal data, so custody was asked once: for
	// the read.
	if counts, _ := e.custody.Counts(); len(counts[testRegion]) != 1 {
		t.Errorf("custody counts %v", counts)
	}
}

// An answer whose subjects would not fit one access record is cut short
// and continues on the next page: every released record is logged.
func TestLargeAnswersSplitAcrossEntries(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	for i := range 900 {
		e.ingestAs(fmt.Sprintf("ep_%026d", i), "CH", "b", rec(a, time.Duration(i)*time.Millisecond, fmt.Sprint("p", i)))
	}
	seen := map[int64]bool{}
	after := ""
	for page := 0; page < 10; page++ {
		r := e.do("GET", "/v1/records?sha256="+a+"&limit=1000"+after, "analyst:jdoe", justified)
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		lr, raw := e.entry(r.receipt)
		if len(raw) > access.MaxSize || int(lr.Resource.Count) != len(r.answer.Records) || len(lr.Subjects) != len(r.answer.Records) {
			t.Fatalf("entry of %d bytes, count %d, %d subjects for %d records", len(raw), lr.Resource.Count, len(lr.Subjects), len(r.answer.Records))
		}
		for _, g := range r.answer.Records {
			seen[g.ID] = true
		}
		if !r.answer.More {
			if page == 0 {
				t.Error("900 subjects and keys fit in one access record?")
			}
			break
		}
		after = fmt.Sprintf("&after=%d", r.answer.Next)
	}
	if len(seen) != 900 {
		t.Errorf("pages released %d records, want 900", len(seen))
	}
}

// Fail closed: when custody is stopped, the answer is 503 and no data.
func TestCustodyStoppedFailsClosed(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	e.ingest("CH", rec(a, 0, "secret-path"))
	e.custodySrv.Close()
	r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified)
	wantUnavailable(t, r, "custody")

	// The threat halves alone need no data key: they are released, with
	// the access logged, and custody is not asked.
	r = e.do("GET", "/v1/records?sha256="+a+"&personal=false", "analyst:jdoe", justified)
	if r.status != http.StatusOK || len(r.answer.Records) != 1 || bytes.Contains(r.body, []byte("secret-path")) || r.answer.Records[0].Endpoint != "" {
		t.Fatalf("threat-only read: %d %s", r.status, r.body)
	}
	lr, raw := e.entry(r.receipt)
	if lr.Action != "read" || len(lr.Keys) != 0 || lr.Resource.Count != 1 || !strings.Contains(lr.Resource.Query, "&personal=false") {
		t.Errorf("threat-only read logged as %s", raw)
	}
}

// Fail closed: when the witness cannot be reached no checkpoint covers the
// access record, custody unwraps nothing, and the answer is 503.
func TestWitnessUnreachableFailsClosed(t *testing.T) {
	e := newEnv(t, "")
	a := hash("a")
	e.ingest("CH", rec(a, 0, "secret-path"))
	e.witnessSrv.Close()
	start := time.Now()
	r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified)
	wantUnavailable(t, r, "witness")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the read took %v to fail", d)
	}
	if counts, _ := e.custody.Counts(); len(counts[testRegion]) != 0 {
		t.Errorf("custody unwrapped without a witnessed checkpoint: %v", counts)
	}
}

// Fail closed: a store that cannot answer gives 503.
func TestStoreClosedFailsClosed(t *testing.T) {
	e := newEnv(t, "")
	e.store.Close()
	wantUnavailable(t, e.do("GET", "/v1/records?sha256="+hash("a"), "analyst:jdoe", justified), "store")
}

// unreachablePrincipals is the registry of principals as a region's own
// process reaches it, through the platform: unreachable on demand.
type unreachablePrincipals struct {
	Principals
	down atomic.Bool
}

func (p *unreachablePrincipals) Authenticate(r *http.Request) (*principal.Principal, error) {
	if p.down.Load() {
		return nil, fmt.Errorf("authenticating principal: %w", fault.Mark(fault.ErrUnavailable, errors.New("injected: the platform cannot be reached")))
	}
	return p.Principals.Authenticate(r)
}

// Fail closed: when the registry of principals cannot be asked, the answer
// is 503, and nothing is denied or logged: the caller's credential may be
// good. (It was taken for a bad one: answered 401 and logged as a denied
// attempt, or, with the log out of reach too, 503 only once the denied
// record's append had timed out as well.)
func TestRegistryUnreachableFailsClosed(t *testing.T) {
	reg := &unreachablePrincipals{}
	e := newEnvWith(t, "", func(c *Config) { reg.Principals, c.Principals = c.Principals, reg })
	a := hash("a")
	e.ingest("CH", rec(a, 0, "secret-path"))
	reg.down.Store(true)
	wantUnavailable(t, e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified), "registry of principals")
	if entries, _ := e.glog.appended(); len(entries) != 0 {
		t.Errorf("an attempt whose principal could not be authenticated was logged: %q", entries)
	}
	reg.down.Store(false)
	if r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified); r.status != http.StatusOK {
		t.Errorf("once the registry answers again: %d %s", r.status, r.body)
	}
}

// Fail closed: when the access log's disk is full, the log cannot take
// the access record: 503 and no data, for granted and denied attempts
// alike.
func TestFullLogDiskFailsClosed(t *testing.T) {
	dir := mountTinyTmpfs(t)
	e := newEnv(t, dir)
	a := hash("a")
	e.ingest("CH", rec(a, 0, "secret-path"))
	if r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified); r.status != http.StatusOK {
		t.Fatalf("before the disk is full: %d %s", r.status, r.body)
	}
	fill(t, dir)
	// The journal's last page may still have room for a few entries,
	// which are then durable; tiles and checkpoints cannot be written, so
	// nothing is released meanwhile. Once the page is full the log
	// refuses every entry.
	for i := 0; ; i++ {
		r := e.do("GET", "/v1/records?sha256="+a, "auditor:ann", justified)
		if r.status == http.StatusServiceUnavailable {
			wantUnavailable(t, r, "access log")
			break
		}
		if r.status != http.StatusForbidden || !r.hasRcpt {
			t.Fatalf("denied attempt %d on a full disk: %d %s", i, r.status, r.body)
		}
		if i == 100 {
			t.Fatal("the access log still takes entries on a full disk")
		}
	}
	wantUnavailable(t, e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified), "access log")

	// Attempts without a credential: those the gateway would log one by
	// one get 503; those it counts get 401 until a summary fails (the
	// journal's last page may still take one as small as a summary), then
	// 503, and stay counted.
	for round := 0; ; round++ {
		r := e.do("GET", "/v1/records?sha256="+a, "", justified)
		switch {
		case r.status == http.StatusServiceUnavailable:
			wantUnavailable(t, r, "access log")
		case r.status == http.StatusUnauthorized && r.header.Get(CountedHeader) == origin:
			if e.gw.Flush(t.Context()) != nil {
				wantUnavailable(t, e.do("GET", "/v1/records?sha256="+a, "", justified), "access log")
				if n := e.gw.Pending(); n != 2 {
					t.Errorf("Pending = %d after the failed summary, want the 2 attempts counted", n)
				}
				return
			}
		default:
			t.Fatalf("attempt %d without a credential on a full disk: %d %v %s", round, r.status, r.header, r.body)
		}
		if round == 100 {
			t.Fatal("denied summaries still go into the log on a full disk")
		}
	}
}

func wantUnavailable(t *testing.T, r *response, says string) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), says) || r.header.Get("Retry-After") == "" {
		t.Errorf("answer %d %s, want 503 naming %q with Retry-After", r.status, r.body, says)
	}
	if bytes.Contains(r.body, []byte("secret-path")) || len(r.answer.Records) > 0 {
		t.Errorf("a failed access released data: %s", r.body)
	}
}

// mountTinyTmpfs mounts a 4 MiB tmpfs for the test and returns its path.
func mountTinyTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := execCommand("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("mounting a tmpfs needs root: %v %s", err, out)
		}
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := execCommand("umount", "-l", dir); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	return dir
}

// fill writes to dir until its file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	_ = f.Sync()
	if _, err := io.WriteString(f, "x"); err == nil {
		t.Fatal("the tmpfs is not full")
	}
}
