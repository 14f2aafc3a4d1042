package residency

import (
	"slices"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	a := Default()
	a.Region("zurich").URL = "https://zurich.example.com"
	a.Region("moscow").URL = "https://moscow.example.com"

	if got := Diff(a, a); len(got) != 0 {
		t.Errorf("Diff(a, a) = %v, want nothing", got)
	}

	// Relocate RU and BR to zurich, move DE to a new region, change
	// moscow's URL, and list a country in the default region that it
	// served anyway (no change).
	b := Default()
	b.Version = 2
	b.Region("zurich").URL = "https://zurich.example.com"
	b.Region("zurich").Countries = slices.DeleteFunc(b.Region("zurich").Countries, func(c string) bool { return c == "DE" })
	b.Region("zurich").Countries = append(b.Region("zurich").Countries, "RU", "BR")
	b.Region("moscow").URL = "https://moscow2.example.com"
	b.Region("moscow").Countries = []string{"CN"}
	b.Regions = append(b.Regions, Region{Name: "frankfurt", URL: "https://frankfurt.example.com", Countries: []string{"DE"}})
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`region frankfurt added at "https://frankfurt.example.com"`,
		`region moscow url "https://moscow.example.com" -> "https://moscow2.example.com"`,
		`country BR moscow -> zurich`,
		`country DE zurich -> frankfurt`,
		`country RU moscow -> zurich`,
	}
	if got := diffLines(Diff(a, b)); !slices.Equal(got, want) {
		t.Errorf("Diff(a, b) =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantBack := []string{
		`region frankfurt removed`,
		`region moscow url "https://moscow2.example.com" -> "https://moscow.example.com"`,
		`country BR zurich -> moscow`,
		`country DE frankfurt -> zurich`,
		`country RU zurich -> moscow`,
	}
	if got := diffLines(Diff(b, a)); !slices.Equal(got, wantBack) {
		t.Errorf("Diff(b, a) =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantBack, "\n"))
	}
}

// TestDiffDefault changes the default region: every unlisted country moves.
func TestDiffDefault(t *testing.T) {
	a := Default()
	b := &Policy{Version: 2, Default: "zurich", Regions: []Region{
		{Name: "zurich"},
		{Name: "moscow", Countries: []string{"RU"}},
		{Name: "a-new"},
	}}
	changes := Diff(a, b)
	lines := diffLines(changes)
	if lines[0] != "region a-new added" || lines[1] != "default moscow -> zurich" {
		t.Errorf("Diff starts %q, want the added region then the default", lines[:2])
	}
	// Every country moscow served except RU moves to zurich.
	if n := len(changes) - 2; n != 249-38-1 {
		t.Errorf("%d countries moved, want %d", n, 249-38-1)
	}
	for _, c := range changes[2:] {
		if c.Kind != CountryMoved || c.From != "moscow" || c.To != "zurich" || c.Country == "RU" {
			t.Errorf("unexpected change %v", c)
		}
	}
	if !slices.IsSortedFunc(changes[2:], func(x, y Change) int { return strings.Compare(x.Country, y.Country) }) {
		t.Error("country changes are not sorted by code")
	}
}

func TestChangeString(t *testing.T) {
	for _, tc := range []struct {
		c    Change
		want string
	}{
		{Change{Kind: RegionAdded, Region: "x"}, "region x added"},
		{Change{Kind: RegionAdded, Region: "x", To: "https://x"}, `region x added at "https://x"`},
		{Change{Kind: RegionRemoved, Region: "x", From: "https://x"}, "region x removed"},
		{Change{Kind: URLChanged, Region: "x", To: "https://x"}, `region x url "" -> "https://x"`},
		{Change{Kind: DefaultChanged, From: "a", To: "b"}, "default a -> b"},
		{Change{Kind: CountryMoved, Country: "DE", From: "a", To: "b"}, "country DE a -> b"},
		{Change{}, "unknown change 0"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func diffLines(changes []Change) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}
