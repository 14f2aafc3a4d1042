// Package rebuild is the verdict an independent rebuilder signs after it has
// rebuilt a release from its archived source, and what anyone checks it
// with.
//
// # Verdicts
//
// A verdict is an in-toto Statement v1 whose subjects are the release's
// artifacts with the digests its release-log entry names, and whose
// predicate (type [PredicateType]) says which release was rebuilt, from
// which source, with which toolchain, and whether every artifact came out
// bit for bit the same. It is signed as a DSSE envelope, like the
// release's own provenance (package release), but with the rebuilder's
// key, never the vendor's.
//
// [Sign] writes one; [VerifyVerdict] checks the signature and reads it;
// [ParseVerdict] reads it without checking the signature, for tools that
// only display it. docs/design/rebuilds.md documents the predicate.
package rebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vitrine-dev/vitrine/release"
)

// PredicateType is the in-toto predicate type of a rebuild verdict.
const PredicateType = "https://vitrine.dev/rebuild/v1"

// ErrInvalid is wrapped by every error about a verdict that is malformed
// or inconsistent; a bad signature is reported apart, by [VerifyVerdict].
var ErrInvalid = errors.New("invalid rebuild verdict")

// Predicate is the verdict proper. Digests are "sha256:" and 64 lower-case
// hex digits.
type Predicate struct {
	// Release identifies the release-log entry that was rebuilt.
	Release Release `json:"release"`
	// Source is the digest of the source archive the provenance names and
	// the rebuilder downloaded; empty if the rebuild stopped before.
	Source string `json:"source"`
	// Reproduced is true when every artifact of the release was rebuilt
	// with the same digest and nothing went wrong: Differ is empty, Error
	// is empty and Artifacts names every subject.
	Reproduced bool `json:"reproduced"`
	// Artifacts pairs each artifact's expected digest (the release-log
	// entry's; empty for a file the rebuild made that the release lacks)
	// with the rebuilt one (empty for a file the rebuild did not make).
	// Sorted by name. Empty when the rebuild did not get as far as a
	// build.
	Artifacts []Artifact `json:"artifacts"`
	// Differ names, sorted, the artifacts whose digests differ, are
	// missing or are extra.
	Differ []string `json:"differ"`
	// Toolchain is the Go toolchain of the original build (from the
	// provenance) and of the rebuild.
	Toolchain Toolchain `json:"toolchain"`
	// Rebuilder identifies who rebuilt, e.g. its URL.
	Rebuilder string `json:"rebuilder"`
	// Started and Finished bound the rebuild.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Error, when not empty, says why the release could not be rebuilt
	// or checked: the provenance does not verify under the release key,
	// the served source differs from the one the provenance names, the
	// source does not build, … Such a verdict is never reproduced.
	Error string `json:"error,omitempty"`
}

// Release names the release-log entry a verdict is about.
type Release struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	LogIndex uint64 `json:"log_index"`
	// Entry is the digest of the release-log entry's bytes.
	Entry string `json:"entry"`
	// Envelope is the digest of the provenance envelope the entry binds.
	Envelope string `json:"envelope"`
}

// Artifact is one file, as the release names it and as it was rebuilt.
type Artifact struct {
	Name     string `json:"name"`
	Expected string `json:"expected"`
	Rebuilt  string `json:"rebuilt"`
}

// Toolchain is the Go version of both builds ("go env GOVERSION").
type Toolchain struct {
	Original string `json:"original"`
	Rebuild  string `json:"rebuild"`
}

// Verdict is a verdict read back: its subjects and its predicate.
type Verdict struct {
	// Subjects are the statement's subjects: the release's artifacts,
	// with the digests of its release-log entry (hex, without "sha256:").
	Subjects []release.Artifact
	Predicate
}

var (
	digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	hexRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// maxSafeIndex is the largest log index a JSON number carries exactly
// through the Statement's protobuf Struct (a float64).
const maxSafeIndex = 1<<53 - 1

// Compare fills p.Artifacts, p.Differ and p.Reproduced from the release's
// artifacts (expected) and the rebuilt ones, both by name with their
// digests in "sha256:…" form.
func (p *Predicate) Compare(expected, rebuilt map[string]string) {
	names := map[string]bool{}
	for n := range expected {
		names[n] = true
	}
	for n := range rebuilt {
		names[n] = true
	}
	p.Artifacts, p.Differ = nil, nil
	for _, n := range sortedKeys(names) {
		a := Artifact{Name: n, Expected: expected[n], Rebuilt: rebuilt[n]}
		p.Artifacts = append(p.Artifacts, a)
		if a.Expected != a.Rebuilt {
			p.Differ = append(p.Differ, n)
		}
	}
	p.Reproduced = p.Error == "" && len(p.Differ) == 0 && len(p.Artifacts) > 0
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// check reports the first inconsistency in a verdict: malformed digests,
// artifacts out of order or doubled, a Differ list that is not exactly the
// artifacts whose digests disagree, Reproduced not following from them,
// or subjects that are not the release's artifacts.
func check(subjects []release.Artifact, p *Predicate) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	r := p.Release
	switch {
	case r.Name == "" || r.Version == "":
		return bad("release name and version are required")
	case r.LogIndex > maxSafeIndex:
		return bad("release log_index %d is beyond 2^53-1", r.LogIndex)
	case !digestRE.MatchString(r.Entry):
		return bad("release entry digest %q is not sha256: and 64 hex digits", r.Entry)
	case !digestRE.MatchString(r.Envelope):
		return bad("release envelope digest %q is not sha256: and 64 hex digits", r.Envelope)
	case p.Source != "" && !digestRE.MatchString(p.Source):
		return bad("source digest %q is not sha256: and 64 hex digits", p.Source)
	case p.Rebuilder == "":
		return bad("rebuilder is required")
	case p.Started.IsZero() || p.Finished.Before(p.Started):
		return bad("started %v and finished %v: want a start and a finish no earlier", p.Started, p.Finished)
	case len(subjects) == 0:
		return bad("a verdict has at least one subject")
	}
	want := map[string]string{}
	for _, s := range subjects {
		if s.Name == "" || !hexRE.MatchString(s.SHA256) {
			return bad("subject %q: want a name and a 64-hex-digit sha256", s.Name)
		}
		if _, dup := want[s.Name]; dup {
			return bad("subject %q appears twice", s.Name)
		}
		want[s.Name] = "sha256:" + s.SHA256
	}
	var differ []string
	seen := 0
	for i, a := range p.Artifacts {
		switch {
		case a.Name == "":
			return bad("artifacts[%d] has no name", i)
		case i > 0 && p.Artifacts[i-1].Name >= a.Name:
			return bad("artifacts are not sorted by name, or %q appears twice", a.Name)
		case a.Expected == "" && a.Rebuilt == "":
			return bad("artifact %q has neither an expected nor a rebuilt digest", a.Name)
		case a.Expected != "" && !digestRE.MatchString(a.Expected):
			return bad("artifact %q: expected digest %q is not sha256: and 64 hex digits", a.Name, a.Expected)
		case a.Rebuilt != "" && !digestRE.MatchString(a.Rebuilt):
			return bad("artifact %q: rebuilt digest %q is not sha256: and 64 hex digits", a.Name, a.Rebuilt)
		}
		if w, ok := want[a.Name]; ok {
			if a.Expected != w {
				return bad("artifact %q: expected %s, but the subject has %s", a.Name, a.Expected, w)
			}
			seen++
		} else if a.Expected != "" {
			return bad("artifact %q has an expected digest but is not a subject", a.Name)
		}
		if a.Expected != a.Rebuilt {
			differ = append(differ, a.Name)
		}
	}
	if len(p.Artifacts) > 0 && seen != len(want) {
		return bad("artifacts name %d of the %d subjects", seen, len(want))
	}
	if !slices.Equal(differ, p.Differ) {
		return bad("differ lists %q, but the artifacts that differ are %q", p.Differ, differ)
	}
	if want := p.Error == "" && len(differ) == 0 && len(p.Artifacts) > 0; p.Reproduced != want {
		return bad("reproduced is %v, but the artifacts and error say %v", p.Reproduced, want)
	}
	return nil
}

// Statement returns the verdict as an in-toto Statement v1 in JSON:
// compact, with the predicate's keys sorted, so that equal verdicts give
// equal bytes. subjects are the release-log entry's artifacts.
func Statement(subjects []release.Artifact, p *Predicate) ([]byte, error) {
	if err := check(subjects, p); err != nil {
		return nil, err
	}
	pj, err := json.Marshal(normalize(p))
	if err != nil {
		return nil, err
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(pj, pred); err != nil {
		return nil, err
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, PredicateType: PredicateType, Predicate: pred}
	for _, s := range subjects {
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{Name: s.Name, Digest: map[string]string{"sha256": s.SHA256}})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: statement: %v", ErrInvalid, err)
	}
	out, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson varies its spacing on purpose; compacting gives the same
	// bytes for the same verdict (it already sorts the Struct's keys).
	var b bytes.Buffer
	if err := json.Compact(&b, out); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// normalize returns p with times in UTC and empty lists as [], the form a
// parsed verdict has, so that a verdict survives a round trip unchanged.
func normalize(p *Predicate) *Predicate {
	q := *p
	q.Started, q.Finished = q.Started.UTC(), q.Finished.UTC()
	if q.Artifacts == nil {
		q.Artifacts = []Artifact{}
	}
	if q.Differ == nil {
		q.Differ = []string{}
	}
	return &q
}

// Sign returns the verdict as a DSSE envelope (JSON) signed by s, whose
// payload is [Statement] of subjects and p.
func Sign(ctx context.Context, s release.Signer, subjects []release.Artifact, p *Predicate) ([]byte, error) {
	st, err := Statement(subjects, p)
	if err != nil {
		return nil, err
	}
	es, err := dsse.NewEnvelopeSigner(s)
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, release.PayloadType, st)
	if err != nil {
		return nil, fmt.Errorf("signing verdict: %w", err)
	}
	return json.Marshal(env)
}

// maxEnvelope bounds a verdict envelope; real ones are a few kilobytes.
const maxEnvelope = 1 << 20

// VerifyVerdict checks envelope's signature under the rebuilder's key and
// returns the verdict it carries, checked as [ParseVerdict] checks it. The
// error says whether the signature or the verdict is at fault; a verdict
// error wraps [ErrInvalid].
func VerifyVerdict(ctx context.Context, envelope []byte, key release.PublicKey) (*Verdict, error) {
	env, err := parseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	ev, err := dsse.NewEnvelopeVerifier(key)
	if err != nil {
		return nil, err
	}
	_, payload, err := ev.VerifyAndDecode(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("verdict signature: %w", err)
	}
	return parsePayload(payload)
}

// ParseVerdict reads a verdict envelope without checking its signature:
// use [VerifyVerdict] to trust it. The envelope must be a DSSE envelope of
// an in-toto Statement v1 with [PredicateType], with no unknown fields in
// the predicate and the consistency [Predicate] documents: sorted
// artifacts, Differ exactly the artifacts whose digests disagree,
// Reproduced following from them, the subjects the artifacts' expected
// digests. Errors wrap [ErrInvalid].
func ParseVerdict(envelope []byte) (*Verdict, error) {
	env, err := parseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload: %v", ErrInvalid, err)
	}
	return parsePayload(payload)
}

func parseEnvelope(b []byte) (*dsse.Envelope, error) {
	if len(b) > maxEnvelope {
		return nil, fmt.Errorf("%w: envelope of %d bytes, more than %d", ErrInvalid, len(b), maxEnvelope)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%w: not a DSSE envelope: %v", ErrInvalid, err)
	}
	if env.PayloadType != release.PayloadType {
		return nil, fmt.Errorf("%w: payload type %q, want %q", ErrInvalid, env.PayloadType, release.PayloadType)
	}
	return &env, nil
}

func parsePayload(payload []byte) (*Verdict, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	st := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, st); err != nil {
		return nil, bad("statement: %v", err)
	}
	if err := st.Validate(); err != nil {
		return nil, bad("statement: %v", err)
	}
	if st.PredicateType != PredicateType {
		return nil, bad("predicate type %q, want %q", st.PredicateType, PredicateType)
	}
	// The predicate again, with encoding/json: exact integers and no
	// unknown keys.
	var raw struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, bad("statement: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Predicate))
	dec.DisallowUnknownFields()
	v := &Verdict{}
	if err := dec.Decode(&v.Predicate); err != nil {
		return nil, bad("predicate: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("predicate: data after the object")
	}
	for _, s := range st.Subject {
		if len(s.Digest) != 1 || s.Digest["sha256"] == "" {
			return nil, bad("subject %q: want exactly a sha256 digest", s.Name)
		}
		v.Subjects = append(v.Subjects, release.Artifact{Name: s.Name, SHA256: s.Digest["sha256"]})
	}
	if err := check(v.Subjects, &v.Predicate); err != nil {
		return nil, err
	}
	v.Predicate = *normalize(&v.Predicate)
	return v, nil
}

// Summary is one line for a person: whether the release reproduced and,
// if not, what differs or what went wrong.
func (p *Predicate) Summary() string {
	head := fmt.Sprintf("%s %s (release-log entry %d)", p.Release.Name, p.Release.Version, p.Release.LogIndex)
	switch {
	case p.Reproduced:
		return fmt.Sprintf("reproduced: %s: %d artifacts identical", head, len(p.Artifacts))
	case p.Error != "":
		return fmt.Sprintf("NOT reproduced: %s: %s", head, p.Error)
	default:
		return fmt.Sprintf("NOT reproduced: %s: differ: %s", head, strings.Join(p.Differ, ", "))
	}
}
