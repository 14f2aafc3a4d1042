package certfile

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// served returns the common name of the certificate a client trusting ca
// is served at u.
func served(t *testing.T, ca *gotest.CA, u string) string {
	t.Helper()
	c := ca.Client()
	c.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].Subject.CommonName
}

// A certificate whose files are replaced is served from the next
// handshake after the change is seen; files that do not load as a pair
// leave the last good one in use.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := gotest.NewCA(t)
	ca.Issue(t, "first", certFile, keyFile)
	c, err := Load(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := c.Config()
	if conf.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", conf.MinVersion)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	u := "https://" + ln.Addr().String()
	if got := served(t, ca, u); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	ca.Issue(t, "second", certFile, keyFile)
	c.checked.Store(0) // as if a second had passed
	if got := served(t, ca, u); got != "second" {
		t.Fatalf("after the files changed: served %q, want second", got)
	}

	// A key that does not match: the second certificate stays.
	other := t.TempDir()
	ca.Issue(t, "third", filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem"))
	k, err := os.ReadFile(filepath.Join(other, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	c.checked.Store(0)
	if got := served(t, ca, u); got != "second" {
		t.Fatalf("after a mismatched key: served %q, want second", got)
	}
	if err := c.Reload(); err == nil {
		t.Error("Reload of a mismatched pair succeeded")
	}

	// Reload (SIGHUP) takes a good pair at once.
	ca.Issue(t, "fourth", certFile, keyFile)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, ca, u); got != "fourth" {
		t.Fatalf("after Reload: served %q, want fourth", got)
	}

	if _, err := Load(certFile, "", nil); err == nil {
		t.Error("Load without a key file succeeded")
	}
}
