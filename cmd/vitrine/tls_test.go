package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// TestLogServeTLS runs `vitrine log serve` with a certificate made by a
// CA of the test: a client that trusts the CA appends and reads over
// HTTPS, plain HTTP is refused, the metrics (over HTTPS too) count the
// append, and a certificate whose files are replaced is served without a
// restart; SIGHUP, which reads them at once, does not stop the process.
func TestLogServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir, data := t.TempDir(), t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := gotest.NewCA(t)
	ca.Issue(t, "first", certFile, keyFile)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	p := startProcess(t, bin, addr, "log", "serve", "--data", data, "--listen", addr, "--origin", "example.com/tls",
		"--tls-cert", certFile, "--tls-key", keyFile, "--metrics-listen", metricsAddr)
	defer p.kill()
	p.base = "https://" + addr
	hc := ca.Client()
	hc.Transport.(*http.Transport).DisableKeepAlives = true // every request a handshake
	get := func(u string) (int, string, string) {
		t.Helper()
		resp, err := hc.Get(u)
		if err != nil {
			return 0, err.Error(), ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	// Ready once it serves a checkpoint.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := get(p.base + "/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log serve did not become ready over HTTPS:\n%s", p.out.String())
		}
	}
	if out := p.out.String(); !strings.Contains(out, "serving at https://"+addr+"/") || !strings.Contains(out, "metrics at https://"+metricsAddr+"/metrics") {
		t.Errorf("the printed URLs do not say https:\n%s", out)
	}
	if resp, err := http.Get("http://" + addr + "/checkpoint"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was served")
		}
	}

	token := strings.TrimSpace(string(waitFile(t, filepath.Join(data, "add.token"))))
	req, _ := http.NewRequest("POST", p.base+"/add", bytes.NewReader([]byte("an entry over TLS")))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "0" {
		t.Fatalf("POST /add over HTTPS: %d %s", resp.StatusCode, body)
	}
	s := metricstest.ScrapeURL(t, hc, "https://"+metricsAddr+"/metrics", "")
	if got := s.Get(t, "vitrine_log_appends_total", map[string]string{"log": "example.com/tls"}); got != 1 {
		t.Errorf("appends counted: %v, want 1", got)
	}
	s.Get(t, "vitrine_log_checkpoint_age_seconds", map[string]string{"log": "example.com/tls"})

	// Rotation: the files replaced, the new certificate is served within
	// seconds. (That SIGHUP reads them at once is certfile's test: here
	// the files' change would be seen anyway.)
	served := func(want string, within time.Duration) {
		t.Helper()
		var got string
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, _, got = get(p.base + "/healthz"); got == want {
				return
			}
		}
		t.Fatalf("served the certificate %q, want %q", got, want)
	}
	if _, _, cn := get(p.base + "/healthz"); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	ca.Issue(t, "second", certFile, keyFile)
	served("second", 10*time.Second)
	ca.Issue(t, "third", certFile, keyFile)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	served("third", 10*time.Second)
	if _, err := os.Stat(filepath.Join(data, "metrics.token")); err == nil {
		t.Error("a metrics token was made for a loopback listener")
	}
	if code, _, _ := get(p.base + "/healthz"); code != http.StatusOK {
		t.Errorf("the process did not survive SIGHUP:\n%s", p.out.String())
	}
}
