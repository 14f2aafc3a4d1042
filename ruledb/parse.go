package ruledb

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Source is one parsed rule file.
type Source struct {
	// Name is the file name given to Parse; its extension chose the format.
	Name string
	// Signatures are the file's rules in file order.
	Signatures []Signature
}

// ParseError is a malformed line in a rule file.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ErrUnknownFormat is returned by Parse for a file name whose extension is not
// .hdb, .hsb or .ndb.
var ErrUnknownFormat = errors.New("unknown rule file format")

// maxLine bounds the length of one rule line.
const maxLine = 1 << 20

// Parse reads a rule file in the ClamAV text format its name's extension
// names: .hdb (MD5:size:name), .hsb (SHA-256:size:name), each optionally
// followed by :min_flevel[:max_flevel], with "*" for an unknown size; or .ndb
// (name:target:offset:hexsig[:min_flevel[:max_flevel]]) with offset "*" or
// an absolute decimal offset. Blank lines and lines starting with # are
// skipped; a malformed line is a *ParseError naming the file and line.
func Parse(name string, r io.Reader) (*Source, error) {
	var kind Kind
	switch strings.ToLower(filepath.Ext(name)) {
	case ".hdb":
		kind = KindMD5
	case ".hsb":
		kind = KindSHA256
	case ".ndb":
		kind = KindBody
	default:
		return nil, fmt.Errorf("parsing %s: %w", name, ErrUnknownFormat)
	}
	src := &Source{Name: name}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue // ClamAV 1.4 skips comment lines too
		}
		sig, err := parseLine(kind, line)
		if err != nil {
			return nil, &ParseError{File: name, Line: n, Err: err}
		}
		src.Signatures = append(src.Signatures, sig)
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{File: name, Line: n + 1, Err: err}
	}
	return src, nil
}

// LoadDir parses every .hdb, .hsb and .ndb file directly in dir, in name
// order; other files are ignored.
func LoadDir(dir string) ([]*Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	var srcs []*Source
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".hdb", ".hsb", ".ndb":
		default:
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("loading rules: %w", err)
		}
		src, err := Parse(path, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	slices.SortFunc(srcs, func(a, b *Source) int { return strings.Compare(a.Name, b.Name) })
	return srcs, nil
}

func parseLine(kind Kind, line string) (Signature, error) {
	f := strings.Split(line, ":")
	var s Signature
	var err error
	switch kind {
	case KindMD5, KindSHA256:
		if len(f) < 3 || len(f) > 5 {
			return s, fmt.Errorf("%d fields, want hash:size:name[:min_flevel[:max_flevel]]", len(f))
		}
		s.Kind = kind
		if len(f[0]) != 2*kind.hashLen() {
			return s, fmt.Errorf("%s hash %q: want %d hex digits", kind, f[0], 2*kind.hashLen())
		}
		if s.Hash, err = hex.DecodeString(f[0]); err != nil {
			return s, fmt.Errorf("%s hash %q is not hex", kind, f[0])
		}
		if f[1] == "*" {
			s.Size = UnknownSize
		} else if s.Size, err = decimal("size", f[1], maxSize); err != nil {
			return s, err
		}
		s.Name = f[2]
		f = f[3:]
	case KindBody:
		if len(f) < 4 || len(f) > 6 {
			return s, fmt.Errorf("%d fields, want name:target:offset:hexsig[:min_flevel[:max_flevel]]", len(f))
		}
		s.Kind = KindBody
		s.Name = f[0]
		t, err := decimal("target", f[1], MaxTarget)
		if err != nil {
			return s, err
		}
		s.Target = uint32(t)
		if f[2] == "*" {
			s.Offset = AnyOffset
		} else if s.Offset, err = decimal("offset", f[2], maxOffset); err != nil {
			return s, fmt.Errorf("%v (only * and absolute decimal offsets are supported)", err)
		}
		if s.Pattern, err = parsePattern(f[3]); err != nil {
			return s, err
		}
		f = f[4:]
	default:
		return s, fmt.Errorf("unknown kind %d", kind)
	}
	if err := checkName(s.Name); err != nil {
		return s, err
	}
	if len(f) > 0 {
		v, err := decimal("min functionality level", f[0], 1<<32-1)
		if err != nil {
			return s, err
		}
		s.MinFLevel = uint32(v)
	}
	if len(f) > 1 {
		v, err := decimal("max functionality level", f[1], 1<<32-1)
		if err != nil {
			return s, err
		}
		if v == 0 || uint32(v) < s.MinFLevel {
			return s, fmt.Errorf("max functionality level %d: must be at least 1 and the min level %d", v, s.MinFLevel)
		}
		s.MaxFLevel = uint32(v)
	}
	return s, nil
}

// decimal parses an unsigned decimal field no larger than max.
func decimal(what, s string, max int64) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("%s %q is not a decimal number", what, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%s %q is not a decimal number", what, s)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > max {
		return 0, fmt.Errorf("%s %s out of range 0-%d", what, s, max)
	}
	return v, nil
}
