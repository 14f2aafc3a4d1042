package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
)

func start(t *testing.T, data string) *Platform {
	t.Helper()
	p, err := Start(context.Background(), Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, BuildSourceRoots: gotest.SourceRoots(t)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stop(t *testing.T, p *Platform) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func httpDo(t *testing.T, method, u, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestUp checks the external contract of `vitrine up`: the discovery
// document, the logs, witnessed checkpoints that verify under the
// published policy, and a restart that keeps every key and entry.
func TestUp(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)

	code, body := httpDo(t, "GET", p.URL()+"/.well-known/vitrine.json", "", nil)
	if code != 200 {
		t.Fatalf("discovery: %d %s", code, body)
	}
	var d Discovery
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("discovery document: %v\n%s", err, body)
	}
	if len(d.Logs) != len(LogNames) || len(d.Witnesses) != 1 {
		t.Fatalf("discovery lists %d logs and %d witnesses, want %d and 1", len(d.Logs), len(d.Witnesses), len(LogNames))
	}
	policy, err := tlog.ParsePolicy([]byte(d.WitnessPolicy))
	if err != nil {
		t.Fatalf("discovery witness_policy: %v", err)
	}
	if policy.Quorum() == "none" || len(policy.Witnesses) != 1 || policy.Witnesses[0].VKey != d.Witnesses[0].VKey {
		t.Fatalf("witness policy %q does not require the listed witness", d.WitnessPolicy)
	}
	if _, err := release.ParsePublicKey([]byte(d.Releases.Key)); err != nil || d.Releases.URL != p.URL()+"/releases/" {
		t.Errorf("discovery releases %+v: %v", d.Releases, err)
	}
	if code, body := httpDo(t, "GET", d.Releases.URL, "", nil); code != 200 || !bytes.Contains(body, []byte(`"releases"`)) {
		t.Errorf("GET %s: %d %s", d.Releases.URL, code, body)
	}

	type appended struct {
		idx   uint64
		entry []byte
	}
	got := map[string][]appended{}
	for i, l := range d.Logs {
		if want := LogNames[i]; l.Name != want {
			t.Errorf("log %d is %q, want %q", i, l.Name, want)
		}
		// Entries reach the logs only through their owners, which append
		// through the Go API (TestPlatformLogsRefuseGenericAppend).
		for k := 0; k < 3; k++ {
			e := []byte(fmt.Sprintf("%s entry %d", l.Name, k))
			idx, err := p.Log(l.Name).Append(context.Background(), e)
			if err != nil {
				t.Fatalf("%s: append: %v", l.Name, err)
			}
			got[l.Name] = append(got[l.Name], appended{idx, e})
		}
	}
	for _, l := range d.Logs {
		v, err := note.NewVerifier(l.VKey)
		if err != nil {
			t.Fatal(err)
		}
		if v.Name() != l.Origin {
			t.Errorf("%s: vkey name %q, origin %q", l.Name, v.Name(), l.Origin)
		}
		last := got[l.Name][2].idx
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := p.Log(l.Name).AwaitWitnessed(ctx, last); err != nil {
			t.Fatal(err)
		}
		cancel()
		code, cpRaw := httpDo(t, "GET", l.URL+"checkpoint", "", nil)
		if code != 200 {
			t.Fatalf("%s: checkpoint: %d", l.Name, code)
		}
		cp, err := policy.VerifyCheckpoint(cpRaw, v)
		if err != nil {
			t.Fatalf("%s: served checkpoint does not verify under the discovered policy: %v", l.Name, err)
		}
		if len(cp.Cosigners) != 1 {
			t.Errorf("%s: cosigners %v", l.Name, cp.Cosigners)
		}
		// Every appended entry has a proof that verifies offline.
		for _, a := range got[l.Name] {
			proof, err := p.Log(l.Name).Prove(context.Background(), a.idx)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := tlog.ParseProof(proof.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parsed.Verify(tlog.LeafHash(a.entry), v, policy); err != nil {
				t.Errorf("%s: proof of %d: %v", l.Name, a.idx, err)
			}
			if _, err := parsed.Verify(tlog.LeafHash(append(a.entry, '!')), v, policy); err == nil {
				t.Errorf("%s: proof of %d verifies for another entry", l.Name, a.idx)
			}
		}
	}
	code, _ = httpDo(t, "GET", p.URL()+"/no/such/route", "", nil)
	if code != 404 {
		t.Errorf("unknown route: %d, want 404", code)
	}
	stop(t, p)

	// A restart reuses the data: same keys, same entries, the log grows on.
	p2 := start(t, data)
	defer stop(t, p2)
	d2 := p2.Discovery()
	for i := range d.Logs {
		if d2.Logs[i].VKey != d.Logs[i].VKey {
			t.Errorf("%s: key changed across restart", d.Logs[i].Name)
		}
	}
	if d2.Witnesses[0].VKey != d.Witnesses[0].VKey {
		t.Error("witness key changed across restart")
	}
	if idx, err := p2.Log(d2.Logs[0].Name).Append(context.Background(), []byte("after restart")); err != nil || idx != 3 {
		t.Fatalf("append after restart: index %d, %v; want index 3", idx, err)
	}
}
