package platform

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/review"
)

// ReviewPath is the route on which an auditor records a review.
const ReviewPath = "/v1/reviews"

// ReviewRequest is the body of POST /v1/reviews: the release reviewed,
// the files of its source the review is about (none: the release as a
// whole), the verdict and the notes. Entry, when set, is the SHA-256 of
// the release-log entry the auditor reviewed ("sha256:…"): a release whose
// entry is another is refused (409), so that a review is never bound to a
// release other than the one its auditor saw.
type ReviewRequest struct {
	Name    string   `json:"name"`
	Version string   `json:"version"`
	Entry   string   `json:"entry,omitempty"`
	Files   []string `json:"files,omitempty"`
	Verdict string   `json:"verdict"`
	Notes   string   `json:"notes"`
}

// ReviewAnswer is the answer to a review recorded: its index in the review
// log, the entry as logged, and the entry's c2sp.org/tlog-proof in a
// checkpoint the witness policy's quorum cosigned.
type ReviewAnswer struct {
	Index uint64 `json:"index"`
	Entry string `json:"entry"`
	Proof string `json:"proof"`
}

// maxReviewRequest bounds a review's request body: the notes, a hundred
// paths and the rest.
const maxReviewRequest = 96 << 10

// serveReview serves POST /v1/reviews: an auditor principal, with its
// token, records a review of a published release. The review (see package
// review) is appended to the review log and answered 201 with its index
// and tlog-proof once a witnessed checkpoint covers it. Without a valid
// token 401, a principal of another role 403, a body that is not a valid
// review of a published release 400 (404 for a release not published, 409
// for another entry than the one named), and nothing is logged; a log that
// cannot take it or a witness that does not cosign in time 503.
func (p *Platform) serveReview(w http.ResponseWriter, r *http.Request) {
	pr, err := p.principals.Authenticate(r)
	if err != nil {
		httpapi.Unauthorized(w, "recording a review needs an auditor principal's bearer token: "+strings.TrimPrefix(err.Error(), "authenticating principal: "))
		return
	}
	if pr.Role != principal.Auditor {
		httpapi.Error(w, http.StatusForbidden, fmt.Sprintf("principal %s is an %s: only auditors record reviews", pr.ID, pr.Role))
		return
	}
	body, ok := httpapi.ReadLimited(w, r, maxReviewRequest)
	if !ok {
		return
	}
	var req ReviewRequest
	if err := httpapi.DecodeStrict(body, &req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, `bad request: want {"name":"<release>","version":"<version>","verdict":"approved|concerns|rejected","notes":"…"} and optionally "entry":"sha256:…" and "files":["<path in the source>",…]: `+err.Error())
		return
	}
	rev, err := p.review(r.Context(), pr, &req)
	if refused := (*refusedRelease)(nil); errors.As(err, &refused) {
		httpapi.Error(w, http.StatusBadGateway, refused.Error()+"; no review was recorded")
		return
	}
	if err != nil {
		httpapi.Fail(w, p.logger, err, "no review was recorded")
		return
	}
	entry, err := rev.Marshal()
	if err != nil {
		httpapi.Fail(w, p.logger, fault.Mark(fault.ErrInvalid, err), "no review was recorded")
		return
	}
	l := p.logs["review"]
	if err := l.Ready(); err != nil {
		httpapi.Fail(w, p.logger, err, "the review log cannot take entries now; no review was recorded")
		return
	}
	index, err := l.Append(r.Context(), entry)
	if err != nil {
		httpapi.Fail(w, p.logger, err, "the review log did not take the review; no review was recorded")
		return
	}
	p.logger.InfoContext(r.Context(), "review recorded", "auditor", pr.ID, "release", rev.Release.Name, "version", rev.Release.Version, "verdict", rev.Verdict, "log_index", index)
	wctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	proof, err := l.Prove(wctx, index)
	if err != nil {
		httpapi.Fail(w, p.logger, backoff.WithRetryAfter(fault.Mark(fault.ErrUnavailable, err), 10*time.Second),
			fmt.Sprintf("the review is logged at index %d of the review log, but no witnessed checkpoint covers it yet: it will show there; do not record it again", index))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", fmt.Sprintf("/logs/review/#%d", index))
	w.WriteHeader(http.StatusCreated)
	httpapi.CompactJSON(w, ReviewAnswer{Index: index, Entry: string(entry), Proof: string(proof.Marshal())})
}

// review makes the review req asks for, by the auditor pr, of a release
// this platform published, checking every file it names against the
// release's source archive.
func (p *Platform) review(ctx context.Context, pr *principal.Principal, req *ReviewRequest) (*review.Review, error) {
	var rel *publish.Release
	if p.rel != nil {
		if !p.rel.store.Exists(req.Name, req.Version) {
			return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no release %q %q is published here", req.Name, req.Version))
		}
		var err error
		if rel, err = p.rel.store.Load(req.Name, req.Version); err != nil {
			return nil, err
		}
	} else {
		var err error
		if rel, err = p.remoteRel.Load(ctx, req.Name, req.Version, len(req.Files) > 0); err != nil {
			return nil, err
		}
	}
	digest := release.Digest(rel.Entry)
	if req.Entry != "" && req.Entry != digest {
		return nil, fault.New(fault.ErrConflict, fmt.Sprintf("release %s %s: its release-log entry %d has digest %s, not %s", req.Name, req.Version, rel.Index, digest, req.Entry))
	}
	rev := &review.Review{
		Release: review.Release{Name: req.Name, Version: req.Version, Index: rel.Index, Entry: digest},
		Files:   req.Files, Verdict: review.Verdict(req.Verdict), Notes: req.Notes, Auditor: pr.ID,
		Time: time.Now().UTC().Truncate(time.Second),
	}
	if err := rev.Check(); err != nil {
		return nil, fault.Mark(fault.ErrInvalid, err)
	}
	if len(req.Files) > 0 {
		have, err := sourceFiles(rel.Source)
		if err != nil {
			return nil, fault.New(fault.ErrInvalid, fmt.Sprintf("release %s %s: its source archive cannot be read (%v), so no file of it can be reviewed", req.Name, req.Version, err))
		}
		for _, f := range req.Files {
			if !have[f] {
				return nil, fault.New(fault.ErrInvalid, fmt.Sprintf("release %s %s: its source archive has no file %q", req.Name, req.Version, f))
			}
		}
	}
	return rev, nil
}

// maxSourceFiles bounds the entries of a source archive read for a review.
const maxSourceFiles = 200_000

// sourceFiles returns the regular files of a source archive (the
// conveyer's .tar.gz).
func sourceFiles(archive []byte) (map[string]bool, error) {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(gz)
	files := map[string]bool{}
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		if n >= maxSourceFiles {
			return nil, fmt.Errorf("more than %d entries", maxSourceFiles)
		}
		if h.Typeflag == tar.TypeReg {
			files[strings.TrimPrefix(h.Name, "./")] = true
		}
	}
}
