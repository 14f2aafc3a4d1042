package center

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/liar"
)

// browser starts headless Chromium and returns a function that opens a
// new tab in it.
func browser(t *testing.T) func() context.Context {
	t.Helper()
	bin := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(actx)
		t.Cleanup(cancel)
		ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
}

// screenshot writes the tab's page, whole, as name into
// VITRINE_SCREENSHOTS (or the test's directory), and reports whether
// anything is wider than the screen.
func screenshot(t *testing.T, ctx context.Context, name string) (overflow bool) {
	t.Helper()
	dir := os.Getenv("VITRINE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	overflow, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	return overflow
}

// TestReceiptInChromium: an analyst's read answers with a receipt; the
// receipt, typed into the Center's search in real Chromium, leads to the
// access record's page, whose proof the browser verifies. Over a proxy
// that then flips a bit of the log's hash tiles, the same page is the
// failure, marked unverified and naming it, with nothing of the entry.
func TestReceiptInChromium(t *testing.T) {
	tab := browser(t)
	p, px := startPlatform(t)
	var pr struct{ Token string }
	call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"analyst:rcpt","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)
	req, _ := http.NewRequest("GET", p.URL()+"/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 42), nil)
	req.Header.Set("Authorization", "Bearer "+pr.Token)
	req.Header.Set(access.Header, "CUSTOMER_INITIATED_SUPPORT; case 991")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the read: %v %v", resp, err)
	}
	resp.Body.Close()
	receipt := resp.Header.Get(access.ReceiptHeader)
	if receipt == "" {
		t.Fatal("the read has no receipt")
	}
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)

	ctx := tab()
	var verdict, text, who string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		// The receipt is given once the record is appended; the Center
		// finds it once a checkpoint covers it.
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv+"/"), chromedp.WaitVisible("#q"),
			chromedp.SendKeys("#q", receipt+"\n"), chromedp.WaitNotPresent("#q:focus"), chromedp.WaitVisible("main h1")); err != nil {
			t.Fatal(err)
		}
		h1, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + ': ' + document.querySelector('main').textContent`))
		if strings.HasPrefix(h1, "/center/logs/") && !strings.Contains(h1, "404") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receipt %q did not lead to its entry within a minute: %s", receipt, h1)
		}
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#browser-check[data-verified="true"], #browser-check[data-verified="false"]`)); err != nil {
		t.Fatal(err)
	}
	if verdict, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('browser-check').dataset.verified`)); err != nil {
		t.Fatal(err)
	}
	text, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#browser-check .result').textContent`))
	who, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.textContent`))
	_, index, _ := strings.Cut(receipt, " ")
	if verdict != "true" || !strings.Contains(text, "is entry "+index+" of the tree") || !strings.Contains(who, "analyst:rcpt") || !strings.Contains(who, "case 991") {
		t.Errorf("the receipt's entry in the browser: %s: %s", verdict, text)
	}
	if screenshot(t, ctx, "receipt-phone.png") {
		t.Error("the entry's page is wider than a phone")
	}

	px.Tell(liar.Tile)
	ctx = tab()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv+"/center/logs/access-zurich/"+index), chromedp.WaitVisible("h1")); err != nil {
		t.Fatal(err)
	}
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-verified="false"]')?.textContent ?? ''`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.textContent`))
	if !strings.Contains(page, "did not verify") || strings.Contains(body, "case 991") || strings.Contains(body, `data-verified="true"`) {
		t.Errorf("the entry's page over a doctored tile: %q", page)
	}
	screenshot(t, ctx, "tampered-tile.png")
}

// TestReportInChromium: the transparency report in real Chromium shows
// the figures `vitrine report` computes (ComputeReport, from its own
// state): totals, each month's row and bar; readable on a phone.
func TestReportInChromium(t *testing.T) {
	tab := browser(t)
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	ctx := tab()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 900), chromedp.Navigate(srv+"/center/report"), chromedp.WaitVisible("h1")); err != nil {
		t.Fatal(err)
	}
	want, err := ComputeReport(context.Background(), http.DefaultClient, px.URL, t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tiles, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[aria-label="Totals"] .figure')].map(e => e.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	wantTiles := []string{fmt.Sprint(want.Totals.Accesses), fmt.Sprint(want.Totals.RecordsReleased), fmt.Sprint(want.Totals.ThirdPartyGranted), fmt.Sprint(want.Totals.ThirdPartyDenied)}
	if strings.Join(tiles, " ") != strings.Join(wantTiles, " ") {
		// The platform may log its own processing between the two counts.
		t.Errorf("the page's totals %v, vitrine report's %v", tiles, wantTiles)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('figure.chart rect.all title')].map(e => e.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	var wantBars []string
	for _, m := range want.Months {
		wantBars = append(wantBars, fmt.Sprintf("%s: %d accesses", m.Month, m.Accesses))
	}
	if strings.Join(bars, "|") != strings.Join(wantBars, "|") {
		t.Errorf("the chart's bars %q, vitrine report's months %q", bars, wantBars)
	}
	if screenshot(t, ctx, "report-phone.png") {
		t.Error("the report is wider than a phone")
	}
}

// TestAccessesInChromium: the index's page in real Chromium: the filter
// form, filled in and sent, selects the third party's read; each row
// marked proven; at a phone's width and a desktop's, nothing wider than
// the screen.
func TestAccessesInChromium(t *testing.T) {
	tab := browser(t)
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c)
	if err := c.UpdateIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, width := range []int64{390, 1280} {
		ctx := tab()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(srv+"/center/accesses"), chromedp.WaitVisible("form.filters"),
			chromedp.SetValue(`select[name="justification"]`, "THIRD_PARTY_DATA_REQUEST"),
			chromedp.Submit(`form.filters button`), chromedp.WaitVisible(`select[name="justification"]`)); err != nil {
			t.Fatal(err)
		}
		var rows []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			rows, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`location.search.includes('THIRD_PARTY') ? [...document.querySelectorAll('tbody tr')].map(r => r.textContent.replace(/\s+/g, ' ').trim() + ' ' + r.querySelector('[data-verified]').dataset.verified) : []`))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) > 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(rows) != 1 || !strings.Contains(rows[0], "analyst:jdoe") || !strings.HasSuffix(rows[0], "true") {
			t.Errorf("at %d px, the third party's reads: %q", width, rows)
		}
		if screenshot(t, ctx, fmt.Sprintf("accesses-%d.png", width)) {
			t.Errorf("at %d px the page is wider than the screen", width)
		}
	}
}
