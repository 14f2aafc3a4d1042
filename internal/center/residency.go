package center

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/vitrine-dev/vitrine/internal/center/worldmap"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/residency"
)

// ResidencyPage is the residency policy in force, country by country and
// on a world map, every version in the policy log with what it changed,
// and every relocation the access logs hold, checked.
type ResidencyPage struct {
	Platform string `json:"platform"`
	// Policy is the version in force: the newest in the policy log that
	// verifies under the pinned policy key. Absent if none does.
	Policy *PolicyVersion `json:"policy,omitempty"`
	// Regions are the regions of the policy in force, each with the
	// colour the map gives its countries.
	Regions []RegionColour `json:"regions"`
	// Query is the filter asked for (?q=): a part of a country's name,
	// its code or its region's name, in any case and with or without
	// accents. Countries holds the countries that match, of Total.
	Query     string          `json:"query,omitempty"`
	Countries []CountryRegion `json:"countries"`
	Total     int             `json:"total"`
	// Versions are the policy log's policies that verify under the
	// pinned policy key, newest first.
	Versions []PolicyVersion `json:"versions"`
	// Skipped counts the policy log's entries that are not a policy
	// signed with the pinned key (the monitor alerts on them).
	Skipped int `json:"skipped"`
	// Relocations are those the access logs hold entries of, newest
	// first, each checked against the logs (relocate.Verify); AccessLogs
	// are the logs as far as they were read. RelocationsProblem says why
	// they could not be read, and then none is shown.
	Relocations        []Relocation `json:"relocations"`
	AccessLogs         []ReadLog    `json:"access_logs"`
	RelocationsProblem string       `json:"relocations_problem,omitempty"`

	Map *mapView `json:"-"`
}

// CountryRegion is a country, the region that serves it and that
// region's colour on the map; OnMap says whether the map has a shape for
// it (tiny states have none).
type CountryRegion struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Region string `json:"region"`
	Colour string `json:"colour"`
	OnMap  bool   `json:"on_map"`
}

// RegionColour is a region of the policy in force, its colour on the map
// and how many countries it serves; Default: it serves every country no
// region lists.
type RegionColour struct {
	Name      string `json:"name"`
	Colour    string `json:"colour"`
	Countries int    `json:"countries"`
	Default   bool   `json:"default,omitempty"`
}

// PolicyVersion is one version of the policy and what changed since the
// one before.
type PolicyVersion struct {
	Version uint64   `json:"version"`
	Index   uint64   `json:"index"` // in the policy log
	Regions []string `json:"regions"`
	Changes []string `json:"changes,omitempty"`
}

// mapView is the world map as the page draws it.
type mapView struct {
	Width, Height int
	Shapes        []mapShape
	Source        string
}

type mapShape struct {
	Code, Title, D, Fill string
	// Href goes to the country's row: on this page, or, when the filter
	// leaves it out, on the page without the filter.
	Href string
	// Dim: the filter leaves it out; Found: the filter finds it.
	Dim, Found bool
}

// regionPalette colours regions in the order they first appear in the
// policy log, so that a region keeps its colour from version to version
// (Okabe and Ito's palette, told apart with colour blindness; past eight
// regions colours repeat, and the titles and the table still tell).
var regionPalette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#7f7f7f"}

// noRegionFill is the fill of a shape no region serves: a territory the
// map has without an ISO 3166-1 code.
const noRegionFill = "#d8dde3"

// maxQuery bounds the filter.
const maxQuery = 64

func (c *Center) serveResidency(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > maxQuery || !utf8.ValidString(q) {
		httpapi.Error(w, http.StatusBadRequest, "q filters the countries by a part of a name, a code or a region: at most 64 bytes of UTF-8")
		return
	}
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
	page := &ResidencyPage{Platform: c.cfg.Platform, Query: q, Regions: []RegionColour{}, Countries: []CountryRegion{}, Versions: []PolicyVersion{},
		Relocations: []Relocation{}, AccessLogs: []ReadLog{}}
	var prev, latest *residency.Policy
	var policies []*residency.Policy
	at := map[uint64]uint64{} // version: index in the policy log
	colour := map[string]string{}
	for i, e := range entries {
		if !residency.IsPolicyEntry(e) {
			page.Skipped++
			continue
		}
		p, err := residency.Open(e, v)
		if err != nil {
			page.Skipped++
			continue
		}
		policies = append(policies, p)
		at[p.Version] = uint64(i)
		pv := PolicyVersion{Version: p.Version, Index: uint64(i), Regions: []string{}, Changes: []string{}}
		for _, reg := range p.Regions {
			pv.Regions = append(pv.Regions, reg.Name)
			if colour[reg.Name] == "" {
				colour[reg.Name] = regionPalette[len(colour)%len(regionPalette)]
			}
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
			latest, page.Policy = p, &pv
		}
	}
	if page.Policy != nil {
		in := *page.Policy // as listed, without the changes: those are the versions'
		in.Changes = nil
		page.Policy = &in
	}
	page.Map = residencyMap(page, latest, colour, q)

	// Relocations: the access logs are read on from where the Center
	// stopped, and go on being read if the reader leaves (saved as they
	// go), one reading at a time.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	c.relocMu.Lock()
	found, read, err := c.relocationEntries(rctx)
	c.relocMu.Unlock()
	if err != nil {
		page.RelocationsProblem = err.Error()
	} else {
		page.AccessLogs = read
		page.Relocations = relocations(found, policies, at)
	}
	c.render(w, r, "residency.html", page)
}

// residencyMap fills in the page's countries and regions from the policy
// in force and returns the map that shows them, the countries that do not
// match q dimmed.
func residencyMap(page *ResidencyPage, latest *residency.Policy, colour map[string]string, q string) *mapView {
	world := worldmap.World()
	onMap := map[string]bool{}
	for _, s := range world.Shapes {
		onMap[s.Code] = s.Code != ""
	}
	region := map[string]string{}
	count := map[string]int{}
	if latest != nil {
		for _, code := range residency.AllCountries() {
			reg, err := latest.RegionFor(code)
			if err != nil {
				continue
			}
			region[code] = reg
			count[reg]++
			page.Total++
			name, _ := residency.CountryName(code)
			if matches(q, code, name, reg) {
				page.Countries = append(page.Countries, CountryRegion{Code: code, Name: name, Region: reg, Colour: colour[reg], OnMap: onMap[code]})
			}
		}
		for _, reg := range latest.Regions {
			page.Regions = append(page.Regions, RegionColour{Name: reg.Name, Colour: colour[reg.Name], Countries: count[reg.Name], Default: reg.Name == latest.Default})
		}
	}
	m := &mapView{Width: world.Width, Height: world.Height, Source: world.Source}
	for _, s := range world.Shapes {
		ms := mapShape{Code: s.Code, D: s.D, Fill: noRegionFill}
		name, _ := residency.CountryName(s.Code)
		switch reg := region[s.Code]; {
		case s.Code == "":
			ms.Title = s.Name + ": no ISO 3166-1 code, so no policy names it"
			ms.Dim = q != ""
		case reg == "":
			ms.Title = name + " (" + s.Code + "): no policy in force verifies"
			ms.Dim = q != "" && !matches(q, s.Code, name, "")
		default:
			ms.Title = name + " (" + s.Code + "): " + reg
			ms.Fill = colour[reg]
			ms.Dim = !matches(q, s.Code, name, reg)
		}
		ms.Found = q != "" && !ms.Dim
		ms.Href = "#" + s.Code
		if ms.Dim {
			ms.Href = "/center/residency#" + s.Code
		}
		m.Shapes = append(m.Shapes, ms)
	}
	return m
}

// matches reports whether q is a part of a country's name, code or
// region, ignoring case and accents ("cote" finds Côte d'Ivoire).
func matches(q, code, name, region string) bool {
	if q == "" {
		return true
	}
	q = fold(q)
	return strings.EqualFold(q, code) || strings.Contains(fold(name), q) || strings.Contains(fold(region), q)
}

// fold lower-cases s and takes its accents off.
func fold(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}
