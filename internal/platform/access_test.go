package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestAccessEndToEnd: on `vitrine up`, an analyst reads a record with a
// justification and gets the data and a receipt whose proof verifies with
// only what discovery publishes and Tessera's client; without a
// justification the answer is 400 and a denied entry; a principal of
// another region gets 403 and a denied entry; the store's files hold no
// personal field in clear.
func TestAccessEndToEnd(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	defer stop(t, p)

	ep := register(t, p, "DE")
	const path = "C:/Users/marlene.dietrich/Documents/eicar.com"
	sha := hashOf("eicar-e2e")
	if code, body := postJSON(t, ep.IngestURL, ep.Token, batchJSON("b1", detection(sha, "EICAR-Test-File", path))); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}

	createPrincipal := func(body string) string {
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
	jdoe := createPrincipal(`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`)
	ivan := createPrincipal(`{"id":"analyst:ivan","role":"analyst","location":"RU","regions":["moscow"]}`)
	if code, _ := postJSON(t, p.URL()+"/v1/principals", jdoe, []byte(`{"id":"analyst:eve","role":"analyst","location":"CH","regions":["zurich"]}`)); code != http.StatusUnauthorized {
		t.Errorf("an analyst created a principal: %d", code)
	}

	zurich := p.URL() + "/regions/zurich"
	get := func(token, justification string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", zurich+"/v1/records?sha256="+sha, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if justification != "" {
			req.Header.Set(access.Header, justification)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	// What an independent verifier has: discovery, and the log over HTTP.
	d := p.Discovery()
	var logURL, vkey string
	for _, l := range d.Logs {
		if l.Name == "access-zurich" {
			logURL, vkey = l.URL, l.VKey
		}
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy([]byte(d.WitnessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(logURL)
	fetcher, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	// entry reads the entry of a receipt from the log's tiles, with a
	// proof from the gateway that verifies under the witness policy.
	entry := func(resp *http.Response) *access.Record {
		t.Helper()
		o, idx, _ := strings.Cut(resp.Header.Get(access.ReceiptHeader), " ")
		index, err := strconv.ParseUint(idx, 10, 64)
		if err != nil || o != p.Log("access-zurich").Origin() {
			t.Fatalf("receipt %q", resp.Header.Get(access.ReceiptHeader))
		}
		var proofText []byte
		for range 50 {
			code, b := httpDo(t, "GET", zurich+"/v1/access/"+idx+"/proof", "", nil)
			if code == 200 {
				proofText = b
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		proof, err := tlog.ParseProof(proofText)
		if err != nil {
			t.Fatalf("proof of %d: %v", index, err)
		}
		cp, err := policy.VerifyCheckpoint(proof.Checkpoint, verifier)
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := client.GetEntryBundle(context.Background(), fetcher.ReadEntryBundle, index/256, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		raw := bundle.Entries[index%256]
		if _, err := proof.Verify(tlog.LeafHash(raw), verifier, policy); err != nil {
			t.Fatalf("the receipt's proof does not verify: %v", err)
		}
		r, err := access.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(ep.ID)) || bytes.Contains(raw, []byte("marlene")) {
			t.Errorf("the access log holds personal data in clear: %s", raw)
		}
		return r
	}

	resp, body := get(jdoe, "CUSTOMER_INITIATED_SUPPORT; ticket 4711")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(path)) || !bytes.Contains(body, []byte(ep.ID)) {
		t.Fatalf("justified read: %d %s", resp.StatusCode, body)
	}
	if r := entry(resp); r.Action != "read" || r.Outcome != "granted" || r.Principal.ID != "analyst:jdoe" || r.Resource.Count != 1 || len(r.Keys) != 1 {
		t.Errorf("read logged as %+v", r)
	}

	resp, body = get(jdoe, "")
	if resp.StatusCode != 400 || !bytes.Contains(body, []byte("SUPERVISOR_REVIEW")) || bytes.Contains(body, []byte(path)) {
		t.Errorf("read without justification: %d %s", resp.StatusCode, body)
	}
	if r := entry(resp); r.Action != "denied" || r.Outcome != "denied" || r.Reason != "read: no justification" {
		t.Errorf("unjustified read logged as %+v", r)
	}

	resp, body = get(ivan, "CUSTOMER_INITIATED_SUPPORT; ticket 4711")
	if resp.StatusCode != 403 || bytes.Contains(body, []byte(path)) {
		t.Errorf("read by a principal of moscow: %d %s", resp.StatusCode, body)
	}
	if r := entry(resp); r.Action != "denied" || r.Principal.ID != "analyst:ivan" || !strings.Contains(r.Reason, "region zurich") {
		t.Errorf("other region's read logged as %+v", r)
	}

	// A commitment to zurich's dataset on demand: the operator may ask,
	// an analyst may not; the entry in the log covers the one record.
	if code, b := postJSON(t, zurich+"/v1/commitments", jdoe, nil); code != http.StatusUnauthorized {
		t.Errorf("an analyst committed: %d %s", code, b)
	}
	code, b := postJSON(t, zurich+"/v1/commitments", p.OperatorToken(), nil)
	if code != 200 {
		t.Fatalf("commitment on demand: %d %s", code, b)
	}
	var ans struct {
		Index uint64 `json:"index"`
		Count int64  `json:"count"`
		Root  string `json:"root"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Count != 1 {
		t.Fatalf("commitment answer %s: %v", b, err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ccp, err := p.Log("access-zurich").AwaitWitnessed(cctx, ans.Index)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := client.GetEntryBundle(cctx, fetcher.ReadEntryBundle, ans.Index/256, ccp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if cm, err := access.ParseCommitment(cb.Entries[ans.Index%256]); err != nil || cm.Count != 1 || cm.Root != ans.Root || cm.Region != "zurich" {
		t.Errorf("logged commitment %+v, %v; answer %s", cm, err, b)
	}

	// The aggregates that moscow pulled from zurich crossed under a
	// logged process access, which names no data subject.
	crossed := false
	for range 100 {
		cp, err := p.Log("access-zurich").Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for bi := uint64(0); bi*256 < cp.Size && !crossed; bi++ {
			b, err := client.GetEntryBundle(context.Background(), fetcher.ReadEntryBundle, bi, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			for _, raw := range b.Entries {
				r, err := access.Parse(raw)
				if err == nil && r.Action == "process" && r.Resource.Dataset == "aggregates" && r.Principal.ID == "processor:region-moscow" &&
					r.Resource.Count > 0 && len(r.Subjects) == 0 && r.Justification.Code == "AUTOMATED_PROCESSING" {
					crossed = true
				}
			}
		}
		if crossed {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !crossed {
		t.Error("no process entry in access-zurich for the aggregates moscow pulled")
	}

	// The store's files, read directly, hold neither the path nor the
	// endpoint id.
	stop(t, p)
	filepath.WalkDir(filepath.Join(data, "regions"), func(f string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("marlene")) || bytes.Contains(b, []byte(ep.ID)) {
			t.Errorf("%s holds personal data in clear", f)
		}
		return nil
	})
}
