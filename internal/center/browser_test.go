package center

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/release"
)

// chromium returns Debian's chromium, which .ci/run installs: missing in
// CI it fails the test; elsewhere the test skips, saying so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: apt-get install chromium")
	return ""
}

// TestOverviewInChromium: the overview in real Chromium, at a phone's
// width (390 px) and a desktop's: the logs, the policy and the proven
// alert are marked verified, nothing is wider than the screen, and over
// a proxy that then lies about a checkpoint the page shows the failure.
// Screenshots go to the test's directory (VITRINE_SCREENSHOTS=DIR keeps
// them).
func TestOverviewInChromium(t *testing.T) {
	bin := chromium(t)
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	shots := os.Getenv("VITRINE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	look := func(width int64, name string) (verified, unverified int, overflow bool) {
		t.Helper()
		ctx, cancel := chromedp.NewContext(actx)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(srv+"/"), chromedp.WaitVisible("h1")); err != nil {
			t.Fatal(err)
		}
		var err error
		if verified, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-verified="true"]').length`)); err != nil {
			t.Fatal(err)
		}
		if unverified, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('[data-verified="false"]').length`)); err != nil {
			t.Fatal(err)
		}
		if overflow, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		return verified, unverified, overflow
	}
	for _, w := range []int64{390, 1280} {
		v, u, overflow := look(w, "overview-"+map[int64]string{390: "phone", 1280: "desktop"}[w]+".png")
		if v != 6 || u != 0 || overflow { // five logs and the alert
			t.Errorf("at %d px: %d verified, %d unverified, wider than the screen: %v; want 6, 0, false", w, v, u, overflow)
		}
	}
	px.Tell(liar.Checkpoint)
	// The other four logs, and the alert (its proof carries its own
	// checkpoint), still verify.
	if v, u, _ := look(1280, "overview-lying.png"); u < 2 || v != 5 {
		t.Errorf("over a lying proxy: %d verified, %d unverified; want the other four logs and the alert verified and the lie shown", v, u)
	}
}

// TestEntryVerifiedInChromium: an access entry's page, opened in real
// Chromium, has the reader's browser check the entry's proof with the
// verifier compiled to WebAssembly: verified. A Center server that
// changes one character of the proof it hands the page, or serves another
// verifier than the page names, shows another entry than it hands the
// verifier, or hands it a policy that asks for no witness (after the
// browser pinned the real one), is caught by the browser: not verified,
// naming what failed.
func TestEntryVerifiedInChromium(t *testing.T) {
	bin := chromium(t)
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	var lie atomic.Int32 // 0 honest, 1 a doctored proof, 2 another verifier, 3 another entry shown, 4 no witness asked for
	h := c.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		switch {
		case lie.Load() == 1 && strings.Contains(r.URL.Path, "/logs/"):
			// One character of the proof's first hash, in the data the
			// page hands the verifier.
			at := bytes.Index(body, []byte(`id="verify-input"`))
			i := bytes.Index(body[at:], []byte(`index `)) + at
			j := bytes.Index(body[i:], []byte(`\n`)) + i + 2
			if at < 0 || i < at || j < i {
				t.Errorf("no proof in the page's verifier input")
				break
			}
			body = bytes.Clone(body)
			if body[j] == 'A' {
				body[j] = 'B'
			} else {
				body[j] = 'A'
			}
		case lie.Load() == 2 && strings.HasSuffix(r.URL.Path, "verify.wasm"):
			body = append(bytes.Clone(body), 0)
		case lie.Load() == 4 && strings.Contains(r.URL.Path, "/logs/"):
			body = bytes.ReplaceAll(body, []byte("quorum supervisor"), []byte("quorum none"))
		case lie.Load() == 3 && strings.Contains(r.URL.Path, "/logs/"):
			// The page shows an entry other than the one it verifies.
			body = bytes.Replace(body, []byte(`<pre class="raw" id="raw-entry">{`), []byte(`<pre class="raw" id="raw-entry">{&#34;forged&#34;:true,`), 1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	defer srv.Close()
	code, body := get(t, srv.URL+"/center/logs/access-zurich/", "application/json")
	var page LogPage
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Entries) == 0 {
		t.Fatalf("the log's page: %d %s", code, body)
	}
	index := page.Entries[0].Index
	for _, e := range page.Entries {
		if e.Justification == "THIRD_PARTY_DATA_REQUEST" {
			index = e.Index
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	check := func() (verdict, text string, ms int) {
		t.Helper()
		ctx, cancel := chromedp.NewContext(actx)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/center/logs/access-zurich/%d", srv.URL, index)),
			chromedp.WaitVisible(`#browser-check[data-verified="true"], #browser-check[data-verified="false"]`)); err != nil {
			t.Fatal(err)
		}
		var err error
		if verdict, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('browser-check').dataset.verified`)); err != nil {
			t.Fatal(err)
		}
		if text, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#browser-check .result').textContent`)); err != nil {
			t.Fatal(err)
		}
		ms, _ = chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.getElementById('browser-check').dataset.ms)`))
		return verdict, text, ms
	}
	v, text, ms := check()
	if v != "true" || !strings.Contains(text, fmt.Sprintf("is entry %d of the tree", index)) {
		t.Fatalf("an honest page: %s: %s", v, text)
	}
	t.Logf("verified in the browser in %d ms, the verifier loaded", ms)
	lie.Store(1)
	if v, text, _ := check(); v != "false" || !strings.Contains(text, "could not verify") {
		t.Errorf("a doctored proof: %s: %s", v, text)
	}
	lie.Store(2)
	if v, text, _ := check(); v != "false" || !strings.Contains(text, "not the one this page names") {
		t.Errorf("another verifier: %s: %s", v, text)
	}
	lie.Store(3)
	if v, text, _ := check(); v != "false" || !strings.Contains(text, "not the entry it hands your browser") {
		t.Errorf("another entry shown: %s: %s", v, text)
	}
	// A policy that asks for no witness is refused; and in one browser,
	// which pinned the log's key and policy the first time it checked an
	// entry of it, another policy later is caught as such.
	lie.Store(4)
	if v, text, _ := check(); v != "false" || !strings.Contains(text, "asks for no witness") {
		t.Errorf("no witness asked for: %s: %s", v, text)
	}
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	look := func() string {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Navigate(fmt.Sprintf("%s/center/logs/access-zurich/%d", srv.URL, index)),
			chromedp.WaitVisible(`#browser-check[data-verified="true"], #browser-check[data-verified="false"]`)); err != nil {
			t.Fatal(err)
		}
		text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('browser-check').dataset.verified + ': ' + document.querySelector('#browser-check .result').textContent`))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	lie.Store(0)
	if text := look(); !strings.HasPrefix(text, "true") || !strings.Contains(text, "pinned in this browser now") {
		t.Errorf("the first check in a browser: %s", text)
	}
	lie.Store(4)
	if text := look(); !strings.HasPrefix(text, "false") || !strings.Contains(text, "differs from the one your browser pinned") {
		t.Errorf("another policy after the pin: %s", text)
	}
}

// BenchmarkVerifyInBrowser measures, in Chromium, an entry page's check
// in the browser from the page's script starting to the result shown
// (loading and compiling the verifier included: the first entry), and
// then each further check of the same proof on that page.
func BenchmarkVerifyInBrowser(b *testing.B) {
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
		}
	}
	if bin == "" {
		b.Skip("chromium is not installed")
	}
	_, px := startPlatform(b)
	c, err := New(Config{Platform: px.URL, Dir: b.TempDir(), IndexEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	var first, further []float64
	for b.Loop() {
		ctx, cancel := chromedp.NewContext(actx)
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/center/logs/access-zurich/0"),
			chromedp.WaitVisible(`#browser-check[data-verified="true"], #browser-check[data-verified="false"]`)); err != nil {
			b.Fatal(err)
		}
		ms, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`Number(document.getElementById('browser-check').dataset.ms)`))
		if err != nil {
			b.Fatal(err)
		}
		each, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
			const v = JSON.parse(document.getElementById('verify-input').textContent);
			const t0 = performance.now();
			for (let i = 0; i < 100; i++) { if (!vitrineVerifyProof(v.entry, v.proof, v.vkey, v.policy).ok) throw 'not verified'; }
			return (performance.now() - t0) / 100;
		})()`))
		if err != nil {
			b.Fatal(err)
		}
		first, further = append(first, ms), append(further, each)
		cancel()
	}
	b.ReportMetric(median(first), "ms-first")
	b.ReportMetric(median(further), "ms-further")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// doctor serves h, with each answer's body changed by lie (path, body):
// a Center's server that lies to the browser.
func doctor(t *testing.T, h http.Handler, lie func(path string, body []byte) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := lie(r.URL.Path, bytes.Clone(rec.Body.Bytes()))
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestReleaseFoundInChromium: in real Chromium, a release is found by its
// artifact's sha256 through the search form, and on its page the
// reader's browser verifies the release-log entry's inclusion and the
// provenance: the envelope the entry binds, signed with the release key
// (pinned in the browser on first use), naming the entry's artifacts, and
// shown as verified. The page also shows a rebuilder's verdict and the
// update repository's offer, both checked by the Center. A Center server
// that hands the page a doctored envelope, another release key after the
// browser pinned one, or shows another provenance than the one it hands
// the verifier, is caught by the browser, naming what failed. Screenshots
// at 390 and 1280 px (VITRINE_SCREENSHOTS=DIR keeps them).
func TestReleaseFoundInChromium(t *testing.T) {
	bin := chromium(t)
	p, px := startPlatform(t)
	rb := newRebuilder(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), Rebuilders: []Rebuilder{rb.pin(t)}, IndexEvery: -1, CacheFor: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	rb.judge(t, p, rb.key, "tool", "1.2.3", 0)
	var lie atomic.Int32 // 0 honest, 1 a doctored envelope, 2 another release key, 3 another provenance shown
	other, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := string(release.PublicKey(other.Public().(ed25519.PublicKey)).PEM())
	srv := doctor(t, c.Handler(), func(path string, body []byte) []byte {
		if !strings.HasPrefix(path, "/center/releases/") {
			return body
		}
		at := bytes.Index(body, []byte(`id="verify-input"`))
		if at < 0 {
			t.Errorf("no verifier input in the release's page")
			return body
		}
		switch lie.Load() {
		case 1:
			// One character of the envelope's payload, in what the page
			// hands the verifier.
			i := bytes.Index(body[at:], []byte(`payload\"`)) + at + 40
			if i < at+40 {
				t.Errorf("no envelope in the page's verifier input")
				return body
			}
			if body[i] == 'A' {
				body[i] = 'B'
			} else {
				body[i] = 'A'
			}
		case 2:
			// The whole input, with another release key in it.
			start := bytes.IndexByte(body[at:], '>') + at + 1
			end := bytes.Index(body[start:], []byte("</script>")) + start
			var v VerifyInput
			if err := json.Unmarshal(body[start:end], &v); err != nil {
				t.Errorf("the verifier input: %v", err)
				return body
			}
			v.ReleaseKey = otherPEM
			b, _ := json.Marshal(v) // escapes <, > and &, as a script needs
			body = append(body[:start:start], append(b, body[end:]...)...)
		case 3:
			body = bytes.Replace(body, []byte(`data-provenance="toolchain">go1.26.8`), []byte(`data-provenance="toolchain">go1.99.0`), 1)
		}
		return body
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	shots := os.Getenv("VITRINE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	// look opens the page in tab (a browser's storage is shared by its
	// tabs) and returns the overall verdict, its text and each check's.
	type result struct {
		Verified, Text string
		Checks         map[string]string
		Overflow       bool
	}
	look := func(ctx context.Context, width int64, navigate []chromedp.Action[chromedp.Void], shot string) result {
		t.Helper()
		steps := append([]chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(width, 900)}, navigate...)
		if err := chromedp.Do(ctx, append(steps, chromedp.WaitVisible("#browser-check"))...); err != nil {
			t.Fatalf("the release's page: %v", err)
		}
		// Polled, not WaitVisible: a check that never ends fails the
		// test with what the page says.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('browser-check').dataset.verified + ': ' + document.querySelector('#browser-check .result').textContent`))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(v, "pending") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the browser's check did not end within a minute: %s", v)
			}
		}
		r, err := chromedp.Run(ctx, chromedp.Evaluate[result](`({verified: document.getElementById('browser-check').dataset.verified,
			text: document.querySelector('#browser-check .result').textContent,
			checks: Object.fromEntries(Array.from(document.querySelectorAll('#release-checks li'), (li) => [li.dataset.check, li.dataset.verified + ': ' + li.querySelector('.why').textContent])),
			overflow: document.documentElement.scrollWidth > window.innerWidth})`))
		if err != nil {
			t.Fatal(err)
		}
		if shot != "" {
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(shots, shot), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	sum := sha256.Sum256([]byte("\x7fELF tool"))
	search := []chromedp.Action[chromedp.Void]{chromedp.Navigate(srv + "/"), chromedp.WaitVisible("#q"), chromedp.SendKeys("#q", hex.EncodeToString(sum[:])+"\n")}
	page := []chromedp.Action[chromedp.Void]{chromedp.Navigate(srv + "/center/releases/tool/1.2.3")}
	allTrue := func(r result) bool {
		for _, name := range []string{"inclusion", "envelope", "signature", "subjects", "shown"} {
			if !strings.HasPrefix(r.Checks[name], "true") {
				return false
			}
		}
		return r.Verified == "true"
	}

	browser, cancel := chromedp.NewContext(actx)
	defer cancel()
	r := look(browser, 1280, search, "release-desktop.png")
	title, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector('h1').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if title != "tool 1.2.3" || !allTrue(r) || !strings.Contains(r.Text, "pinned now") || r.Overflow {
		t.Fatalf("the release found by its artifact: %q: %+v", title, r)
	}
	marks, err := chromedp.Run(browser, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('[data-verified]'), (e) => e.dataset.verified).join(' ')`))
	if err != nil {
		t.Fatal(err)
	}
	// The browser's check and its five, the provenance, the verdict, the
	// update repository's offer and the reviews: all verified.
	if n := strings.Count(marks, "true"); n < 9 || strings.Contains(marks, "false") || strings.Contains(marks, "pending") {
		t.Errorf("the release's page marks %q, want everything verified", marks)
	}
	if r := look(browser, 390, page, "release-phone.png"); !allTrue(r) || r.Overflow {
		t.Errorf("at 390 px: %+v", r)
	}

	// A Center that hands the page a doctored envelope.
	lie.Store(1)
	fresh, cancel := chromedp.NewContext(actx)
	defer cancel()
	r = look(fresh, 1280, page, "release-doctored.png")
	if r.Verified != "false" || !strings.HasPrefix(r.Checks["envelope"], "false: the envelope has digest") || !strings.HasPrefix(r.Checks["inclusion"], "true") ||
		!strings.HasPrefix(r.Checks["signature"], "false") || !strings.Contains(r.Text, "not the envelope the entry binds") {
		t.Errorf("a doctored envelope: %+v", r)
	}
	// Another release key, in the browser that pinned the real one.
	lie.Store(2)
	r = look(browser, 1280, page, "")
	if r.Verified != "false" || !strings.Contains(r.Checks["signature"], "differs from the one it pinned") {
		t.Errorf("another release key after the pin: %+v", r)
	}
	// Another release key, in a browser that pinned none: the signature
	// does not verify under it.
	other2, cancel := chromedp.NewContext(actx)
	defer cancel()
	if r := look(other2, 1280, page, ""); r.Verified != "false" || !strings.Contains(r.Checks["signature"], "signature") || !strings.HasPrefix(r.Checks["signature"], "false") {
		t.Errorf("another release key: %+v", r)
	}
	// Another provenance shown than the one verified.
	lie.Store(3)
	if r := look(browser, 1280, page, ""); r.Verified != "false" || !strings.Contains(r.Checks["shown"], "toolchain") || !strings.HasPrefix(r.Checks["envelope"], "true") {
		t.Errorf("another provenance shown: %+v", r)
	}
	// The rebuilder's latest verdict: not reproduced, the file that
	// differs named.
	lie.Store(0)
	rb.judge(t, p, rb.key, "tool", "1.2.3", 0, "tool_linux_amd64")
	look(browser, 390, page, "release-not-reproduced.png")
	said, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector('.verdict [data-reproduced]').dataset.verified + ' ' +
		document.querySelector('.verdict [data-reproduced]').dataset.reproduced + ' ' + document.querySelector('.verdict-files .differs strong').textContent`))
	if err != nil || said != "true false tool_linux_amd64" {
		t.Errorf("a verdict that did not reproduce: %q %v", said, err)
	}
	// The overview's newest releases, with their rebuild status, on a
	// phone.
	if err := chromedp.Do(browser, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv+"/"), chromedp.WaitVisible("#releases")); err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector('#releases ~ .table tbody td:last-child').textContent + (document.documentElement.scrollWidth > window.innerWidth ? ' (wider than the screen)' : '')`))
	if err != nil || status != "✗ NOT reproduced (1 of 1 rebuilders)" {
		t.Errorf("the overview's rebuild status: %q %v", status, err)
	}
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(shots, "overview-rebuilds.png"), png, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestResidencyInChromium: the residency page in real Chromium at a
// phone's width (390 px) and a desktop's: the map scales to the screen
// with every country drawn, nothing is wider than the screen, and the
// relocation made on the platform is marked verified. The filter form,
// submitted, leaves one country in the table; a click on a country of
// the map goes to its row. Screenshots go to the test's directory
// (VITRINE_SCREENSHOTS=DIR keeps them).
func TestResidencyInChromium(t *testing.T) {
	bin := chromium(t)
	p, px := startPlatform(t)
	relocateCountry(t, p, "DE", "moscow")
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	shots := os.Getenv("VITRINE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	eval := func(ctx context.Context, js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, width := range []int64{390, 1280} {
		ctx, cancel := chromedp.NewContext(actx)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(srv+"/center/residency"), chromedp.WaitVisible("figure.worldmap svg")); err != nil {
			t.Fatal(err)
		}
		got := eval(ctx, `[document.querySelectorAll('figure.worldmap path[data-code]').length,
			Math.round(document.querySelector('figure.worldmap svg').getBoundingClientRect().width) <= window.innerWidth,
			document.documentElement.scrollWidth > window.innerWidth,
			document.querySelectorAll('article.relocation[data-verified="true"]').length,
			document.querySelectorAll('article.relocation[data-verified="false"]').length].join(' ')`)
		if got != "173 true false 1 0" {
			t.Errorf("at %d px: shapes, map within the screen, wider than the screen, relocations verified and not: %s; want 173 true false 1 0", width, got)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("residency-%d.png", width)), png, 0o644); err != nil {
			t.Fatal(err)
		}
		// The top of the page as the screen shows it first, and the
		// relocations.
		top, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		rel, err := chromedp.Run(ctx, chromedp.Screenshot(`section[aria-labelledby="relocations"]`))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"top": top, "relocations": rel} {
			if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("residency-%d-%s.png", width, name)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
	}

	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv+"/center/residency"), chromedp.WaitVisible("#country-q"),
		chromedp.SendKeys("#country-q", "Côte\n"), chromedp.WaitVisible("p.filtered")); err != nil {
		t.Fatal(err)
	}
	if got := eval(ctx, `location.search + location.hash + ' ' + document.querySelectorAll('[aria-labelledby=countries] tbody tr').length + ' ' + document.querySelector('[aria-labelledby=countries] tbody th').textContent`); got != "?q=C%C3%B4te#countries 1 Côte d'Ivoire" {
		t.Errorf("the filter submitted: %s", got)
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(shots, "residency-filtered.png"), png, 0o644)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/center/residency"), chromedp.WaitVisible(`path[data-code="BR"]`),
		chromedp.Click(`path[data-code="BR"]`), chromedp.WaitReady(`tr:target`)); err != nil {
		t.Fatal(err)
	}
	if got := eval(ctx, `location.hash + ' ' + document.querySelector('tr:target th').textContent`); got != "#BR Brazil" {
		t.Errorf("a click on Brazil on the map: %s", got)
	}
}

// TestSourceDiffInChromium: in real Chromium, at 390 px and 1280 px, a
// release's page offers the diff from the version before; the form's
// button shows the source diff between the two versions, both archives
// marked verified, lines added and removed, and nothing wider than the
// screen; a line number of the diff leads to that line of the file, which
// the page highlights; a rule database's diff lists the signature added
// and the one removed; over a platform that serves another source
// archive, the diff is refused, marked unverified. Screenshots go to the test's directory
// (VITRINE_SCREENSHOTS=DIR keeps them).
func TestSourceDiffInChromium(t *testing.T) {
	bin := chromium(t)
	p := startSources(t)
	c, err := New(Config{Platform: p.URL(), Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	shots := os.Getenv("VITRINE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	shot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, width := range []int64{390, 1280} {
		size := map[int64]string{390: "phone", 1280: "desktop"}[width]
		ctx, cancel := chromedp.NewContext(actx)
		// The release's page, its compare form submitted from the
		// keyboard: the version before is the one selected.
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(srv+"/center/releases/tool/1.1.0"),
			chromedp.WaitVisible("form.compare button")); err != nil {
			t.Fatal(err)
		}
		shot(ctx, "source-release-"+size+".png")
		if err := chromedp.Do(ctx, chromedp.Focus("form.compare button"), chromedp.KeyEvent("\r"), chromedp.WaitVisible(".file-diff")); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[location.pathname + location.search, document.querySelector('h1').textContent,
			document.querySelectorAll('[data-verified="true"]').length, document.querySelectorAll('[data-verified="false"]').length,
			document.querySelectorAll('.file-diff').length, document.querySelectorAll('tr.add').length, document.querySelectorAll('tr.del').length,
			document.documentElement.scrollWidth > window.innerWidth].join(' | ')`))
		if err != nil {
			t.Fatal(err)
		}
		if want := "/center/releases/tool/1.1.0/diff?from=1.0.0 | tool: 1.0.0 → 1.1.0 | 1 | 0 | 5 | 3 | 3 | false"; got != want {
			t.Errorf("at %d px, the diff: %s, want %s", width, got, want)
		}
		shot(ctx, "source-diff-"+size+".png")
		// The new side's line number of the changed line leads to it.
		if err := chromedp.Do(ctx, chromedp.Click(`#`+fileID("main.go")+` tr.add td.ln a`), chromedp.WaitVisible("table.lines")); err != nil {
			t.Fatal(err)
		}
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](`[location.pathname + location.hash, document.querySelector('tr:target') && document.querySelector('tr:target').id,
			getComputedStyle(document.querySelector('tr:target td.lc')).backgroundColor, document.documentElement.scrollWidth > window.innerWidth].join(' | ')`))
		if err != nil {
			t.Fatal(err)
		}
		if want := "/center/releases/tool/1.1.0/source/main.go#L4 | L4 | rgb(255, 248, 197) | false"; got != want {
			t.Errorf("at %d px, the line the diff links to: %s, want %s", width, got, want)
		}
		shot(ctx, "source-file-"+size+".png")
		if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/center/releases/tool/1.1.0/source/"), chromedp.WaitVisible("table.tree")); err != nil {
			t.Fatal(err)
		}
		shot(ctx, "source-tree-"+size+".png")
		// A rule database's signatures added and removed.
		if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/center/releases/rules/2/diff?from=1"), chromedp.WaitVisible("table.sigs")); err != nil {
			t.Fatal(err)
		}
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](`[document.querySelectorAll('[data-verified="true"]').length,
			document.querySelectorAll('table.sigs tr.add').length, document.querySelectorAll('table.sigs tr.del').length,
			document.documentElement.scrollWidth > window.innerWidth].join(' | ')`))
		if err != nil {
			t.Fatal(err)
		}
		if want := "2 | 1 | 1 | false"; got != want {
			t.Errorf("at %d px, the rule database's diff: %s, want %s", width, got, want)
		}
		shot(ctx, "source-ruledb-"+size+".png")
		cancel()
	}

	// A platform that serves another source archive: the diff says so,
	// and shows nothing of it.
	evil, _ := archive(t, map[string]string{"main.go": "package evil\n"})
	lie := &lyingTransport{}
	lie.body.Store(evil)
	lie.suffix.Store("/tool/1.1.0/source.tar.gz")
	c, err = New(Config{Platform: p.URL(), Dir: t.TempDir(), HTTPClient: &http.Client{Transport: lie, Timeout: 30 * time.Second}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(newServer(t, c)+"/center/releases/tool/1.1.0/diff?from=1.0.0"), chromedp.WaitVisible("h1")); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[document.querySelectorAll('[data-verified="true"]').length, document.querySelectorAll('[data-verified="false"]').length,
		document.querySelectorAll('.file-diff').length, document.body.textContent.includes('evil'), document.documentElement.scrollWidth > window.innerWidth].join(' | ')`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0 | 1 | 0 | false | false"; got != want {
		t.Errorf("over a platform that serves another archive: %s, want %s", got, want)
	}
	shot(ctx, "source-diff-refused.png")
}

// fileID is the anchor of a file's diff on a diff page.
func fileID(p string) string {
	sum := sha256.Sum256([]byte(p))
	return "diff-" + hex.EncodeToString(sum[:8])
}

// TestReviewRecordedInChromium: in real Chromium, an auditor opens a
// release's page, pastes its token into the review form, picks a verdict,
// names a file and writes notes, and sends it: the page it lands on says
// the review was recorded, and shows it with its proof verified in the
// browser, as the auditor's earlier review is; nothing is wider than the
// screen at 390 px or at 1280 px. The supervisor's page has its alert's
// proof verified in the browser too. Screenshots go to the test's
// directory (VITRINE_SCREENSHOTS=DIR keeps them).
func TestReviewRecordedInChromium(t *testing.T) {
	bin := chromium(t)
	p, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	token := newPrincipal(t, p, "auditor:bob")
	shots := os.Getenv("VITRINE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	settled := `document.querySelectorAll('section.browser-check[data-verified="pending"]').length === 0`
	for i, width := range []int64{390, 1280} {
		name := map[int64]string{390: "phone", 1280: "desktop"}[width]
		tctx, tcancel := context.WithTimeout(actx, 3*time.Minute)
		defer tcancel()
		ctx, cancel := chromedp.NewContext(tctx)
		notes := fmt.Sprintf("Review %d: the update check follows redirects.\nSee update.go.", i)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(srv+"/center/releases/tool/1.2.3"),
			chromedp.WaitVisible("#review-form"),
			chromedp.SendKeys("#review-token", token),
			chromedp.Click(`input[name="verdict"][value="concerns"]`),
			chromedp.SendKeys("#review-notes", notes),
			chromedp.Submit("#review-form"),
			chromedp.WaitVisible(`.notice, #review-error`)); err != nil {
			t.Fatalf("at %d px: %v", width, err)
		}
		if refused, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById('review-error') || {textContent: ''}).textContent`)); refused != "" {
			t.Fatalf("at %d px the form was refused: %s", width, refused)
		}
		if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](settled)); err != nil {
			t.Fatalf("at %d px the checks did not settle: %v", width, err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
			const a = document.querySelector('article.review');
			const box = a.querySelector('section.browser-check');
			return [location.pathname + location.search, a.id, a.querySelector('.verdict').textContent, a.querySelector('.notes').textContent,
				box.dataset.verified, box.querySelector('.result').textContent, document.getElementById('review-token').value,
				document.querySelectorAll('section.browser-check[data-verified="true"]').length, document.querySelectorAll('[data-verified="false"]').length].join('|');
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(got, "|")
		if len(f) != 9 || !strings.HasPrefix(f[0], "/center/releases/tool/1.2.3?recorded=") || f[2] != "concerns" || f[3] != notes ||
			f[4] != "true" || !strings.Contains(f[5], "Verified in your browser") || !strings.Contains(f[5], "/logs/review") || f[6] != "" || f[7] != fmt.Sprint(3+i) || f[8] != "0" {
			t.Errorf("at %d px, after the form: %q", width, f)
		}
		if strings.Contains(f[0], token) {
			t.Error("the token is in the page's URL")
		}
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
		if err != nil || overflow {
			t.Errorf("at %d px the release page is wider than the screen (%v)", width, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(shots, "review-"+name+".png"), png, 0o644)
		// The supervisor's page: its alerts' proofs verified here too.
		if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/center/supervisor"), chromedp.WaitVisible("h1"), chromedp.Poll[chromedp.Void](settled)); err != nil {
			t.Fatalf("at %d px, the supervisor's page: %v", width, err)
		}
		got, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelectorAll('section.browser-check[data-verified="true"]').length + '|' +
			document.querySelectorAll('[data-verified="false"]').length + '|' + (document.documentElement.scrollWidth > window.innerWidth)`))
		if err != nil || got != "1|0|false" {
			t.Errorf("at %d px, the supervisor's page: %q (checked in the browser | unverified | wider than the screen), %v", width, got, err)
		}
		if png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(shots, "supervisor-"+name+".png"), png, 0o644)
		}
		cancel()
	}
}
