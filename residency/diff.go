package residency

import (
	"cmp"
	"fmt"
	"slices"
)

// ChangeKind is what a [Change] changes.
type ChangeKind int

// Kinds of change, in the order [Diff] lists them.
const (
	// RegionAdded: Region is new; To is its URL.
	RegionAdded ChangeKind = iota + 1
	// RegionRemoved: Region is gone; From was its URL.
	RegionRemoved
	// URLChanged: Region's URL changed From one To another.
	URLChanged
	// DefaultChanged: the default region changed From one To another.
	DefaultChanged
	// CountryMoved: Country is now served by region To instead of From.
	CountryMoved
)

// Change is one difference between two policies.
type Change struct {
	Kind ChangeKind
	// Region is the region added, removed or given a new URL.
	Region string
	// Country is the ISO 3166-1 alpha-2 code of a country that moved.
	Country string
	// From and To are region names for CountryMoved and DefaultChanged,
	// and URLs for the region changes.
	From, To string
}

// String formats c as one line of `vitrine policy diff`:
//
//	region frankfurt added at "https://frankfurt.example.com"
//	region moscow removed
//	region zurich url "https://a.example.com" -> "https://b.example.com"
//	default moscow -> zurich
//	country RU moscow -> zurich
func (c Change) String() string {
	switch c.Kind {
	case RegionAdded:
		if c.To == "" {
			return fmt.Sprintf("region %s added", c.Region)
		}
		return fmt.Sprintf("region %s added at %q", c.Region, c.To)
	case RegionRemoved:
		return fmt.Sprintf("region %s removed", c.Region)
	case URLChanged:
		return fmt.Sprintf("region %s url %q -> %q", c.Region, c.From, c.To)
	case DefaultChanged:
		return fmt.Sprintf("default %s -> %s", c.From, c.To)
	case CountryMoved:
		return fmt.Sprintf("country %s %s -> %s", c.Country, c.From, c.To)
	}
	return fmt.Sprintf("unknown change %d", int(c.Kind))
}

// Diff returns what changes from policy a to policy b: regions added and
// removed, URLs changed, a new default, and every country whose serving
// region changes, including those that move only because the default
// changed or because a region stopped listing them. Listing a country in
// the default region that served it anyway is no change. The version is
// not compared.
//
// The changes come sorted: region changes by region name, then the
// default, then countries by code. Diff expects valid policies; on an
// invalid one, a country is taken to be where [Policy.RegionFor] puts it.
func Diff(a, b *Policy) []Change {
	var out []Change
	for _, r := range a.Regions {
		if nr := b.Region(r.Name); nr == nil {
			out = append(out, Change{Kind: RegionRemoved, Region: r.Name, From: r.URL})
		} else if nr.URL != r.URL {
			out = append(out, Change{Kind: URLChanged, Region: r.Name, From: r.URL, To: nr.URL})
		}
	}
	for _, r := range b.Regions {
		if a.Region(r.Name) == nil {
			out = append(out, Change{Kind: RegionAdded, Region: r.Name, To: r.URL})
		}
	}
	slices.SortStableFunc(out, func(x, y Change) int {
		return cmp.Or(cmp.Compare(x.Region, y.Region), cmp.Compare(x.Kind, y.Kind))
	})
	if a.Default != b.Default {
		out = append(out, Change{Kind: DefaultChanged, From: a.Default, To: b.Default})
	}
	for _, c := range countries {
		from, _ := a.RegionFor(c.code)
		to, _ := b.RegionFor(c.code)
		if from != to {
			out = append(out, Change{Kind: CountryMoved, Country: c.code, From: from, To: to})
		}
	}
	return out
}
