package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/logserver"
)

// accessEntries reads entries 0 to through (inclusive) of the named log
// once a witnessed checkpoint covers them.
func accessEntries(t *testing.T, l *logserver.Log, through uint64) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cp, err := l.AwaitWitnessed(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for bi := uint64(0); bi*256 < cp.Size; bi++ {
		b, err := client.GetEntryBundle(ctx, l.Reader().ReadEntryBundle, bi, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Entries...)
	}
	return out[:through+1]
}

// createPrincipal creates a principal over HTTP and returns its token.
func createPrincipal(t *testing.T, p *Platform, body string) string {
	t.Helper()
	code, b := postJSON(t, p.URL()+"/v1/principals", p.OperatorToken(), []byte(body))
	if code != http.StatusCreated {
		t.Fatalf("creating principal %s: %d %s", body, code, b)
	}
	var r struct{ Token string }
	if err := json.Unmarshal(b, &r); err != nil || r.Token == "" {
		t.Fatalf("creating principal: %s", b)
	}
	return r.Token
}

// readRecords reads zurich's records of sha with token and a
// justification, and returns the status, the body and the receipt's index
// (-1 without a receipt).
func readRecords(t *testing.T, p *Platform, token, sha string) (int, []byte, int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", p.URL()+"/regions/zurich/v1/records?sha256="+sha, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(access.Header, "CUSTOMER_INITIATED_SUPPORT; case 1234")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	index := int64(-1)
	if h := resp.Header.Get(access.ReceiptHeader); h != "" {
		_, idx, _ := strings.Cut(h, " ")
		if index, err = strconv.ParseInt(idx, 10, 64); err != nil {
			t.Fatalf("receipt %q", h)
		}
	}
	return resp.StatusCode, b, index
}

// TestRevokedPrincipalIs401: a principal created and used, then revoked
// with DELETE /v1/principals/<id>, gets 401 on its next request, with no
// restart, and the access log holds, in this order, its grant, its access,
// its revocation and the denied attempt; the grant covers the access, as
// a supervisor checks it from the log alone.
func TestRevokedPrincipalIs401(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	defer stop(t, p)

	ep := register(t, p, "DE")
	sha := hashOf("revoke-e2e")
	if code, body := postJSON(t, ep.IngestURL, ep.Token, batchJSON("b1", detection(sha, "EICAR-Test-File", "C:/x/eicar.com"))); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	tok := createPrincipal(t, p, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich","moscow"],"expires":"720h"}`)

	code, body, accessIndex := readRecords(t, p, tok, sha)
	if code != http.StatusOK || accessIndex < 0 {
		t.Fatalf("read before revocation: %d %s", code, body)
	}
	if code, body := httpDo(t, "DELETE", p.URL()+"/v1/principals/analyst:jdoe", tok, nil); code != http.StatusUnauthorized {
		t.Errorf("a principal revoked itself: %d %s", code, body)
	}
	code, body = httpDo(t, "DELETE", p.URL()+"/v1/principals/analyst:jdoe", p.OperatorToken(), nil)
	var revoked struct{ Revoked string }
	if err := json.Unmarshal(body, &revoked); code != http.StatusOK || err != nil || revoked.Revoked != "analyst:jdoe" {
		t.Fatalf("revoke: %d %s", code, body)
	}
	code, body, deniedIndex := readRecords(t, p, tok, sha)
	if code != http.StatusUnauthorized || deniedIndex < 0 {
		t.Fatalf("read after revocation: %d %s (receipt %d), want 401 with a receipt", code, body, deniedIndex)
	}
	if code, body := httpDo(t, "DELETE", p.URL()+"/v1/principals/analyst:jdoe", p.OperatorToken(), nil); code != http.StatusNotFound {
		t.Errorf("revoking twice: %d %s, want 404", code, body)
	}
	if file, err := os.ReadFile(filepath.Join(data, "principals.json")); err != nil || bytes.Contains(file, []byte("analyst:jdoe")) {
		t.Errorf("principals.json still holds the revoked principal (%v):\n%s", err, file)
	}

	// The log, as an auditor reads it.
	var grants []*access.Grant
	var grantAt, revokeAt []int64
	entries := accessEntries(t, p.Log("access-zurich"), uint64(deniedIndex))
	for i, e := range entries {
		if access.EntryKind(e) != access.KindGrant {
			continue
		}
		g, err := access.ParseGrant(e)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		grants = append(grants, g)
		if g.Action == access.GrantAction {
			grantAt = append(grantAt, int64(i))
		} else {
			revokeAt = append(revokeAt, int64(i))
		}
	}
	if len(grantAt) != 1 || len(revokeAt) != 1 {
		t.Fatalf("the zurich log holds grants at %v and revocations at %v, want one each", grantAt, revokeAt)
	}
	if !(grantAt[0] < accessIndex && accessIndex < revokeAt[0] && revokeAt[0] < deniedIndex) {
		t.Errorf("grant at %d, access at %d, revocation at %d, denied attempt at %d: want them in this order", grantAt[0], accessIndex, revokeAt[0], deniedIndex)
	}
	g := grants[0]
	if g.Principal.ID != "analyst:jdoe" || g.Region != "zurich" || strings.Join(g.Regions, ",") != "moscow,zurich" ||
		g.Expires.IsZero() || g.Token != grants[1].Token || !strings.HasPrefix(g.Token, "sha256:") || strings.Contains(string(entries[grantAt[0]]), tok[4:]) {
		t.Errorf("grant %s, revocation %s", entries[grantAt[0]], entries[revokeAt[0]])
	}
	rec, err := access.Parse(entries[accessIndex])
	if err != nil || rec.Outcome != "granted" || rec.Principal.ID != "analyst:jdoe" || !g.Covers(rec) {
		t.Errorf("the access %s is not covered by the grant %s (%v)", entries[accessIndex], entries[grantAt[0]], err)
	}
	denied, err := access.Parse(entries[deniedIndex])
	if err != nil || denied.Outcome != "denied" || denied.Reason != "read: bad credential" {
		t.Errorf("the denied attempt: %s (%v)", entries[deniedIndex], err)
	}
	// moscow's log holds the grant and the revocation too, once its
	// checkpoint, published on its own schedule, covers them.
	var kinds map[string]int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		cp, err := p.Log("access-moscow").Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		kinds = map[string]int{}
		for _, e := range accessEntries(t, p.Log("access-moscow"), cp.Size-1) {
			if g, err := access.ParseGrant(e); err == nil && g.Principal.ID == "analyst:jdoe" && g.Region == "moscow" {
				kinds[g.Action]++
			}
		}
		if kinds[access.RevokeAction] > 0 || time.Now().After(deadline) {
			break
		}
	}
	if kinds[access.GrantAction] != 1 || kinds[access.RevokeAction] != 1 {
		t.Errorf("moscow's log holds %v for analyst:jdoe, want a grant and a revocation", kinds)
	}
}

// TestExpiredPrincipalIs401: a principal past its expiry gets 401
// "credential expired", logged as a denied attempt.
func TestExpiredPrincipalIs401(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	before := time.Now()
	tok := createPrincipal(t, p, `{"id":"analyst:brief","role":"analyst","location":"CH","regions":["zurich"],"expires":"1s"}`)
	time.Sleep(time.Until(before.Add(1100 * time.Millisecond)))
	code, body, index := readRecords(t, p, tok, hashOf("x"))
	if code != http.StatusUnauthorized || !bytes.Contains(body, []byte("credential expired")) || index < 0 {
		t.Fatalf("read after expiry: %d %s (receipt %d), want 401 credential expired with a receipt", code, body, index)
	}
	entries := accessEntries(t, p.Log("access-zurich"), uint64(index))
	if r, err := access.Parse(entries[index]); err != nil || r.Reason != "read: credential expired" {
		t.Errorf("the denied attempt: %s (%v)", entries[index], err)
	}
}

// TestRevokeLogUnavailable: with the region's access log down, revoking
// answers 503 and changes nothing: the file, the log and, after a
// restart, the principal's access are as before.
func TestRevokeLogUnavailable(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	tok := createPrincipal(t, p, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`)
	file := filepath.Join(data, "principals.json")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l := p.Log("access-zurich")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, body := httpDo(t, "DELETE", p.URL()+"/v1/principals/analyst:jdoe", p.OperatorToken(), nil)
	if code != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("nothing changed")) {
		t.Errorf("revoke with the log down: %d %s, want 503 saying nothing changed", code, body)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
		t.Errorf("principals.json changed:\n%s", after)
	}
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if _, err := p.principals.Authenticate(req); err != nil {
		t.Errorf("after a failed revocation: %v", err)
	}
	stop(t, p)

	p = start(t, data)
	defer stop(t, p)
	if code, body, _ := readRecords(t, p, tok, hashOf("x")); code != http.StatusOK {
		t.Errorf("after a failed revocation and a restart: %d %s", code, body)
	}
	cp, err := p.Log("access-zurich").Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range accessEntries(t, p.Log("access-zurich"), cp.Size-1) {
		if g, err := access.ParseGrant(e); err == nil && g.Action == access.RevokeAction {
			t.Errorf("entry %d is a revocation: %s", i, e)
		}
	}
}

// TestEndpointRevokedOrExpired: DELETE /v1/endpoints/<id> makes every
// route that takes the endpoint's token answer 401 at once, and after a
// restart; an expired token, of either format, gets 401 too, and a
// version 1 token within its default lifetime still works.
func TestEndpointRevokedOrExpired(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	a, b := register(t, p, "DE"), register(t, p, "DE")
	sha := hashOf("endpoint-revoke")
	if a.IngestURL != p.URL()+"/regions/zurich/v1/telemetry" {
		t.Fatalf("ingest URL %s", a.IngestURL)
	}
	// The URLs follow p, which a restart replaces.
	ingest := func(token, batch string) int {
		t.Helper()
		code, _ := postJSON(t, p.URL()+"/regions/zurich/v1/telemetry", token, batchJSON(batch, detection(sha, "EICAR-Test-File", "C:/x/eicar.com")))
		return code
	}
	if code := ingest(a.Token, "a1"); code != 200 {
		t.Fatalf("ingest before revocation: %d", code)
	}
	for _, tc := range []struct {
		token, id string
		want      int
	}{
		{a.Token, a.ID, http.StatusUnauthorized},
		{p.OperatorToken(), "ep_nope", http.StatusBadRequest},
		{p.OperatorToken(), a.ID, http.StatusOK},
	} {
		if code, body := httpDo(t, "DELETE", p.URL()+"/v1/endpoints/"+tc.id, tc.token, nil); code != tc.want {
			t.Errorf("DELETE %s: %d %s, want %d", tc.id, code, body, tc.want)
		}
	}
	check := func(when string) {
		t.Helper()
		verdicts := p.URL() + "/regions/zurich/v1/verdicts"
		if code := ingest(a.Token, "a2"); code != http.StatusUnauthorized {
			t.Errorf("%s: ingest with the revoked token: %d, want 401", when, code)
		}
		if code, _ := postJSON(t, verdicts, a.Token, []byte(`{"sha256":["`+sha+`"]}`)); code != http.StatusUnauthorized {
			t.Errorf("%s: verdicts with the revoked token: %d, want 401", when, code)
		}
		if code, _ := httpDo(t, "GET", verdicts+"/"+sha, a.Token, nil); code != http.StatusUnauthorized {
			t.Errorf("%s: verdict with the revoked token: %d, want 401", when, code)
		}
		if code, _ := postJSON(t, p.URL()+"/v1/telemetry", a.Token, nil); code != http.StatusUnauthorized {
			t.Errorf("%s: front door with the revoked token: %d, want 401", when, code)
		}
		if code := ingest(b.Token, "b-"+strings.ReplaceAll(when, " ", "-")); code != 200 {
			t.Errorf("%s: another endpoint's ingest: %d", when, code)
		}
	}
	check("at once")

	// Expired tokens, as the issuer would have made them earlier. Version 1
	// tokens get at least until endpoint.LegacyExpiry; as if that were
	// past:
	now := time.Unix(time.Now().Unix(), 0).UTC()
	legacy := endpoint.LegacyExpiry
	endpoint.LegacyExpiry = now.Add(-24 * time.Hour)
	defer func() { endpoint.LegacyExpiry = legacy }()
	for i, tc := range []struct {
		name string
		id   endpoint.Identity
		want int
	}{
		{"expired", endpoint.Identity{ID: b.ID, Country: "DE", Region: "zurich", IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}, http.StatusUnauthorized},
		{"version 1, past the default lifetime", endpoint.Identity{ID: b.ID, Country: "DE", Region: "zurich", IssuedAt: now.Add(-endpoint.DefaultLifetime - time.Hour)}, http.StatusUnauthorized},
		{"version 1, within the default lifetime", endpoint.Identity{ID: b.ID, Country: "DE", Region: "zurich", IssuedAt: now.Add(-time.Hour)}, http.StatusOK},
	} {
		tok, err := p.regions.issuer.Issue(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if code := ingest(tok, "b-"+strconv.Itoa(i)); code != tc.want {
			t.Errorf("%s: ingest %d, want %d", tc.name, code, tc.want)
		}
	}
	stop(t, p)

	p = start(t, data)
	defer stop(t, p)
	check("after a restart")
}
