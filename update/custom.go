// Package update reads what Vitrine's TUF update repository says about a
// target beyond TUF itself: the custom metadata that binds each target to
// its release-log entry.
//
// # Where it comes from
//
// The repository is a TUF repository (go-tuf/v2 metadata, consistent
// snapshots) whose base URL and initial trusted root the discovery document
// lists under "updates". Every target's "custom" field is one JSON object
// with a single key, "vitrine". For a release's files (its artifacts,
// provenance.json and release.json):
//
//	{"vitrine":{"release":"vitrine","version":"0.1.0","log_index":7,
//	 "proof":"c2sp.org/tlog-proof@v1\nindex 7\n…","provenance":"sha256:…"}}
//
// and for a rule-database delta, the bytes that turn the full database of
// version delta_from into this version's:
//
//	{"vitrine":{"release":"sample-ruledb","version":"3","delta_from":"2",
//	 "full":"sample-ruledb/3/sample","full_sha256":"…"}}
//
// # Checking it
//
// TUF vouches for the bytes of a target and for this metadata. It does not
// vouch for the release log: a verifier checks Proof against the release
// log's key and the witness policy (see package tlog) and the entry it
// proves against the artifact, as package release does.
package update

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/tlog"
)

// Custom is the "vitrine" object of a target's custom metadata. A target
// is either part of a release (LogIndex, Proof and Provenance are set) or a
// delta (DeltaFrom, Full and FullSHA256 are set); [Custom.IsDelta] tells
// which.
type Custom struct {
	// Release and Version name the release the target belongs to.
	Release string
	Version string

	// LogIndex is the index of the release's entry in the release log.
	LogIndex uint64
	// Proof is the C2SP tlog-proof of that entry, as text.
	Proof string
	// Provenance is "sha256:" and the hex SHA-256 of the release's DSSE
	// envelope (its provenance.json target), which the entry binds.
	Provenance string

	// DeltaFrom is the version of the full database a delta applies to.
	DeltaFrom string
	// Full is the target name of the full database the delta produces,
	// FullSHA256 its hex SHA-256.
	Full       string
	FullSHA256 string
}

// MaxCustomSize bounds the custom metadata of one target: a tlog-proof is
// at most 128 KiB, escaped as a JSON string it may double.
const MaxCustomSize = 300 << 10

// IsDelta reports whether c describes a delta.
func (c *Custom) IsDelta() bool { return c.DeltaFrom != "" }

// ParseProof parses c.Proof.
func (c *Custom) ParseProof() (*tlog.Proof, error) {
	return tlog.ParseProof([]byte(c.Proof))
}

// Marshal returns the canonical encoding of c, the whole custom object:
// compact, keys in the order shown in the package documentation. It
// checks c first.
func (c *Custom) Marshal() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`{"vitrine":{"release":`)
	writeString(&b, c.Release)
	b.WriteString(`,"version":`)
	writeString(&b, c.Version)
	if c.IsDelta() {
		b.WriteString(`,"delta_from":`)
		writeString(&b, c.DeltaFrom)
		b.WriteString(`,"full":`)
		writeString(&b, c.Full)
		b.WriteString(`,"full_sha256":"` + c.FullSHA256 + `"}}`)
		return b.Bytes(), nil
	}
	b.WriteString(`,"log_index":` + strconv.FormatUint(c.LogIndex, 10) + `,"proof":`)
	writeString(&b, c.Proof)
	b.WriteString(`,"provenance":"` + c.Provenance + `"}}`)
	return b.Bytes(), nil
}

// writeString writes s as encoding/json does, HTML characters escaped: the
// encoding go-tuf keeps when it writes metadata, so that Marshal's output
// is what a client reads back.
func writeString(b *bytes.Buffer, s string) {
	j, _ := json.Marshal(s) // a string always marshals
	b.Write(j)
}

func (c *Custom) check() error {
	switch {
	case !validText(c.Release, 128):
		return fmt.Errorf("release %q: want 1 to 128 printable ASCII characters without quotes, backslashes or slashes", c.Release)
	case !validText(c.Version, 128):
		return fmt.Errorf("version %q: want 1 to 128 printable ASCII characters without quotes, backslashes or slashes", c.Version)
	}
	if c.IsDelta() {
		switch {
		case c.LogIndex != 0 || c.Proof != "" || c.Provenance != "":
			return errors.New("a delta has no log index, proof or provenance")
		case !validText(c.DeltaFrom, 128):
			return fmt.Errorf("delta_from %q: want 1 to 128 printable ASCII characters without quotes, backslashes or slashes", c.DeltaFrom)
		case c.DeltaFrom == c.Version:
			return fmt.Errorf("a delta from version %s to itself", c.Version)
		case !strings.HasPrefix(c.Full, c.Release+"/"+c.Version+"/") || !validText(c.Full[len(c.Release)+len(c.Version)+2:], 256):
			return fmt.Errorf("full %q: want a target %s/%s/<artifact>", c.Full, c.Release, c.Version)
		case !isHexSHA256(c.FullSHA256):
			return fmt.Errorf("full_sha256 %q: want 64 lowercase hex digits", c.FullSHA256)
		}
		return nil
	}
	switch {
	case c.Full != "" || c.FullSHA256 != "":
		return errors.New("a release target has no full or full_sha256")
	case !strings.HasPrefix(c.Provenance, "sha256:") || !isHexSHA256(c.Provenance[len("sha256:"):]):
		return fmt.Errorf("provenance %q: want sha256: and 64 lowercase hex digits", c.Provenance)
	}
	p, err := c.ParseProof()
	if err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	if p.Index != c.LogIndex {
		return fmt.Errorf("proof is for index %d, log_index is %d", p.Index, c.LogIndex)
	}
	return nil
}

// ParseCustom reads a target's custom metadata, as TUF hands it over (for
// go-tuf, *TargetFiles.Custom). It accepts only the encoding Marshal
// writes, up to insignificant whitespace: every accepted input b,
// compacted, equals Marshal's output. It refuses unknown keys, a proof that
// does not parse or proves another index than log_index, and a delta that
// names a full database of another release.
func ParseCustom(b []byte) (*Custom, error) {
	if len(b) > MaxCustomSize {
		return nil, fmt.Errorf("custom metadata: %d bytes, more than %d", len(b), MaxCustomSize)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, fmt.Errorf("custom metadata: %w", err)
	}
	var raw struct {
		Vitrine *struct {
			Release    string  `json:"release"`
			Version    string  `json:"version"`
			LogIndex   *uint64 `json:"log_index"`
			Proof      string  `json:"proof"`
			Provenance string  `json:"provenance"`
			DeltaFrom  string  `json:"delta_from"`
			Full       string  `json:"full"`
			FullSHA256 string  `json:"full_sha256"`
		} `json:"vitrine"`
	}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("custom metadata: %w", err)
	}
	if raw.Vitrine == nil {
		return nil, errors.New(`custom metadata: no "vitrine" object`)
	}
	v := raw.Vitrine
	c := &Custom{Release: v.Release, Version: v.Version, Proof: v.Proof, Provenance: v.Provenance, DeltaFrom: v.DeltaFrom, Full: v.Full, FullSHA256: v.FullSHA256}
	if v.LogIndex != nil {
		c.LogIndex = *v.LogIndex
	} else if !c.IsDelta() {
		return nil, errors.New("custom metadata: a release target needs a log_index")
	}
	canon, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("custom metadata: %w", err)
	}
	if !bytes.Equal(canon, compact.Bytes()) {
		return nil, errors.New("custom metadata: not in canonical form (key order, escapes, no extra keys)")
	}
	return c, nil
}

// validText reports whether s is 1 to max printable ASCII characters
// without quotes, backslashes or slashes: safe in a target name's segment,
// a file name and a JSON string alike.
func validText(s string, max int) bool {
	if s == "" || len(s) > max || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == '/' {
			return false
		}
	}
	return true
}

func isHexSHA256(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
