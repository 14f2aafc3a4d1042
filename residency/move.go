package residency

import (
	"fmt"
	"slices"
)

// Move returns the next version of p in which country is served by the
// region named to: the country leaves the list of the region that lists
// it, and joins the list of to unless to is the default region, which
// serves every country no region lists. p is not changed.
func (p *Policy) Move(country, to string) (*Policy, error) {
	from, err := p.RegionFor(country)
	if err != nil {
		return nil, fmt.Errorf("moving %s: %w", country, err)
	}
	if p.Region(to) == nil {
		return nil, fmt.Errorf("moving %s: the policy has no region %q", country, to)
	}
	if from == to {
		return nil, fmt.Errorf("moving %s: region %s serves it already", country, to)
	}
	next := &Policy{Version: p.Version + 1, Default: p.Default}
	for _, r := range p.Regions {
		r.Countries = slices.DeleteFunc(slices.Clone(r.Countries), func(c string) bool { return c == country })
		if r.Name == to && to != p.Default {
			r.Countries = append(r.Countries, country)
			slices.Sort(r.Countries)
		}
		next.Regions = append(next.Regions, r)
	}
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("moving %s: %w", country, err)
	}
	return next, nil
}
