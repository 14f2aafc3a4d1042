package center

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond})
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
		if v != 5 || u != 0 || overflow {
			t.Errorf("at %d px: %d verified, %d unverified, wider than the screen: %v; want 5, 0, false", w, v, u, overflow)
		}
	}
	px.Tell(liar.Checkpoint)
	// The other three logs, and the alert (its proof carries its own
	// checkpoint), still verify.
	if v, u, _ := look(1280, "overview-lying.png"); u < 2 || v != 4 {
		t.Errorf("over a lying proxy: %d verified, %d unverified; want the other three logs and the alert verified and the lie shown", v, u)
	}
}
