package center

import (
	"net/http"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/residency"
)

// ResidencyPage is the residency policy in force, country by country, and
// every version in the policy log with what it changed.
type ResidencyPage struct {
	Platform string `json:"platform"`
	// Countries are every ISO 3166-1 country with the region that the
	// policy in force has serve it.
	Countries []CountryRegion `json:"countries"`
	// Versions are the policy log's policies that verify under the
	// pinned policy key, newest first.
	Versions []PolicyVersion `json:"versions"`
	// Skipped counts the policy log's entries that are not a policy
	// signed with the pinned key (the monitor alerts on them).
	Skipped int `json:"skipped"`
}

// CountryRegion is a country and the region that serves it.
type CountryRegion struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Region string `json:"region"`
}

// PolicyVersion is one version of the policy and what changed since the
// one before.
type PolicyVersion struct {
	Version uint64   `json:"version"`
	Index   uint64   `json:"index"` // in the policy log
	Regions []string `json:"regions"`
	Changes []string `json:"changes"`
}

func (c *Center) serveResidency(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	l, _, pins, err := c.openLog(ctx, "policy")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v, err := note.NewVerifier(pins.PolicyKey)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	entries, err := c.entries(ctx, "policy", l)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	page := &ResidencyPage{Platform: c.cfg.Platform, Countries: []CountryRegion{}, Versions: []PolicyVersion{}}
	var prev, latest *residency.Policy
	for i, e := range entries {
		p, err := residency.Open(e, v)
		if err != nil || !residency.IsPolicyEntry(e) {
			page.Skipped++
			continue
		}
		pv := PolicyVersion{Version: p.Version, Index: uint64(i), Changes: []string{}}
		for _, reg := range p.Regions {
			pv.Regions = append(pv.Regions, reg.Name)
		}
		if prev == nil {
			pv.Changes = append(pv.Changes, "the first policy")
		} else {
			for _, ch := range residency.Diff(prev, p) {
				pv.Changes = append(pv.Changes, ch.String())
			}
		}
		page.Versions = append([]PolicyVersion{pv}, page.Versions...)
		prev = p
		if latest == nil || p.Version > latest.Version {
			latest = p
		}
	}
	if latest != nil {
		for _, code := range residency.AllCountries() {
			region, err := latest.RegionFor(code)
			if err != nil {
				continue
			}
			name, _ := residency.CountryName(code)
			page.Countries = append(page.Countries, CountryRegion{Code: code, Name: name, Region: region})
		}
	}
	c.render(w, r, "residency.html", page)
}
