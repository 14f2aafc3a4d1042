package center

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/review"
	"github.com/vitrine-dev/vitrine/tlog"
)

// ReviewState is one review of a release, read from the review log with
// its proof.
type ReviewState struct {
	Index   uint64    `json:"index"` // in the review log
	Auditor string    `json:"auditor"`
	Verdict string    `json:"verdict"`
	Time    time.Time `json:"time"`
	Files   []string  `json:"files"`
	Notes   string    `json:"notes"`
	// Bound: the review names the release-log entry this page shows
	// (its index and SHA-256); a review of the same name and version
	// bound to another entry is shown, marked unbound.
	Bound bool `json:"bound"`
	// Verified: proven in the review log's checkpoint that this Center
	// verified; Raw and Proof are the entry and its tlog-proof, which
	// the reader's browser checks too.
	Verified bool        `json:"verified"`
	Raw      string      `json:"raw"`
	Proof    string      `json:"proof"`
	Verify   VerifyInput `json:"-"`
}

// ReviewForm is what the release page's review form needs: its anti-CSRF
// token, and after a refused submission the error and what was typed
// (never the auditor's token).
type ReviewForm struct {
	Token    string
	Error    string
	Verdict  string
	Files    string
	Notes    string
	Recorded *uint64 // the review just recorded, after the redirect
}

// maxReviewsShown bounds the reviews a release page shows, and proves.
const maxReviewsShown = 50

// reviews reads the review log, every entry proven, and returns the
// newest reviews of the release name version, whose release-log entry is
// entry at index, each with its proof.
func (c *Center) reviews(ctx context.Context, name, version string, index uint64, entry []byte) ([]ReviewState, error) {
	out := []ReviewState{}
	l, cp, pins, err := c.openLog(ctx, "review")
	if err != nil {
		return out, err
	}
	entries, err := c.entries(ctx, "review", l)
	if err != nil {
		return out, err
	}
	l = memoized(l)
	digest := release.Digest(entry)
	for i := min(uint64(len(entries)), cp.Size); i > 0 && len(out) < maxReviewsShown; i-- {
		r, err := review.Parse(entries[i-1])
		if err != nil || r.Release.Name != name || r.Release.Version != version {
			continue
		}
		raw, proof, err := l.Entry(ctx, cp, i-1)
		if err != nil {
			return out, err
		}
		out = append(out, ReviewState{Index: i - 1, Auditor: r.Auditor, Verdict: string(r.Verdict), Time: r.Time, Files: r.Files, Notes: r.Notes,
			Bound: r.Release.Index == index && r.Release.Entry == digest, Verified: true, Raw: string(raw), Proof: string(proof.Marshal()),
			Verify: VerifyInput{Entry: string(raw), Proof: string(proof.Marshal()), VKey: pins.LogKeys["review"], Policy: pins.WitnessPolicy, Index: i - 1, Origin: l.Origin()}})
	}
	return out, nil
}

// The review form is protected against cross-site requests twice: the
// browser's Sec-Fetch-Site or Origin must say the request comes from this
// Center (http.CrossOriginProtection), and the form carries a token that
// is the HMAC, under a key of this Center, of a random cookie set with the
// page (a signed double-submit cookie). The auditor's token itself is no
// cookie: a forged request could not carry it anyway.
const formCookie = "vitrine-review-form"

// formToken returns the form's token for the cookie value v.
func (c *Center) formToken(v string) string {
	m := hmac.New(sha256.New, c.formKey)
	m.Write([]byte("vitrine review form\x00" + v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// reviewForm returns the form of a release page, setting its cookie if
// the request has none.
func (c *Center) reviewForm(w http.ResponseWriter, r *http.Request) *ReviewForm {
	v := ""
	if ck, err := r.Cookie(formCookie); err == nil && len(ck.Value) == 43 {
		v = ck.Value
	} else {
		b := make([]byte, 32)
		rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: formCookie, Value: v, Path: "/center/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	}
	f := &ReviewForm{Token: c.formToken(v)}
	if s := r.URL.Query().Get("recorded"); s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			f.Recorded = &n
		}
	}
	return f
}

// maxReviewForm bounds the form's body: the notes, the files, the rest.
const maxReviewForm = 64 << 10

// serveReviewPost is POST /center/releases/{name}/{version}/reviews: the
// review form. It forwards the review, with the auditor's token, to the
// platform's POST /v1/reviews, checks the answer's proof under the pinned
// review-log key and witness policy, and sends the browser back to the
// release page, which shows the review. The token goes nowhere else: it
// is not logged, stored, put in a URL or shown again.
func (c *Center) serveReviewPost(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	if err := c.csrf.Check(r); err != nil {
		httpapi.Error(w, http.StatusForbidden, "a review is recorded only from this Center's own form: "+err.Error())
		return
	}
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(mt) != "application/x-www-form-urlencoded" {
		httpapi.Error(w, http.StatusUnsupportedMediaType, "send the review form as application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxReviewForm)
	if err := r.ParseForm(); err != nil {
		httpapi.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the review form is larger than %d bytes", maxReviewForm))
		return
	}
	form := &ReviewForm{Verdict: r.PostForm.Get("verdict"), Files: r.PostForm.Get("files"), Notes: strings.ReplaceAll(r.PostForm.Get("notes"), "\r\n", "\n")}
	ck, err := r.Cookie(formCookie)
	if err != nil || !hmac.Equal([]byte(c.formToken(ck.Value)), []byte(r.PostForm.Get("form"))) {
		c.refuseReview(w, r, http.StatusForbidden, form, "the form has expired or did not come from this page: reload the page and send it again")
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	req := struct {
		Name    string   `json:"name"`
		Version string   `json:"version"`
		Entry   string   `json:"entry"`
		Files   []string `json:"files,omitempty"`
		Verdict string   `json:"verdict"`
		Notes   string   `json:"notes"`
	}{Name: name, Version: version, Verdict: form.Verdict, Notes: form.Notes}
	for _, f := range strings.Split(strings.ReplaceAll(form.Files, "\r\n", "\n"), "\n") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(req.Files, f) {
			req.Files = append(req.Files, f)
		}
	}
	switch {
	case token == "":
		c.refuseReview(w, r, http.StatusUnauthorized, form, "sign in: paste your auditor token")
		return
	case !slices.Contains(review.Verdicts, review.Verdict(req.Verdict)):
		c.refuseReview(w, r, http.StatusBadRequest, form, "choose a verdict: approved, concerns or rejected")
		return
	case len(req.Notes) > review.MaxNotes:
		c.refuseReview(w, r, http.StatusBadRequest, form, fmt.Sprintf("the notes are %d bytes: at most %d", len(req.Notes), review.MaxNotes))
		return
	case len(req.Files) > review.MaxFiles:
		c.refuseReview(w, r, http.StatusBadRequest, form, fmt.Sprintf("%d files: at most %d", len(req.Files), review.MaxFiles))
		return
	}
	for _, f := range req.Files {
		if err := review.CheckPath(f); err != nil {
			c.refuseReview(w, r, http.StatusBadRequest, form, err.Error())
			return
		}
	}
	if err := tokenTransport(c.cfg.Platform); err != nil {
		c.refuseReview(w, r, http.StatusServiceUnavailable, form, err.Error())
		return
	}
	ctx := r.Context()
	l, _, pins, err := c.openLog(ctx, "release")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	index, _, ok, err := c.findRelease(ctx, l, name, version, "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !ok {
		httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("no release %s %s in the release log", name, version))
		return
	}
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	req.Entry = release.Digest(entries[index])
	body, _ := json.Marshal(req)
	var ans struct {
		Index uint64 `json:"index"`
		Entry string `json:"entry"`
		Proof string `json:"proof"`
	}
	if err := client.Call(ctx, c.cfg.HTTPClient, http.MethodPost, c.cfg.Platform+"/v1/reviews", token, body, 1<<20, &ans); err != nil {
		var se *client.StatusError
		if errors.As(err, &se) && se.Status/100 == 4 {
			c.refuseReview(w, r, se.Status, form, "the platform refused the review: "+se.Message)
			return
		}
		c.refuseReview(w, r, http.StatusBadGateway, form, "the platform did not record the review: "+strings.ReplaceAll(err.Error(), token, "…"))
		return
	}
	// The platform's answer is checked before the reader is told: the
	// entry is the review asked for, and its proof verifies under the
	// pinned key and witness policy.
	if err := checkRecorded(pins, ans.Index, ans.Entry, ans.Proof, req.Name, req.Version, req.Entry, req.Verdict, req.Notes, req.Files); err != nil {
		c.refuseReview(w, r, http.StatusBadGateway, form, "the platform's answer did not verify: "+err.Error())
		return
	}
	c.cfg.Logger.InfoContext(ctx, "review recorded through the Center", "release", name, "version", version, "review_index", ans.Index)
	http.Redirect(w, r, fmt.Sprintf("/center/releases/%s/%s?recorded=%d#review-%d", url.PathEscape(name), url.PathEscape(version), ans.Index, ans.Index), http.StatusSeeOther)
}

// checkRecorded checks the platform's answer to a review: entry is the
// review of name version bound to the release entry digest, with that
// verdict, notes and files, and proof proves it at index under the
// pinned review-log key and witness policy.
func checkRecorded(pins *client.Pins, index uint64, entry, proof, name, version, digest, verdict, notes string, files []string) error {
	rv, err := review.Parse([]byte(entry))
	if err != nil {
		return err
	}
	want := slices.Sorted(slices.Values(files))
	if rv.Release.Name != name || rv.Release.Version != version || rv.Release.Entry != digest || string(rv.Verdict) != verdict || rv.Notes != notes || !slices.Equal(rv.Files, want) {
		return errors.New("the review logged is not the one sent")
	}
	v, err := note.NewVerifier(pins.LogKeys["review"])
	if err != nil {
		return fmt.Errorf("the pinned review-log key: %w", err)
	}
	policy, err := tlog.ParsePolicy([]byte(pins.WitnessPolicy))
	if err != nil {
		return err
	}
	_, err = tlog.VerifyEntry([]byte(proof), index, []byte(entry), v, policy)
	return err
}

// tokenTransport refuses to forward an auditor's token to a platform over
// plain http, unless on this machine.
func tokenTransport(platform string) error {
	u, err := url.Parse(platform)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if u.Scheme == "https" || u.Scheme == "http" && (host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()) {
		return nil
	}
	return fmt.Errorf("this Center reaches its platform over plain http (%s): it forwards no token over it; record the review with POST /v1/reviews on the platform itself", u.Host)
}

// refuseReview shows the release page again with the form's error and
// what was typed, with status.
func (c *Center) refuseReview(w http.ResponseWriter, r *http.Request, status int, form *ReviewForm, msg string) {
	page, err := c.releasePage(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		httpapi.Error(w, status, msg)
		return
	}
	f := c.reviewForm(w, r)
	form.Token, form.Error = f.Token, msg
	page.Form = form
	c.renderStatus(w, r, status, "release.html", page)
}

// loadFormKey returns the key of the review form's tokens, in dir.
func loadFormKey(dir string) ([]byte, error) {
	k, err := keys.LoadOrCreateToken(filepath.Join(dir, "form.key"))
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	return []byte(k), nil
}

// EntryCheck is an entry the reader's browser checks among others on a
// page: ID names its elements.
type EntryCheck struct {
	ID     string
	Verify VerifyInput
}

// Check is what the reader's browser checks of the review.
func (r ReviewState) Check() EntryCheck {
	return EntryCheck{ID: fmt.Sprintf("review-%d-entry", r.Index), Verify: r.Verify}
}

// Check is what the reader's browser checks of the alert: nil for an
// alert without a verified proof of an entry that is text.
func (a AlertState) Check() *EntryCheck {
	if a.Verify == nil {
		return nil
	}
	return &EntryCheck{ID: a.Anchor + "-entry", Verify: *a.Verify}
}
