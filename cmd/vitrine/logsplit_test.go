package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// TestLogsProcess runs the deployment's logs in a process of their own
// (`vitrine serve --role logs`) beside the platform's (`vitrine up` with
// logs_url), and kills the logs process with SIGKILL three times while an
// analyst reads zurich's records, then replaces it with an impostor that
// holds other keys. While the logs are down or lying, no read releases a
// record and no principal is created (each answers 503); when the real
// process is back, reads and grants resume. Every read that released
// records has its granted entry in the witnessed access log, read from the
// logs process as discovery names it, and the log passes Tessera's fsck and
// x/mod's sumdb/tlog.
func TestLogsProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	coreData, logsData := filepath.Join(dir, "core"), filepath.Join(dir, "logs")
	coreAddr, logsAddr := freeAddr(t), freeAddr(t)
	cfg := map[string]any{
		"name": "split.test", "data": coreData, "listen": coreAddr,
		"logs_url": "http://" + logsAddr, "logs_token": filepath.Join(logsData, "logs.token"),
		"checkpoint_interval": "200ms", "commitment_interval": "1h",
		"monitor": map[string]any{"off": true},
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	startLogs := func(data string) *upProcess {
		return startServing(t, bin, logsAddr, "/readyz", http.StatusOK, "serve", "--config", cfgFile, "--role", "logs", "--listen", logsAddr, "--data", data)
	}
	logs := startLogs(logsData)
	t.Cleanup(func() { logs.kill() })
	core := startUpArgs(t, bin, coreAddr, "serve", "--config", cfgFile, "--role", "all")
	t.Cleanup(core.kill)

	// Discovery names the logs at their own process, with the keys that
	// process holds.
	d := discover(t, core.base)
	for _, dl := range d.Logs {
		vk, err := os.ReadFile(filepath.Join(logsData, "logs", dl.Name, "log.vkey"))
		if err != nil || strings.TrimSpace(string(vk)) != dl.VKey || !strings.HasPrefix(dl.URL, "http://"+logsAddr+"/logs/") {
			t.Fatalf("discovery lists log %s at %s with key %s; the logs process holds %q (%v)", dl.Name, dl.URL, dl.VKey, vk, err)
		}
	}
	if _, err := os.Stat(filepath.Join(coreData, "logs")); err == nil {
		t.Fatal("the platform's process made logs of its own")
	}

	op, err := os.ReadFile(filepath.Join(coreData, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	operator := strings.TrimSpace(string(op))
	ep := registerCrashEndpoint(t, core.base, operator, "DE")
	sum := sha256.Sum256([]byte("split#1"))
	hash := hex.EncodeToString(sum[:])
	batch := fmt.Appendf(nil, `{"batch_id":"split-1","records":[{"time":%q,"kind":"file","sha256":%q,"size":1,"detection":"","url":"","path":"C:/s.exe","product":"vitrine-agent/1.0.0","ruledb":1}]}`,
		time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339), hash)
	hc := &http.Client{Timeout: 40 * time.Second}
	if code, ans, err := postBatch(t.Context(), hc, ep.IngestURL, ep.Token, batch); err != nil || code != http.StatusOK {
		t.Fatalf("ingest: %d %v %s", code, err, ans.raw)
	}
	var pr struct{ Token string }
	gotest.Call(t, "POST", core.base+"/v1/principals", operator, `{"id":"analyst:ana","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)

	var (
		mu       sync.Mutex
		receipts = map[string]bool{}
	)
	// read reads zurich's records as the analyst: the status, and the
	// receipt of a read that released records.
	read := func() int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", ep.IngestURL[:strings.Index(ep.IngestURL, "/v1/")]+"/v1/records?sha256="+hash, nil)
		req.Header.Set("Authorization", "Bearer "+pr.Token)
		req.Header.Set(access.Header, "CUSTOMER_INITIATED_SUPPORT; case 9")
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("read: %v", err)
			return 0
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		switch resp.StatusCode {
		case http.StatusOK:
			rc := resp.Header.Get("Vitrine-Access-Receipt")
			if rc == "" || !strings.Contains(string(body), hash) {
				t.Errorf("a read released %q with receipt %q", body, rc)
			}
			mu.Lock()
			receipts[rc] = true
			mu.Unlock()
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" || strings.Contains(string(body), hash) {
				t.Errorf("a refused read answered %q without Retry-After or with the record", body)
			}
		default:
			t.Errorf("read: %d %s", resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	// refusedWhileDown reads and asks for a principal for a second and a
	// half, and wants every answer refused.
	refusedWhileDown := func(why string) {
		t.Helper()
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if code := read(); code != http.StatusServiceUnavailable {
				t.Fatalf("%s: a read answered %d", why, code)
			}
		}
		// A principal's grant goes into the access log before its token
		// is given: none while the log cannot take it.
		gotest.Call(t, "POST", core.base+"/v1/principals", operator, `{"id":"auditor:ned","role":"auditor","location":"CH","regions":["zurich"]}`, "", nil, http.StatusServiceUnavailable)
	}
	// resumes waits until reads release records again.
	resumes := func(why string) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 30*time.Second {
			if read() == http.StatusOK {
				return time.Since(start)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: reads did not resume within 30 s:\n%s", why, core.out)
		return 0
	}
	if read() != http.StatusOK {
		t.Fatal("the first read released nothing")
	}
	for k := range 3 {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					read()
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
		time.Sleep(700 * time.Millisecond)
		logs.kill()
		close(stop)
		wg.Wait()
		refusedWhileDown(fmt.Sprintf("logs process killed (%d)", k+1))
		logs = startLogs(logsData)
		t.Logf("kill %d: reads resumed %s after the logs process came back", k+1, resumes("logs process restarted").Round(time.Millisecond))
	}

	// An impostor: a logs process with other keys at the same address,
	// which took the append token too. The platform appends to it, but
	// no proof it gives verifies under the keys pinned on first use, so
	// nothing is released.
	logs.kill()
	tok, err := os.ReadFile(filepath.Join(logsData, "logs.token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "impostor"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "impostor", "logs.token"), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	impostor := startLogs(filepath.Join(dir, "impostor"))
	refusedWhileDown("an impostor logs process")
	// The impostor took the reads' records: what refused them was their
	// proofs, not a failed append.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, err := get(t.Context(), "http://"+logsAddr+"/logs/access-zurich/checkpoint")
		if lines := strings.Split(string(b), "\n"); err == nil && len(lines) > 1 && lines[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the impostor took no append: %s %v", b, err)
		}
	}
	impostor.kill()
	logs = startLogs(logsData)
	resumes("the real logs process back")
	// The platform does not start against the impostor either.
	logs.kill()
	core.kill()
	impostor = startLogs(filepath.Join(dir, "impostor"))
	out, err := runVitrine(t, bin, "serve", "--config", cfgFile, "--role", "all")
	if err == nil || !strings.Contains(out, "pinned") {
		t.Fatalf("the platform started against an impostor logs process (%v):\n%s", err, out)
	}
	impostor.kill()
	logs = startLogs(logsData)
	core = startUpArgs(t, bin, coreAddr, "serve", "--config", cfgFile, "--role", "all")
	resumes("the platform restarted")

	// Every read that released records is in the log, which tools we
	// did not write verify as a whole.
	checkReceipts(t, core.base, receipts)
	if len(receipts) < 4 {
		t.Errorf("only %d reads released records", len(receipts))
	}
	l, entries := zurichEntries(t, core.base)
	cp, err := l.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	disc := discover(t, core.base)
	dl, _ := disc.Log("access-zurich")
	v, err := note.NewVerifier(dl.VKey)
	if err != nil {
		t.Fatal(err)
	}
	verifyWithOthers(t, dl.URL, dl.Origin, v, cp)
	t.Logf("%d reads released records, each in access-zurich (%d entries), verified by Tessera's fsck and x/mod's sumdb/tlog", len(receipts), len(entries))
}
