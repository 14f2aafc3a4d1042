package platform

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/review"
)

// SourceArchive returns a source archive as the conveyer writes one: a
// .tar.gz of regular files.
func sourceArchive(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return b.Bytes()
}

// TestReviews: an auditor records a review of a published release and of
// files of its source; it is answered once a witnessed checkpoint covers
// it, with a proof that verifies from the discovery document alone, and
// the entry is the canonical review bound to the release's entry. Every
// other caller is refused (no token, a bad one, an analyst, an operator
// principal, the operator's own token), and so is every bad request, and
// none of them logs anything.
func TestReviews(t *testing.T) {
	ctx := context.Background()
	p := start(t, t.TempDir())
	defer func() { stop(t, p) }()
	src := sourceArchive(t, map[string]string{"main.go": "package main\n", "cmd/tool/update.go": "package main\n"})
	pub, err := p.Publish(ctx, "tool", "1.0.0", map[string][]byte{"tool": []byte("\x7fELF")}, src, testBuild(p, "tool", src))
	if err != nil {
		t.Fatal(err)
	}
	auditor := createPrincipal(t, p, `{"id":"auditor:alice","role":"auditor","location":"CH","regions":["zurich"]}`)
	analyst := createPrincipal(t, p, `{"id":"analyst:bob","role":"analyst","location":"CH","regions":["zurich"]}`)
	operator := createPrincipal(t, p, `{"id":"operator:carol","role":"operator","location":"CH","regions":["zurich"]}`)
	rel, err := p.rel.store.Load("tool", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	good := `{"name":"tool","version":"1.0.0","entry":"` + release.Digest(rel.Entry) + `","files":["main.go","cmd/tool/update.go"],"verdict":"concerns","notes":"The update check <trusts> any redirect.\nSee update.go."}`

	size := func() uint64 {
		cp, err := p.Log("review").Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	before := size()
	for _, tc := range []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", good, 401},
		{"an unknown token", "vp1." + strings.Repeat("A", 43), good, 401},
		{"not a principal token", "garbage", good, 401},
		{"the operator's token", p.OperatorToken(), good, 401},
		{"an analyst", analyst, good, 403},
		{"an operator principal", operator, good, 403},
		{"not JSON", auditor, `{"name":`, 400},
		{"an unknown key", auditor, strings.Replace(good, `"notes"`, `"auditor":"auditor:mallory","notes"`, 1), 400},
		{"a key twice", auditor, strings.Replace(good, `"verdict":"concerns"`, `"verdict":"approved","verdict":"concerns"`, 1), 400},
		{"no verdict", auditor, strings.Replace(good, `"verdict":"concerns",`, ``, 1), 400},
		{"an unknown verdict", auditor, strings.Replace(good, `"concerns"`, `"fine"`, 1), 400},
		{"notes too long", auditor, strings.Replace(good, `See update.go.`, strings.Repeat("x", review.MaxNotes), 1), 400},
		{"a control character", auditor, strings.Replace(good, `\n`, `\u0007`, 1), 400},
		{"a file not in the source", auditor, strings.Replace(good, `"main.go"`, `"other.go"`, 1), 400},
		{"a file outside", auditor, strings.Replace(good, `"main.go"`, `"../main.go"`, 1), 400},
		{"a file twice", auditor, strings.Replace(good, `"cmd/tool/update.go"`, `"main.go"`, 1), 400},
		{"another entry", auditor, strings.Replace(good, release.Digest(rel.Entry), "sha256:"+strings.Repeat("0", 64), 1), 409},
		{"a release not published", auditor, strings.Replace(good, `"1.0.0"`, `"9.9.9"`, 1), 404},
		{"a release name that is a path", auditor, strings.Replace(good, `"tool"`, `"../tool"`, 1), 404},
		{"too large", auditor, strings.Replace(good, `See update.go.`, strings.Repeat("x", 100<<10), 1), 413},
	} {
		code, body := httpDo(t, "POST", p.URL()+ReviewPath, tc.token, []byte(tc.body))
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
		if strings.Contains(string(body), auditor) {
			t.Errorf("%s: the answer shows the token", tc.name)
		}
	}

	code, body := httpDo(t, "POST", p.URL()+ReviewPath, auditor, []byte(good))
	if code != http.StatusCreated {
		t.Fatalf("an auditor's review: %d %s", code, body)
	}
	var a ReviewAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.Index != before {
		t.Errorf("the review is entry %d of the review log, want %d: a refused request was logged", a.Index, before)
	}
	d := p.Discovery()
	gotest.CheckProof(t, &d, "review", &a.Index, a.Entry, a.Proof)
	r, err := review.Parse([]byte(a.Entry))
	if err != nil {
		t.Fatal(err)
	}
	if r.Auditor != "auditor:alice" || r.Release.Index != pub.LogIndex || r.Release.Entry != release.Digest(rel.Entry) || r.Verdict != review.Concerns ||
		strings.Join(r.Files, ",") != "cmd/tool/update.go,main.go" || !strings.Contains(r.Notes, "<trusts>") {
		t.Errorf("the review logged: %+v", r)
	}
	// The release as a whole, without naming the entry: bound all the same.
	code, body = httpDo(t, "POST", p.URL()+ReviewPath, auditor, []byte(`{"name":"tool","version":"1.0.0","verdict":"approved","notes":""}`))
	if code != http.StatusCreated || json.Unmarshal(body, &a) != nil || a.Index != before+1 {
		t.Fatalf("a review of the whole release: %d %s", code, body)
	}
	if size() != before+2 {
		t.Errorf("the review log holds %d entries, want %d", size(), before+2)
	}
	if code, _ := httpDo(t, "POST", p.URL()+"/logs/review/add", p.OperatorToken(), []byte(good)); code != http.StatusForbidden {
		t.Errorf("the generic append to the review log: %d, want 403", code)
	}
}
