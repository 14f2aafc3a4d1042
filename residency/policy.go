package residency

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// ErrUnknownCountry means a code is not an officially assigned ISO 3166-1
// alpha-2 country code. [Policy.RegionFor] wraps it.
var ErrUnknownCountry = errors.New("not an ISO 3166-1 alpha-2 country code")

// Region is one region of a policy.
type Region struct {
	// Name identifies the region in URLs, log names ("access-<name>") and
	// tokens. It matches [a-z][a-z0-9-]{0,31}.
	Name string `json:"name"`
	// URL is the region's base URL: absolute http or https, with no user
	// information, query, fragment or trailing slash. It may be empty, as
	// in the built-in default, when the deployment fills it in.
	URL string `json:"url"`
	// Countries are the ISO 3166-1 alpha-2 codes the region serves, in
	// upper case. The default region need not list any: it serves every
	// country no region lists.
	Countries []string `json:"countries"`
}

// Policy is a residency policy: each country is served by the region that
// lists it, or by the default region if none does.
//
// A Policy is a plain value; methods only read it, so concurrent reads are
// safe. Code that builds or edits one should call [Policy.Validate] before
// using it; [ParsePolicy] and [Open] return only valid policies.
type Policy struct {
	// Version increases by one with each policy the policy log records. It
	// is at least 1.
	Version uint64 `json:"version"`
	// Default is the name of the region serving every country that no
	// region lists.
	Default string `json:"default"`
	// Regions are the regions, each name at most once, each country in at
	// most one region.
	Regions []Region `json:"regions"`
}

// zurichCountries are the countries the built-in default assigns to zurich:
// the 27 member states of the European Union, the rest of the European
// Economic Area, the United Kingdom, Switzerland, the United States,
// Canada, Singapore, Australia, Japan and South Korea.
var zurichCountries = []string{
	// European Union.
	"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
	"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
	// European Economic Area beyond the EU.
	"IS", "LI", "NO",
	// The others.
	"GB", "CH", "US", "CA", "SG", "AU", "JP", "KR",
}

// Default returns the built-in policy of `vitrine up`, version 1: zurich
// serves the EU and EEA, the UK, Switzerland, the US, Canada, Singapore,
// Australia, Japan and South Korea, and moscow, the default region, serves
// every other country. Moscow lists no countries: as the default it serves
// the 211 codes zurich does not list, and [Policy.Countries] spells them
// out.
//
// Territories with codes of their own follow the default unless listed:
// Réunion (RE), Åland (AX) or Puerto Rico (PR) go to moscow, although
// parts of the EU or the US. A deployment that wants them in zurich lists
// them in its policy.
//
// The URLs are empty; the deployment fills them in. Each call returns a new
// policy that the caller may modify.
func Default() *Policy {
	zurich := slices.Clone(zurichCountries)
	slices.Sort(zurich)
	return &Policy{
		Version: 1,
		Default: "moscow",
		Regions: []Region{
			{Name: "moscow"},
			{Name: "zurich", Countries: zurich},
		},
	}
}

// countryNames maps each code of the countries table to its name.
var countryNames = func() map[string]string {
	m := make(map[string]string, len(countries))
	for _, c := range countries {
		m[c.code] = c.name
	}
	return m
}()

// ValidCountry reports whether code is an officially assigned ISO 3166-1
// alpha-2 code, in upper case.
func ValidCountry(code string) bool {
	_, ok := countryNames[code]
	return ok
}

// CountryName returns the English short name of an ISO 3166-1 alpha-2
// code, for display, and whether the code is assigned.
func CountryName(code string) (string, bool) {
	n, ok := countryNames[code]
	return n, ok
}

// AllCountries returns every officially assigned ISO 3166-1 alpha-2 code,
// sorted.
func AllCountries() []string {
	all := make([]string, len(countries))
	for i, c := range countries {
		all[i] = c.code
	}
	return all
}

// ValidRegionName reports whether name can name a region: a lower-case
// letter followed by up to 31 lower-case letters, digits and hyphens.
func ValidRegionName(name string) bool {
	if len(name) == 0 || len(name) > 32 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// RegionFor returns the name of the region that serves country, an ISO
// 3166-1 alpha-2 code in upper case. A code that is not assigned is an
// error wrapping [ErrUnknownCountry]; so is "de" for "DE", because a
// country is written one way everywhere it is recorded.
//
// On a policy that lists a country twice, which [Policy.Validate] rejects,
// the first region listing it wins.
func (p *Policy) RegionFor(country string) (string, error) {
	if !ValidCountry(country) {
		if ValidCountry(strings.ToUpper(country)) {
			return "", fmt.Errorf("finding region for %q: %w (codes are upper case)", country, ErrUnknownCountry)
		}
		return "", fmt.Errorf("finding region for %q: %w", country, ErrUnknownCountry)
	}
	for _, r := range p.Regions {
		if slices.Contains(r.Countries, country) {
			return r.Name, nil
		}
	}
	if p.Default == "" {
		return "", fmt.Errorf("finding region for %q: the policy has no default region", country)
	}
	return p.Default, nil
}

// Region returns the region named name, or nil if the policy has none. The
// result points into p.Regions, so that a deployment can fill in URLs.
func (p *Policy) Region(name string) *Region {
	for i := range p.Regions {
		if p.Regions[i].Name == name {
			return &p.Regions[i]
		}
	}
	return nil
}

// Countries returns, sorted, every country the named region serves: the
// countries it lists and, for the default region, every country that no
// region lists. It is nil for a region the policy does not have.
func (p *Policy) Countries(region string) []string {
	var out []string
	for _, code := range AllCountries() {
		if r, err := p.RegionFor(code); err == nil && r == region {
			out = append(out, code)
		}
	}
	return out
}

// Validate reports the first way in which p breaks the rules that
// [ParsePolicy] enforces: version at least 1, at least one region, valid
// and distinct region names, valid URLs, assigned country codes each listed
// once, and a default that names a region.
func (p *Policy) Validate() error {
	return validate(p, nil)
}

// validate checks p. If pos is not nil, p was parsed from pos.doc and
// errors name the line and column of the offending token.
func validate(p *Policy, pos *positions) error {
	fail := func(off func(*positions) int64, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if pos == nil {
			return fmt.Errorf("residency policy: %s", msg)
		}
		return pos.errorAt(off(pos), msg)
	}
	// first describes where an earlier token was, for "listed twice".
	first := func(off int64) string {
		if pos == nil {
			return ""
		}
		return fmt.Sprintf(" on line %d", LineOf(pos.doc, off))
	}

	if p.Version == 0 {
		return fail(func(ps *positions) int64 { return ps.version }, "version must be at least 1")
	}
	if len(p.Regions) == 0 {
		return fail(func(ps *positions) int64 { return ps.regions }, "the policy has no regions")
	}
	names := make(map[string]int, len(p.Regions))
	type seenAt struct {
		region int
		index  int
	}
	seen := make(map[string]seenAt)
	for i, r := range p.Regions {
		at := func(f func(regionPositions) int64) func(*positions) int64 {
			return func(ps *positions) int64 { return f(ps.region[i]) }
		}
		if !ValidRegionName(r.Name) {
			return fail(at(func(rp regionPositions) int64 { return rp.name }),
				"region name %q must be a lower-case letter followed by up to 31 lower-case letters, digits and hyphens", r.Name)
		}
		if j, ok := names[r.Name]; ok {
			var where string
			if pos != nil {
				where = first(pos.region[j].name)
			}
			return fail(at(func(rp regionPositions) int64 { return rp.name }), "region %q is listed twice (first%s)", r.Name, where)
		}
		names[r.Name] = i
		if err := checkURL(r.URL); err != nil {
			return fail(at(func(rp regionPositions) int64 { return rp.url }), "region %q: url %q: %v", r.Name, r.URL, err)
		}
		for k, c := range r.Countries {
			atCountry := func(ps *positions) int64 { return ps.region[i].countries[k] }
			if !ValidCountry(c) {
				if ValidCountry(strings.ToUpper(c)) {
					return fail(atCountry, "region %q: country code %q must be upper case (%q)", r.Name, c, strings.ToUpper(c))
				}
				return fail(atCountry, "region %q: unknown country code %q", r.Name, c)
			}
			if s, ok := seen[c]; ok {
				var where string
				if pos != nil {
					where = first(pos.region[s.region].countries[s.index])
				}
				return fail(atCountry, "country %q is listed twice (first in region %q%s)", c, p.Regions[s.region].Name, where)
			}
			seen[c] = seenAt{i, k}
		}
	}
	if p.Default == "" {
		return fail(func(ps *positions) int64 { return ps.def }, "the default region is empty")
	}
	if _, ok := names[p.Default]; !ok {
		return fail(func(ps *positions) int64 { return ps.def }, "default region %q is not one of the policy's regions", p.Default)
	}
	return nil
}

// checkURL checks a region's base URL; empty is allowed.
func checkURL(s string) error {
	if s == "" {
		return nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\' {
			return errors.New("must be printable ASCII without spaces, quotes or backslashes")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("want an http or https URL")
	case u.Host == "" || u.Opaque != "":
		return errors.New("want an absolute URL with a host")
	case u.User != nil:
		return errors.New("must not contain user information")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("must not have a query")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("must not have a fragment")
	case strings.HasSuffix(s, "/"):
		return errors.New("must not end in a slash (it is a base URL)")
	case u.String() != s:
		return fmt.Errorf("not in canonical form (want %q)", u.String())
	}
	return nil
}
