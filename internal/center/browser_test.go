package center

import (
	"bytes"
	"context"
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

// TestReleaseFoundInChromium: in real Chromium, a release is found by its
// artifact's sha256 through the search form's route, and its page shows
// the provenance verified and the release-log entry's proof verified in
// the browser.
func TestReleaseFoundInChromium(t *testing.T) {
	bin := chromium(t)
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	sum := sha256.Sum256([]byte("\x7fELF tool"))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/"), chromedp.WaitVisible("#q"),
		chromedp.SendKeys("#q", hex.EncodeToString(sum[:])+"\n"),
		chromedp.WaitVisible(`#browser-check[data-verified="true"], #browser-check[data-verified="false"]`)); err != nil {
		t.Fatal(err)
	}
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('h1').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	verdict, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('browser-check').dataset.verified + ' ' + document.querySelectorAll('[data-verified="true"]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if title != "tool 1.2.3" || !strings.HasPrefix(verdict, "true ") { // the browser's check, the provenance, the review
		t.Errorf("the release found by its artifact: %q, verified: %s", title, verdict)
	}
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
		tctx, tcancel := context.WithTimeout(actx, time.Minute)
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
