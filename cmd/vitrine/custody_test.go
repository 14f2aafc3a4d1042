package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// TestCustodyOwnProcess runs the supervisor's custody as its own process
// beside `vitrine up`: an analyst's justified read opens personal fields
// through it; with custody stopped, the same read is a 503 with no data,
// and ingest fails closed too until custody is back.
func TestCustodyOwnProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	upData, custodyData := t.TempDir(), t.TempDir()
	upAddr, custodyAddr := freeAddr(t), freeAddr(t)
	startCustody := func() *exec.Cmd {
		var out bytes.Buffer
		c := exec.Command(bin, "custody", "--data", custodyData, "--listen", custodyAddr, "--platform", "http://"+upAddr)
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	cust := startCustody()
	// Custody writes its token before it waits for the platform.
	tokenFile := filepath.Join(custodyData, "custody.token")
	for i := 0; ; i++ {
		if _, err := os.Stat(tokenFile); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("custody wrote no token")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := startUpArgs(t, bin, upAddr, "up", "--data", upData, "--listen", upAddr, "--custody-url", "http://"+custodyAddr, "--custody-token", tokenFile)
	defer p.kill()
	opTok, _ := os.ReadFile(filepath.Join(upData, "operator.token"))
	operator := strings.TrimSpace(string(opTok))
	ctx := t.Context()
	hc := loadgen.NewClient(2)

	ep, err := loadgen.Register(ctx, hc, p.base, operator, "DE")
	if err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("ab", 32)
	batch := func(id string) []byte {
		return loadgen.AppendBatch(nil, id, []telemetry.Record{{Time: time.Now().Add(-time.Minute).UTC().Truncate(time.Second), Kind: "detection", SHA256: sha, Size: 68,
			Detection: "EICAR-Test-File", Path: "C:/Users/greta/eicar.com", Product: "vitrine-agent/1.0.0", RuleDB: 42}})
	}
	post := func(id string) int {
		req, _ := http.NewRequestWithContext(ctx, "POST", ep.IngestURL, bytes.NewReader(batch(id)))
		req.Header.Set("Authorization", "Bearer "+ep.Token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Custody pins the platform's keys once the platform is up, then
	// serves; ingest waits for it.
	for i := 0; post("b1") != 200; i++ {
		if i == 100 {
			t.Fatal("ingest never succeeded through custody")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var created struct{ Token string }
	if err := call(ctx, "POST", p.base+"/v1/principals", operator,
		[]byte(`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`), &created); err != nil {
		t.Fatal(err)
	}
	read := func() (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/regions/zurich/v1/records?sha256="+sha, nil)
		req.Header.Set("Authorization", "Bearer "+created.Token)
		req.Header.Set(access.Header, "CUSTOMER_INITIATED_SUPPORT; ticket 77")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := read(); code != 200 || !bytes.Contains(b, []byte("greta")) {
		t.Fatalf("read through custody: %d %s", code, b)
	}

	// Custody stopped: no data, and no new data taken in.
	_ = cust.Process.Kill()
	_ = cust.Wait()
	if code, b := read(); code != http.StatusServiceUnavailable || bytes.Contains(b, []byte("greta")) {
		t.Errorf("read with custody stopped: %d %s, want 503 and no data", code, b)
	}
	// (Ingest has the region's key already: it seals without custody.)
	if code := post("b2"); code != 200 {
		t.Errorf("ingest with custody stopped: %d", code)
	}

	// Custody back, with the keys and trust it pinned.
	startCustody()
	for i := 0; ; i++ {
		code, b := read()
		if code == 200 {
			var ans struct{ Records []json.RawMessage }
			if err := json.Unmarshal(b, &ans); err != nil || len(ans.Records) != 2 {
				t.Errorf("read after custody came back: %s", b)
			}
			break
		}
		if i == 100 {
			t.Fatalf("read never succeeded after custody came back: %d %s", code, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The supervisor reconciles custody's counts with the access log.
	out, err := exec.Command(bin, "custody", "reconcile", "--custody", "http://"+custodyAddr, "--token", tokenFile, "--platform", p.base).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) || !bytes.Contains(out, []byte("2 access entries")) {
		t.Errorf("custody reconcile: %v\n%s", err, out)
	}
}

// TestCustodyTrustOldFormat: a custody that pinned its trust before it kept
// client.Pins reads its old file, keeps the same keys and policy, and
// rewrites it as pins, without reading the platform again.
func TestCustodyTrustOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust.json")
	old := `{"regions":{"zurich":"vitrine.local/logs/access-zurich+01+AAA"},"witness_policy":"quorum none\n"}`
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e := &env{Stdout: &out, Stderr: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// No platform at this address: the pins alone must do.
	p, err := loadTrust(context.Background(), e, path, "http://127.0.0.1:1")
	if err != nil || p.LogKeys["access-zurich"] != "vitrine.local/logs/access-zurich+01+AAA" || p.WitnessPolicy != "quorum none\n" {
		t.Fatalf("loadTrust(old format) = %+v, %v", p, err)
	}
	again, err := loadTrust(context.Background(), e, path, "http://127.0.0.1:1")
	if err != nil || again.LogKeys["access-zurich"] != p.LogKeys["access-zurich"] {
		t.Fatalf("loadTrust(rewritten) = %+v, %v", again, err)
	}
	if _, err := loadTrust(context.Background(), e, path, "http://127.0.0.1:2"); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("loadTrust for another platform: %v, want it refused", err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"log_keys"`) {
		t.Errorf("the file was not rewritten as pins:\n%s", b)
	}
}
