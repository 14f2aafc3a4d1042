// Package config reads the platform's configuration file.
//
// The file is one JSON object. Every key is documented on [Config];
// an unknown key, a value of the wrong type, or a residency policy that
// breaks its rules is an error that names the line of the file.
//
//	{
//	  "name": "vitrine.example.com",
//	  "data": "/var/lib/vitrine",
//	  "listen": "0.0.0.0:8080",
//	  "public_url": "https://vitrine.example.com",
//	  "residency": {"version": 2, "default": "moscow", "regions": [
//	    {"name": "zurich", "countries": ["CH", "DE", "…"]},
//	    {"name": "moscow"}]},
//	  "stores": {"zurich": "postgres://vitrine@db.zurich/vitrine", "moscow": "sqlite:/var/lib/vitrine/moscow.db"},
//	  "build_source_roots": ["/srv/vitrine/src"]
//	}
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vitrine-dev/vitrine/residency"
)

// MaxSize is the largest configuration file read.
const MaxSize = 4 << 20

// Config is the platform's configuration. Zero values mean the defaults of
// `vitrine up`.
type Config struct {
	// Name prefixes every log origin and names the witness (default
	// "vitrine.local"). It is part of each log's identity.
	Name string `json:"name"`
	// Data is the data directory (default ./vitrine-data).
	Data string `json:"data"`
	// Listen is the address to listen on (default 127.0.0.1:8080).
	Listen string `json:"listen"`
	// PublicURL is the base URL clients use (default http://<listen>).
	PublicURL string `json:"public_url"`
	// Residency is the residency policy (default: residency.Default()).
	// A changed policy needs a higher version; it takes effect once it is
	// in the policy log.
	Residency *residency.Policy `json:"-"`
	// Stores chooses each region's store: "sqlite:PATH" or a postgres://
	// URL (default: SQLite under the data directory).
	Stores map[string]string `json:"stores"`
	// BuildSourceRoots are the absolute directories from which recipes
	// posted to /v1/builds may take local sources (a git repository or a
	// directory; symlinks are followed before the check). Absent means the
	// working directory `vitrine up` was started in; [] allows only
	// https:// and ssh:// git sources.
	BuildSourceRoots []string `json:"build_source_roots"`
}

// Load reads the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a configuration document.
func Parse(doc []byte) (*Config, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("configuration is larger than %d bytes", MaxSize)
	}
	lineErr := func(off int64, format string, args ...any) error {
		return fmt.Errorf("configuration line %d: %s", residency.LineOf(doc, off), fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, lineErr(dec.InputOffset(), "the configuration must be a JSON object")
	}
	var c Config
	seen := map[string]bool{}
	for dec.More() {
		keyOff := valueStart(doc, dec.InputOffset())
		t, err := dec.Token()
		if err != nil {
			return nil, lineErr(dec.InputOffset(), "%v", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return nil, lineErr(keyOff, "key %q appears twice", key)
		}
		seen[key] = true
		var target any
		switch key {
		case "name":
			target = &c.Name
		case "data":
			target = &c.Data
		case "listen":
			target = &c.Listen
		case "public_url":
			target = &c.PublicURL
		case "stores":
			target = &c.Stores
		case "build_source_roots":
			target = &c.BuildSourceRoots
		case "residency":
			// The value starts after the colon: find it, then let the
			// residency parser read it with this file's line numbers.
			off := valueStart(doc, dec.InputOffset())
			p, err := residency.ParsePolicyAt(doc, off)
			if err != nil {
				var pe *residency.ParseError
				if errors.As(err, &pe) {
					return nil, fmt.Errorf("configuration line %d column %d: residency: %s", pe.Line, pe.Column, pe.Msg)
				}
				return nil, err
			}
			c.Residency = p
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, lineErr(off, "residency: %v", err)
			}
			continue
		default:
			return nil, lineErr(keyOff, "unknown key %q (known: name, data, listen, public_url, residency, stores, build_source_roots)", key)
		}
		valOff := valueStart(doc, dec.InputOffset())
		if err := dec.Decode(target); err != nil {
			return nil, lineErr(valOff, "%s: %v", key, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, lineErr(dec.InputOffset(), "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, lineErr(dec.InputOffset(), "unexpected data after the configuration object")
	}
	if seen["build_source_roots"] && c.BuildSourceRoots == nil {
		c.BuildSourceRoots = []string{} // null: no local sources, as []
	}
	for _, r := range c.BuildSourceRoots {
		if !filepath.IsAbs(r) {
			return nil, fmt.Errorf("configuration: build_source_roots: %q is not an absolute path", r)
		}
	}
	for region, spec := range c.Stores {
		if c.Residency != nil && c.Residency.Region(region) == nil {
			return nil, fmt.Errorf("configuration: stores: the residency policy has no region %q", region)
		}
		if !strings.HasPrefix(spec, "sqlite:") && !strings.HasPrefix(spec, "postgres://") && !strings.HasPrefix(spec, "postgresql://") {
			return nil, fmt.Errorf("configuration: stores: region %q: want \"sqlite:PATH\" or a postgres:// URL, not %q", region, spec)
		}
	}
	return &c, nil
}

// valueStart skips the separators (white space, colon, comma) before the
// next key or value.
func valueStart(doc []byte, off int64) int64 {
	for off < int64(len(doc)) {
		switch doc[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
}
