package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Entry is a release-log entry: one release, bound to its artifacts and its
// signed provenance. Encoded as one compact JSON object, keys in this order:
//
//	{"v":1,"kind":"release","name":"vitrine","version":"1.2.3",
//	 "artifacts":[{"name":"vitrine_linux_amd64","sha256":"…"}],
//	 "envelope":"sha256:…"}
//
// Artifacts are sorted by name, names unique; envelope is [Digest] of the
// DSSE envelope's bytes as published.
type Entry struct {
	Name      string
	Version   string
	Artifacts []Artifact
	Envelope  string
}

// MaxEntrySize bounds an entry, as a tlog-tiles entry is bounded.
const MaxEntrySize = 65535

// Marshal returns the canonical encoding of e.
func (e *Entry) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	arts := slices.Clone(e.Artifacts)
	slices.SortFunc(arts, func(a, b Artifact) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	b.WriteString(`{"v":1,"kind":"release","name":`)
	writeString(&b, e.Name)
	b.WriteString(`,"version":`)
	writeString(&b, e.Version)
	b.WriteString(`,"artifacts":[`)
	for i, a := range arts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":`)
		writeString(&b, a.Name)
		b.WriteString(`,"sha256":"` + a.SHA256 + `"}`)
	}
	b.WriteString(`],"envelope":"` + e.Envelope + `"}`)
	if b.Len() > MaxEntrySize {
		return nil, fmt.Errorf("release entry of %d bytes, more than %d", b.Len(), MaxEntrySize)
	}
	return b.Bytes(), nil
}

func writeString(b *bytes.Buffer, s string) {
	j, _ := json.Marshal(s) // check refused what json would escape oddly
	b.Write(j)
}

func (e *Entry) check() error {
	switch {
	case !validText(e.Name, 128):
		return fmt.Errorf("release name %q: want 1 to 128 printable ASCII characters without quotes or backslashes", e.Name)
	case !validText(e.Version, 128):
		return fmt.Errorf("release version %q: want 1 to 128 printable ASCII characters without quotes or backslashes", e.Version)
	case len(e.Artifacts) == 0:
		return errors.New("a release has at least one artifact")
	case !strings.HasPrefix(e.Envelope, "sha256:") || !hexSHA256.MatchString(e.Envelope[len("sha256:"):]):
		return fmt.Errorf("envelope digest %q is not sha256: and 64 hex digits", e.Envelope)
	}
	seen := map[string]bool{}
	for _, a := range e.Artifacts {
		if !validText(a.Name, 256) || !hexSHA256.MatchString(a.SHA256) {
			return fmt.Errorf("artifact %q: want a printable name and a 64-hex-digit sha256", a.Name)
		}
		if seen[a.Name] {
			return fmt.Errorf("artifact %q appears twice", a.Name)
		}
		seen[a.Name] = true
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

// ParseEntry reads a release-log entry. It accepts only the canonical
// encoding Marshal writes.
func ParseEntry(b []byte) (*Entry, error) {
	var raw struct {
		V         int        `json:"v"`
		Kind      string     `json:"kind"`
		Name      string     `json:"name"`
		Version   string     `json:"version"`
		Artifacts []Artifact `json:"artifacts"`
		Envelope  string     `json:"envelope"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("release entry: %w", err)
	}
	if raw.V != 1 || raw.Kind != "release" {
		return nil, fmt.Errorf("release entry: version %d, kind %q; want 1 and release", raw.V, raw.Kind)
	}
	e := &Entry{Name: raw.Name, Version: raw.Version, Artifacts: raw.Artifacts, Envelope: raw.Envelope}
	canon, err := e.Marshal()
	if err != nil {
		return nil, fmt.Errorf("release entry: %w", err)
	}
	if !bytes.Equal(canon, b) {
		return nil, errors.New("release entry: not in canonical form (key order, spacing, sorted artifacts)")
	}
	return e, nil
}
