package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// TestFrontDoorScaleOut runs two front door processes (`vitrine serve
// --role front`) behind a load balancer, beside the platform's process,
// and kills one of them with SIGKILL three times while endpoints of two
// regions send telemetry through the balancer. Every answer of a front
// door is a 307 to the endpoint's home region (or, with both down, the
// balancer's 503): never another region, never a 401 for a valid token;
// every batch the region acknowledged is counted there. An endpoint
// revoked at the platform is answered 401 by both processes within two
// seconds; with the platform down, both stop redirecting (503) once their
// policy is 10 s old, and resume when it is back.
func TestFrontDoorScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	coreData, coreAddr := filepath.Join(dir, "core"), freeAddr(t)
	// The platform's public URL (localhost) is not the URL the front
	// door reaches it at (127.0.0.1): the regions it serves itself are
	// under the public one, as registration says.
	public := "http://localhost:" + coreAddr[strings.LastIndex(coreAddr, ":")+1:]
	cfg := map[string]any{
		"name": "front.test", "data": coreData, "listen": coreAddr, "public_url": public,
		"platform_url": "http://" + coreAddr, "front_token": filepath.Join(coreData, "front.token"),
		"checkpoint_interval": "200ms", "commitment_interval": "1h",
		"monitor": map[string]any{"off": true},
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	core := startUpArgs(t, bin, coreAddr, "up", "--config", cfgFile)
	t.Cleanup(func() { core.kill() })
	lb := &balancer{}
	lbServer := httptest.NewServer(lb)
	defer lbServer.Close()
	addrs := []string{freeAddr(t), freeAddr(t)}
	start := func(i int) *upProcess {
		return startServing(t, bin, addrs[i], "/readyz", http.StatusOK, "serve", "--config", cfgFile, "--role", "front", "--listen", addrs[i])
	}
	fronts := []*upProcess{start(0), start(1)}
	t.Cleanup(func() {
		for _, f := range fronts {
			f.kill()
		}
	})
	lb.mu.Lock()
	lb.backends = []string{fronts[0].base, fronts[1].base}
	lb.mu.Unlock()

	op, err := os.ReadFile(filepath.Join(coreData, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	operator := strings.TrimSpace(string(op))
	// Provisioning reaches the platform itself: the front door takes no
	// operator token.
	var eps []*crashEndpoint
	for _, c := range []string{"DE", "RU", "US", "BR"} {
		ep := registerCrashEndpoint(t, core.base, operator, c)
		if !strings.HasPrefix(ep.IngestURL, public+"/regions/") {
			t.Fatalf("registered with ingest URL %s, not under the public URL %s", ep.IngestURL, public)
		}
		eps = append(eps, ep)
	}
	gotest.Call(t, "POST", lbServer.URL+"/v1/endpoints", operator, `{"country":"DE"}`, "", nil, http.StatusNotFound)
	// The front door's token reads the policy and the revocations, and
	// reaches no other internal route.
	front := strings.TrimSpace(string(mustRead(t, filepath.Join(coreData, "front.token"))))
	gotest.Call(t, "GET", core.base+"/internal/v1/policy", front, "", "", nil, http.StatusOK)
	gotest.Call(t, "GET", core.base+"/internal/v1/endpoints/revoked", front, "", "", nil, http.StatusOK)
	for _, route := range [][2]string{
		{"POST", "/internal/v1/logs/access-zurich/append"}, {"GET", "/internal/v1/logs/access-zurich/prove?index=0"},
		{"POST", "/internal/v1/principals/authenticate"}, {"POST", "/internal/v1/pseudonyms"},
	} {
		gotest.Call(t, route[0], core.base+route[1], front, `{}`, "", nil, http.StatusUnauthorized)
	}
	noRedirect := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// door posts to the front door at base and returns its status and
	// where it redirects.
	door := func(ctx context.Context, base, token string, body []byte) (int, string, error) {
		code, loc, _, err := doorBody(ctx, noRedirect, base, token, body)
		return code, loc, err
	}
	recTime := time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339)
	var (
		mu    sync.Mutex
		acked = map[string]*crashEndpoint{} // hash → endpoint whose batch was acknowledged
		sent  int
	)
	send := func(ctx context.Context, ep *crashEndpoint) {
		mu.Lock()
		sent++
		n := sent
		mu.Unlock()
		sum := sha256.Sum256([]byte(fmt.Sprint("front#", n)))
		hash := hex.EncodeToString(sum[:])
		body := fmt.Appendf(nil, `{"batch_id":"front-%d","records":[{"time":%q,"kind":"file","sha256":%q,"size":1,"detection":"","url":"","path":"C:/f.exe","product":"vitrine-agent/1.0.0","ruledb":1}]}`, n, recTime, hash)
		code, loc, answer, err := doorBody(ctx, noRedirect, lbServer.URL, ep.Token, body)
		switch {
		case code == http.StatusServiceUnavailable && !strings.Contains(answer, "no process of the region answers"):
			// A front door refused while its policy was fresh.
			t.Errorf("a front door answered 503: %s", answer)
			return
		case err != nil || code == http.StatusServiceUnavailable || code == http.StatusBadGateway:
			return // the balancer found no process, or one died under way
		case code != http.StatusTemporaryRedirect || loc != ep.IngestURL:
			t.Errorf("endpoint of %s (home %s): the front door answered %d to %q, want 307 to %s", ep.Country, ep.Region, code, loc, ep.IngestURL)
			return
		}
		c, ans, err := postBatch(ctx, noRedirect, loc, ep.Token, body)
		if err == nil && c == http.StatusOK {
			mu.Lock()
			acked[hash] = ep
			mu.Unlock()
		} else if err == nil && c != http.StatusServiceUnavailable {
			t.Errorf("ingest at %s: %d %s", loc, c, ans.raw)
		}
	}
	for k := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for _, ep := range eps {
			wg.Go(func() {
				for ctx.Err() == nil {
					send(ctx, ep)
				}
			})
		}
		time.Sleep(700 * time.Millisecond)
		victim := k % 2
		fronts[victim].kill()
		time.Sleep(700 * time.Millisecond)
		cancel()
		wg.Wait()
		fronts[victim] = start(victim)
		lb.mu.Lock()
		lb.backends = []string{fronts[0].base, fronts[1].base}
		lb.mu.Unlock()
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("kill %d: front door %d killed and restarted; %d batches acknowledged", k+1, victim, len(acked))
	}
	if len(acked) < 20 {
		t.Fatalf("only %d batches acknowledged", len(acked))
	}
	// Every acknowledged batch counts in its home region's verdicts.
	for hash, ep := range acked {
		waitVerdict(t, ep.IngestURL[:strings.Index(ep.IngestURL, "/v1/")], ep.Token, hash, 1)
	}

	// A revoked endpoint is refused by both processes within 2 s.
	revoked := eps[2]
	req, _ := http.NewRequest("DELETE", core.base+"/v1/endpoints/"+revoked.ID, nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("revoking: %v %v", resp, err)
	}
	resp.Body.Close()
	revokedAt := time.Now()
	for _, f := range fronts {
		for {
			code, _, err := door(t.Context(), f.base, revoked.Token, []byte(`{}`))
			if err == nil && code == http.StatusUnauthorized {
				break
			}
			if time.Since(revokedAt) > 2*time.Second {
				t.Fatalf("front door %s still answers %d %v to a revoked endpoint %s after the revocation", f.base, code, err, time.Since(revokedAt).Round(time.Millisecond))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("the revocation reached both processes within %s", time.Since(revokedAt).Round(time.Millisecond))

	// The platform down: redirects go on while the policy is fresh, then
	// stop, and resume once it is back. Both processes are watched at
	// once.
	core.kill()
	downAt := time.Now()
	var down sync.WaitGroup
	for _, f := range fronts {
		down.Go(func() {
			for {
				code, _, err := door(t.Context(), f.base, eps[0].Token, []byte(`{}`))
				if err != nil {
					t.Error(err)
					return
				}
				since := time.Since(downAt)
				if code == http.StatusServiceUnavailable {
					if since < 9*time.Second {
						t.Errorf("front door %s refused after %s, before its policy was stale", f.base, since)
					}
					if resp, err := http.Get(f.base + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("front door %s with a stale policy: readyz %v %v", f.base, resp, err)
					} else {
						resp.Body.Close()
					}
					return
				}
				if code != http.StatusTemporaryRedirect || since > 13*time.Second {
					t.Errorf("front door %s with the platform down %s: %d", f.base, since.Round(time.Millisecond), code)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
	down.Wait()
	if t.Failed() {
		t.FailNow()
	}
	core = startUpArgs(t, bin, coreAddr, "up", "--config", cfgFile)
	for _, f := range fronts {
		waitServing(t, f, "/readyz", http.StatusOK, 10*time.Second)
		if code, loc, err := door(t.Context(), f.base, eps[0].Token, []byte(`{}`)); err != nil || code != http.StatusTemporaryRedirect || loc != eps[0].IngestURL {
			t.Fatalf("front door %s with the platform back: %d %q %v", f.base, code, loc, err)
		}
	}
}

// doorBody posts to the front door at base, without following its
// redirect, and returns its status, where it redirects and its answer.
func doorBody(ctx context.Context, hc *http.Client, base, token string, body []byte) (int, string, string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/telemetry", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, resp.Header.Get("Location"), string(b), nil
}
