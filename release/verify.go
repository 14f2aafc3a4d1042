package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/tlog"
)

// Evidence is what a verifier holds of one release: the release-log entry,
// a C2SP tlog-proof of it, and the signed provenance.
type Evidence struct {
	Entry    []byte
	Proof    []byte
	Envelope []byte
}

// Trust is what a verifier trusts: the release key, the release log's
// verifier key, and the witness policy its checkpoints must meet.
type Trust struct {
	Key     PublicKey
	Log     note.Verifier
	Witness *tlog.Policy
}

// CheckError is a failed check of VerifyArtifact; Check names it.
type CheckError struct {
	Check string // "artifact", "signature", "provenance", "entry", "inclusion", "envelope", "subjects"
	Err   error
}

func (e *CheckError) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

func fail(check string, format string, args ...any) error {
	return &CheckError{Check: check, Err: fmt.Errorf(format, args...)}
}

// VerifyArtifact checks that artifact, a file named name, is part of the
// release ev describes, and returns the release's entry:
//
//   - signature: the envelope verifies under the release key and holds an
//     in-toto Statement of SLSA Provenance v1;
//   - artifact: the statement names the artifact, with its SHA-256;
//   - entry: the release-log entry is canonical, names the artifact with the
//     same digest, and binds the envelope by its digest;
//   - inclusion: the proof verifies the entry in a checkpoint of the release
//     log that meets the witness policy.
//
// The first check that fails is returned as a *CheckError.
func VerifyArtifact(ctx context.Context, name string, artifact []byte, ev *Evidence, trust *Trust) (*Entry, error) {
	sum := sha256.Sum256(artifact)
	return VerifyArtifactDigest(ctx, name, hex.EncodeToString(sum[:]), ev, trust)
}

// VerifyArtifactDigest is [VerifyArtifact] for an artifact whose SHA-256
// (lowercase hex) the caller has already computed over the bytes it holds,
// as a TUF client does when it downloads a target: a large artifact is then
// hashed once, not twice.
func VerifyArtifactDigest(ctx context.Context, name, digest string, ev *Evidence, trust *Trust) (*Entry, error) {
	if !hexSHA256.MatchString(digest) {
		return nil, fail("artifact", "%q is not a SHA-256 in 64 lowercase hex digits", digest)
	}
	v, err := Verify(ctx, ev.Envelope, trust.Key)
	if err != nil {
		return nil, &CheckError{Check: "signature", Err: err}
	}
	found := false
	for _, s := range v.Subjects {
		if s.Name == name {
			if s.SHA256 != digest {
				return nil, fail("artifact", "%s has SHA-256 %s; the provenance names %s", name, digest, s.SHA256)
			}
			found = true
		}
	}
	if !found {
		return nil, fail("artifact", "the provenance names no artifact %q", name)
	}
	e, err := ParseEntry(ev.Entry)
	if err != nil {
		return nil, &CheckError{Check: "entry", Err: err}
	}
	if e.Envelope != Digest(ev.Envelope) {
		return nil, fail("entry", "the release-log entry binds envelope %s, not this one (%s)", e.Envelope, Digest(ev.Envelope))
	}
	inEntry := false
	for _, a := range e.Artifacts {
		if a.Name == name {
			if a.SHA256 != digest {
				return nil, fail("entry", "the release-log entry gives %s the SHA-256 %s, not %s", name, a.SHA256, digest)
			}
			inEntry = true
		}
	}
	if !inEntry {
		return nil, fail("entry", "the release-log entry of %s %s names no artifact %q", e.Name, e.Version, name)
	}
	if len(e.Artifacts) != len(v.Subjects) {
		return nil, fail("entry", "the release-log entry names %d artifacts, the provenance %d", len(e.Artifacts), len(v.Subjects))
	}
	p, err := tlog.ParseProof(ev.Proof)
	if err != nil {
		return nil, &CheckError{Check: "inclusion", Err: err}
	}
	if _, err := p.Verify(tlog.LeafHash(ev.Entry), trust.Log, trust.Witness); err != nil {
		return nil, &CheckError{Check: "inclusion", Err: err}
	}
	if ctx.Err() != nil {
		return nil, errors.Join(ctx.Err())
	}
	return e, nil
}

// VerifyProvenance checks that envelope, as published, is the provenance
// the release-log entry e binds, and returns what it says:
//
//   - envelope: its digest is the one e binds (e.Envelope);
//   - signature: it verifies under the release key and holds an in-toto
//     Statement of SLSA Provenance v1 ([Verify]);
//   - subjects: the statement's subjects are exactly e's artifacts, names
//     and SHA-256 digests.
//
// The first check that fails is returned as a *CheckError naming it; the
// checks after it were not made. The Transparency Center's server, and
// its verifier in the reader's browser, make these checks.
func VerifyProvenance(ctx context.Context, envelope []byte, e *Entry, key PublicKey) (*Verified, error) {
	if got := Digest(envelope); got != e.Envelope {
		return nil, fail("envelope", "the envelope has digest %s, the release-log entry binds %s", got, e.Envelope)
	}
	v, err := Verify(ctx, envelope, key)
	if err != nil {
		return nil, &CheckError{Check: "signature", Err: err}
	}
	if !SameArtifacts(v.Subjects, e.Artifacts) {
		return nil, fail("subjects", "the provenance's subjects (%s) are not the artifacts the release-log entry names (%s)", artifactList(v.Subjects), artifactList(e.Artifacts))
	}
	return v, nil
}

// SameArtifacts reports whether a and b name the same files with the same
// digests, in any order.
func SameArtifacts(a, b []Artifact) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]string, len(a))
	for _, x := range a {
		m[x.Name] = x.SHA256
	}
	if len(m) != len(a) {
		return false // a names a file twice
	}
	for _, x := range b {
		if d, ok := m[x.Name]; !ok || d != x.SHA256 {
			return false
		}
		delete(m, x.Name)
	}
	return true
}

func artifactList(as []Artifact) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.12s…", a.Name, a.SHA256)
	}
	if len(as) == 0 {
		return "none"
	}
	return b.String()
}
