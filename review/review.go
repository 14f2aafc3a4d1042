// Package review is the record an auditor's review of a release leaves in
// a platform's review log: which release (bound to its release-log entry),
// which files of its source if not the release as a whole, the verdict,
// the auditor's notes, who and when. It is what a visit to a Transparency
// Centre produces, logged so that anyone can see every review and prove
// that none was taken back (docs/design/center.md, "Reviews").
//
// # Encoding
//
// A review is one compact JSON object, keys in this order:
//
//	{"v":1,"kind":"review",
//	 "release":{"name":"tool","version":"1.2.3","index":0,"entry":"sha256:…"},
//	 "files":["cmd/tool/main.go"],"verdict":"approved","notes":"…",
//	 "auditor":"auditor:alice","time":"2026-12-07T11:00:00Z"}
//
// release.entry is the SHA-256 of the release-log entry at release.index,
// as logged; files are sorted, each once, clean slash-separated paths in
// the release's source archive; time is UTC to the second. Strings are
// written as encoding/json writes them without HTML escaping. [Parse]
// accepts only the bytes [Review.Marshal] writes, so that a review has
// one encoding and its log entry one hash.
package review

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Verdict is an auditor's conclusion.
type Verdict string

// The verdicts.
const (
	Approved Verdict = "approved" // nothing found that stands against the release
	Concerns Verdict = "concerns" // findings the vendor should answer
	Rejected Verdict = "rejected" // the release should not be used
)

// Verdicts are every verdict, in order of severity.
var Verdicts = []Verdict{Approved, Concerns, Rejected}

// Review is one auditor's review of a release.
type Review struct {
	Release Release
	// Files are the paths, in the release's source archive, that the
	// review is about; none: the release as a whole.
	Files   []string
	Verdict Verdict
	// Notes are the auditor's findings: UTF-8 text, lines separated by
	// "\n", no other control characters, at most MaxNotes bytes.
	Notes string
	// Auditor is the id of the auditor principal, "auditor:<name>".
	Auditor string
	// Time is when the platform logged the review, UTC to the second.
	Time time.Time
}

// Release names a release and binds its release-log entry.
type Release struct {
	Name    string
	Version string
	// Index is the release's entry in the release log; Entry that
	// entry's SHA-256, "sha256:" and 64 lower-case hex digits.
	Index uint64
	Entry string
}

// Bounds of a review.
const (
	MaxNotes     = 8000
	MaxFiles     = 100
	MaxPathLen   = 512
	MaxName      = 128 // of a release's name and version, as in its entry
	MaxEntrySize = 65535
)

var (
	auditorID = regexp.MustCompile(`^auditor:[a-z0-9][a-z0-9._-]{0,63}$`)
	sha256Ref = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Check returns an error naming what is wrong with r, if anything.
func (r *Review) Check() error {
	switch {
	case !validText(r.Release.Name, MaxName):
		return fmt.Errorf("release name %q: want 1 to %d printable ASCII characters without quotes or backslashes", r.Release.Name, MaxName)
	case !validText(r.Release.Version, MaxName):
		return fmt.Errorf("release version %q: want 1 to %d printable ASCII characters without quotes or backslashes", r.Release.Version, MaxName)
	case !sha256Ref.MatchString(r.Release.Entry):
		return fmt.Errorf("release entry digest %q: want sha256: and 64 lower-case hex digits", r.Release.Entry)
	case !slices.Contains(Verdicts, r.Verdict):
		return fmt.Errorf("verdict %q: want approved, concerns or rejected", r.Verdict)
	case len(r.Notes) > MaxNotes:
		return fmt.Errorf("notes of %d bytes: at most %d", len(r.Notes), MaxNotes)
	case !validNotes(r.Notes):
		return errors.New(`notes: want UTF-8 text whose only control character is the line feed ("\n")`)
	case !auditorID.MatchString(r.Auditor):
		return fmt.Errorf("auditor %q: want auditor: and a principal's name", r.Auditor)
	case r.Time.IsZero() || r.Time.Location() != time.UTC || r.Time.Nanosecond() != 0 || r.Time.Year() < 2000 || r.Time.Year() > 9999:
		return errors.New("time: want a UTC time, to the second")
	case len(r.Files) > MaxFiles:
		return fmt.Errorf("%d files: at most %d", len(r.Files), MaxFiles)
	}
	for _, f := range r.Files {
		if err := CheckPath(f); err != nil {
			return err
		}
	}
	return nil
}

// CheckPath returns an error unless p is a clean slash-separated relative
// path of at most MaxPathLen bytes: no "." or ".." element, no empty one,
// no leading or trailing slash, printable UTF-8.
func CheckPath(p string) error {
	if len(p) == 0 || len(p) > MaxPathLen || !fs.ValidPath(p) || p == "." || !utf8.ValidString(p) || strings.ContainsFunc(p, func(c rune) bool { return !unicode.IsPrint(c) }) {
		return fmt.Errorf("file %q: want a clean relative path in the source (a/b.go) of printable characters, at most %d bytes", p, MaxPathLen)
	}
	return nil
}

func validText(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func validNotes(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c != '\n' && (unicode.IsControl(c) || c == utf8.RuneError) {
			return false
		}
	}
	return true
}

// Marshal returns the canonical encoding of r, its files sorted.
func (r *Review) Marshal() ([]byte, error) {
	files := slices.Clone(r.Files)
	slices.Sort(files)
	if len(slices.Compact(slices.Clone(files))) != len(files) {
		return nil, errors.New("review: a file is named twice")
	}
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(`{"v":1,"kind":"review","release":{"name":`)
	writeString(&b, r.Release.Name)
	b.WriteString(`,"version":`)
	writeString(&b, r.Release.Version)
	fmt.Fprintf(&b, `,"index":%d,"entry":"%s"},"files":[`, r.Release.Index, r.Release.Entry)
	for i, f := range files {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, f)
	}
	b.WriteString(`],"verdict":"` + string(r.Verdict) + `","notes":`)
	writeString(&b, r.Notes)
	b.WriteString(`,"auditor":"` + r.Auditor + `","time":"` + r.Time.Format(time.RFC3339) + `"}`)
	if b.Len() > MaxEntrySize {
		return nil, fmt.Errorf("review: %d bytes, more than a log entry's %d", b.Len(), MaxEntrySize)
	}
	return b.Bytes(), nil
}

// writeString writes s as a JSON string, as encoding/json does without
// HTML escaping (Check refused invalid UTF-8, which it would replace).
func writeString(b *bytes.Buffer, s string) {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	b.Write(bytes.TrimSuffix(out.Bytes(), []byte("\n")))
}

// Kind is the "kind" of a review-log entry.
const Kind = "review"

// Parse reads a review-log entry. It accepts only the canonical encoding
// Marshal writes, of a review that Check accepts.
func Parse(b []byte) (*Review, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("review: %d bytes, more than a log entry's %d", len(b), MaxEntrySize)
	}
	var raw struct {
		V       *int   `json:"v"`
		Kind    string `json:"kind"`
		Release *struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Index   uint64 `json:"index"`
			Entry   string `json:"entry"`
		} `json:"release"`
		Files   []string `json:"files"`
		Verdict string   `json:"verdict"`
		Notes   string   `json:"notes"`
		Auditor string   `json:"auditor"`
		Time    string   `json:"time"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("review: %w", err)
	}
	if raw.V == nil || *raw.V != 1 || raw.Kind != Kind || raw.Release == nil {
		return nil, errors.New(`review: want version 1, kind "review" and a release`)
	}
	t, err := time.Parse(time.RFC3339, raw.Time)
	if err != nil {
		return nil, fmt.Errorf("review: time: %w", err)
	}
	r := &Review{Release: Release{Name: raw.Release.Name, Version: raw.Release.Version, Index: raw.Release.Index, Entry: raw.Release.Entry},
		Files: raw.Files, Verdict: Verdict(raw.Verdict), Notes: raw.Notes, Auditor: raw.Auditor, Time: t.UTC()}
	canon, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, b) {
		return nil, errors.New("review: not in canonical form (key order, spacing, escapes, sorted files, UTC time)")
	}
	if r.Files == nil {
		r.Files = []string{}
	}
	return r, nil
}
