package platform

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestInternalRoutes checks the routes the processes of an external
// region use: the peer token is required, each refuses bad input with a
// 4xx and changes nothing, and each answers what the platform holds.
func TestInternalRoutes(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	defer stop(t, p)
	b, err := os.ReadFile(filepath.Join(data, "internal", "zurich.token"))
	if err != nil {
		t.Fatal(err)
	}
	peer := strings.TrimSpace(string(b))
	if b, err := os.ReadFile(filepath.Join(data, "peer.token")); err != nil || strings.TrimSpace(string(b)) == peer {
		t.Fatalf("the peer token is zurich's internal token, or missing: %v", err)
	}
	base := p.URL() + internalPrefix

	for _, r := range []struct{ method, path string }{
		{"POST", "logs/access-zurich/append"}, {"GET", "logs/access-zurich/prove?index=0"}, {"POST", "principals/authenticate"},
		{"GET", "endpoints/revoked"}, {"POST", "pseudonyms"}, {"GET", "policy"},
	} {
		for _, tok := range []string{"", p.OperatorToken(), p.regions.peerToken} {
			if code, _ := httpDo(t, r.method, base+r.path, tok, []byte(`{}`)); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", r.method, r.path, tok, code)
			}
		}
	}

	// Appends: to access logs only, admitted like the gateway's.
	for path, want := range map[string]int{"logs/release/append": 404, "logs/access-nowhere/append": 404, "logs/access-moscow/append": 403, "logs/access-zurich/append": 400} {
		if code, body := httpDo(t, "POST", base+path, peer, nil); code != want {
			t.Errorf("POST %s with no entry: %d %s, want %d", path, code, body, want)
		}
	}
	rec := &access.Record{Time: time.Now().UTC().Truncate(time.Millisecond), Region: "zurich", Principal: access.Principal{ID: "analyst:ghost", Role: "analyst", Location: "CH"},
		Action: "read", Outcome: "granted", Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1"},
		Resource: access.Resource{Dataset: "telemetry", Query: "sha256=" + strings.Repeat("a", 64), Digest: access.Digest(nil)}, Request: "req-1"}
	entry, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if code, body := httpDo(t, "POST", base+"logs/access-zurich/append", peer, entry); code != http.StatusForbidden {
		t.Errorf("a granted record of no principal: %d %s, want 403", code, body)
	}
	rec.Outcome, rec.Action, rec.Reason = "denied", "denied", "read: bad credential"
	if entry, err = rec.Marshal(); err != nil {
		t.Fatal(err)
	}
	code, body := httpDo(t, "POST", base+"logs/access-zurich/append", peer, entry)
	var ans struct{ Index uint64 }
	if code != 200 || json.Unmarshal(body, &ans) != nil {
		t.Fatalf("a denied record: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"logs/access-zurich/prove?index=x", peer, nil); code != 400 {
		t.Errorf("prove ?index=x: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", base+"logs/access-zurich/prove?index="+strconv.FormatUint(ans.Index, 10), peer, nil)
	proof, err := tlog.ParseProof(body)
	if code != 200 || err != nil {
		t.Fatalf("prove: %d %v %s", code, err, body)
	}
	al := p.Log("access-zurich")
	if _, err := proof.Verify(tlog.LeafHash(entry), al.Verifier(), al.Policy()); err != nil {
		t.Fatalf("the proof of the denied record: %v", err)
	}
	// The witnessed log holds the denied record, and not the refused
	// granted one.
	cl, err := client.NewLogFetcher(al.Reader(), al.VKey(), al.Policy())
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := cl.Entries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if strings.Contains(string(e), "analyst:ghost") && uint64(i) != ans.Index {
			t.Errorf("entry %d is the refused record of analyst:ghost: %s", i, e)
		}
	}

	// Principals.
	code, body = httpDo(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), []byte(`{"id":"analyst:ana","role":"analyst","location":"CH","regions":["zurich"]}`))
	var pr struct{ Token string }
	if code != 201 || json.Unmarshal(body, &pr) != nil {
		t.Fatalf("creating a principal: %d %s", code, body)
	}
	for doc, want := range map[string]int{`{"token":"` + pr.Token + `"}`: 200, `{"token":"vp1.nope"}`: 401, `{"tok":"x"}`: 400, `[`: 400} {
		code, body := httpDo(t, "POST", base+"principals/authenticate", peer, []byte(doc))
		if code != want {
			t.Errorf("authenticate %s: %d %s, want %d", doc, code, body, want)
		}
		if want == 200 && !strings.Contains(string(body), `"ID": "analyst:ana"`) {
			t.Errorf("authenticate: %s", body)
		}
	}

	// Revocations and pseudonyms.
	ep := register(t, p, "DE")
	if code, body := httpDo(t, "DELETE", p.URL()+"/v1/endpoints/"+ep.ID, p.OperatorToken(), nil); code != 200 {
		t.Fatalf("revoking: %d %s", code, body)
	}
	m := endpoint.Mirror()
	if code, body := httpDo(t, "GET", base+"endpoints/revoked", peer, nil); code != 200 || m.Replace(body) != nil || !m.Revoked(ep.ID) {
		t.Errorf("revocations: %d %s", code, body)
	}
	for doc, want := range map[string]int{`{"ids":["` + ep.ID + `"]}`: 200, `{"ids":[]}`: 400, `{"ids":["x"]}`: 400, `{}`: 400} {
		code, body := httpDo(t, "POST", base+"pseudonyms", peer, []byte(doc))
		if code != want {
			t.Errorf("pseudonyms %s: %d %s, want %d", doc, code, body, want)
		}
		if want == 200 && !strings.Contains(string(body), `"hmac-sha256:`) {
			t.Errorf("pseudonyms: %s", body)
		}
	}

	// The policy, signed with the policy key of discovery.
	code, body = httpDo(t, "GET", base+"policy", peer, nil)
	v, err := note.NewVerifier(p.Discovery().PolicyKey)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := residency.Open(body, v)
	if code != 200 || err != nil || pol.Region("zurich") == nil {
		t.Fatalf("policy: %d %v %s", code, err, body)
	}
}

// TestInternalAppend: a region's process appends through the platform what
// the platform's own regions append to their logs. The record of its
// aggregates crossing to a peer region, granted to the peer's processing
// principal, which the registry of principals does not know, is taken, as
// it is from the platform's own regions (it was once refused, and no
// external region's aggregates ever reached a peer); a granted record of
// any other principal the registry does not know is refused, as is a
// "crossing" to a region the policy does not have or from another region.
func TestInternalAppend(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	record := func(region, id, role, action, dataset string) []byte {
		t.Helper()
		rec := &access.Record{
			Time: time.Now(), Region: region,
			Principal:     access.Principal{ID: id, Role: role, Location: "CH"},
			Action:        action,
			Resource:      access.Resource{Dataset: dataset, Query: "changes=1-2 to=moscow", Count: 2, Digest: access.Digest(nil)},
			Justification: access.Justification{Code: "AUTOMATED_PROCESSING", Detail: "aggregates for the verdicts of region moscow"},
			Subjects:      []string{}, Request: "aggregates-moscow-0-2", Outcome: "granted",
		}
		b, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		entry []byte
		want  int
	}{
		{"crossing to moscow", record("zurich", "processor:region-moscow", "processor", "process", "aggregates"), http.StatusOK},
		{"crossing to a region the policy lacks", record("zurich", "processor:region-atlantis", "processor", "process", "aggregates"), http.StatusForbidden},
		{"crossing of another region", record("moscow", "processor:region-moscow", "processor", "process", "aggregates"), http.StatusForbidden},
		{"processing of another dataset", record("zurich", "processor:region-moscow", "processor", "process", "telemetry"), http.StatusForbidden},
		{"read by an unknown analyst", record("zurich", "analyst:nobody", "analyst", "read", "telemetry"), http.StatusForbidden},
	} {
		code, body := httpDo(t, "POST", p.URL()+internalPrefix+"logs/access-zurich/append", p.regions.internalTokens["zurich"], tc.entry)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
			continue
		}
		var ans struct{ Index *uint64 }
		if code == http.StatusOK && (json.Unmarshal(body, &ans) != nil || ans.Index == nil) {
			t.Errorf("%s: answer %s, want the entry's index", tc.name, body)
		}
	}
}

// TestInternalAppendRefuses: the internal append takes only what a
// region's process appends to its own log — its gateway's records and
// denied summaries, its commitments, its crossings — and refuses, with a
// 4xx and nothing appended, entries naming another region or sent to another
// region's log (with this region's token), grants (the registry's own), relocation records, a
// "crossing" that lists data keys (custody would unwrap them on its
// proof) and entries that are none of these.
func TestInternalAppendRefuses(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	now := time.Now().UTC().Truncate(time.Millisecond)
	marshal := func(m interface{ Marshal() ([]byte, error) }) []byte {
		t.Helper()
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	denied := func(region string) *access.Record {
		return &access.Record{Time: now, Region: region, Principal: access.Principal{ID: "analyst:ghost", Role: "analyst", Location: "CH"},
			Action: "denied", Outcome: "denied", Reason: "read: bad credential", Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1"},
			Resource: access.Resource{Dataset: "telemetry", Query: "sha256=" + strings.Repeat("a", 64), Digest: access.Digest(nil)}, Request: "req-1"}
	}
	crossing := &access.Record{Time: now, Region: "zurich", Principal: access.Principal{ID: "processor:region-moscow", Role: "processor", Location: "CH"},
		Action: "process", Resource: access.Resource{Dataset: "aggregates", Query: "changes=1-2 to=moscow", Digest: access.Digest(nil)},
		Justification: access.Justification{Code: "AUTOMATED_PROCESSING", Detail: "aggregates"}, Subjects: []string{}, Request: "aggregates-moscow-0-2",
		Outcome: "granted", Keys: []string{"sha256:" + strings.Repeat("b", 64)}}
	relocation := denied("zurich")
	relocation.Justification = access.Justification{Code: "RELOCATION", Detail: "relocation x"}
	for _, tc := range []struct {
		name  string
		log   string
		entry []byte
		want  int
	}{
		{"a denied record of zurich", "access-zurich", marshal(denied("zurich")), http.StatusOK},
		{"a denied record of zurich in moscow's log", "access-moscow", marshal(denied("zurich")), http.StatusForbidden},
		{"a denied record of moscow in zurich's log", "access-zurich", marshal(denied("moscow")), http.StatusForbidden},
		{"a commitment of moscow in zurich's log", "access-zurich", marshal(&access.Commitment{Time: now, Region: "moscow", Dataset: "telemetry", Root: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}), http.StatusForbidden},
		{"a grant", "access-zurich", []byte(`{"v":1,"kind":"grant","time":"2026-01-01T00:00:00.000Z"}`), http.StatusForbidden},
		{"a relocation record", "access-zurich", marshal(relocation), http.StatusForbidden},
		{"a crossing that lists a data key", "access-zurich", marshal(crossing), http.StatusForbidden},
		{"not an entry", "access-zurich", []byte("hello"), http.StatusBadRequest},
		{"a malformed access record", "access-zurich", []byte(`{"v":1,"kind":"access","x":1}`), http.StatusBadRequest},
	} {
		// What was appended shows in the index of the next entry.
		good := func() uint64 {
			t.Helper()
			code, body := httpDo(t, "POST", p.URL()+internalPrefix+"logs/"+tc.log+"/append", p.regions.internalTokens[strings.TrimPrefix(tc.log, "access-")], marshal(denied(strings.TrimPrefix(tc.log, "access-"))))
			var ans struct{ Index uint64 }
			if code != 200 || json.Unmarshal(body, &ans) != nil {
				t.Fatalf("a denied record: %d %s", code, body)
			}
			return ans.Index
		}
		before := good()
		code, body := httpDo(t, "POST", p.URL()+internalPrefix+"logs/"+tc.log+"/append", p.regions.internalTokens["zurich"], tc.entry)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
		if after := good(); tc.want != http.StatusOK && after != before+1 {
			t.Errorf("%s: %d entries were appended", tc.name, after-before-1)
		}
	}
}
