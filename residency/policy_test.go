package residency

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if p.Version != 1 || p.Default != "moscow" {
		t.Errorf("Default() version %d default %q, want 1 and moscow", p.Version, p.Default)
	}
	zurich := []string{
		// The EU.
		"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
		"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
		// The EEA.
		"IS", "LI", "NO",
		"GB", "CH", "US", "CA", "SG", "AU", "JP", "KR",
	}
	moscow := []string{"RU", "BR", "CN", "IN", "BY", "TR", "UA", "ZA", "MX", "AR", "NZ", "TW", "HK", "RE", "AX", "PR", "AQ"}
	for _, tc := range []struct {
		region    string
		countries []string
	}{{"zurich", zurich}, {"moscow", moscow}} {
		for _, c := range tc.countries {
			got, err := p.RegionFor(c)
			if err != nil || got != tc.region {
				t.Errorf("Default().RegionFor(%q) = %q, %v; want %q", c, got, err, tc.region)
			}
		}
	}
	if got := p.Countries("zurich"); len(got) != 38 {
		t.Errorf("zurich serves %d countries, want 38: %v", len(got), got)
	}
	if got := p.Countries("moscow"); len(got) != 249-38 {
		t.Errorf("moscow serves %d countries, want %d", len(got), 249-38)
	}
	if got := p.Countries("nowhere"); got != nil {
		t.Errorf("Countries(nowhere) = %v, want nil", got)
	}
	// Each call is a fresh copy.
	p.Region("zurich").Countries[0] = "XX"
	p.Region("zurich").URL = "https://example.com"
	if q := Default(); q.Region("zurich").Countries[0] == "XX" || q.Region("zurich").URL != "" {
		t.Error("modifying one Default() changed the next")
	}
}

func TestRegionForInvalid(t *testing.T) {
	p := Default()
	for _, c := range []string{"", "XX", "de", "De", "DEU", "D", "UK", "EU", "XK", "ZZ", "AA", " DE", "DE\n"} {
		got, err := p.RegionFor(c)
		if !errors.Is(err, ErrUnknownCountry) {
			t.Errorf("RegionFor(%q) = %q, %v; want ErrUnknownCountry", c, got, err)
		}
	}
	_, err := p.RegionFor("de")
	if err == nil || !strings.Contains(err.Error(), "upper case") {
		t.Errorf(`RegionFor("de") error %v does not mention upper case`, err)
	}
	none := &Policy{Version: 1, Regions: []Region{{Name: "a", Countries: []string{"DE"}}}}
	if r, err := none.RegionFor("DE"); r != "a" || err != nil {
		t.Errorf("RegionFor(DE) = %q, %v; want a", r, err)
	}
	if r, err := none.RegionFor("FR"); err == nil {
		t.Errorf("RegionFor(FR) with no default = %q, want an error", r)
	}
}

func TestCountriesTable(t *testing.T) {
	all := AllCountries()
	if len(all) != 249 {
		t.Fatalf("%d country codes, want 249", len(all))
	}
	for i, c := range all {
		if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
			t.Errorf("code %q is not two upper-case letters", c)
		}
		if i > 0 && all[i-1] >= c {
			t.Errorf("codes out of order or repeated: %q then %q", all[i-1], c)
		}
		if n, ok := CountryName(c); !ok || n == "" {
			t.Errorf("CountryName(%q) = %q, %v", c, n, ok)
		}
	}
	if n, _ := CountryName("KR"); n != "South Korea" {
		t.Errorf("CountryName(KR) = %q", n)
	}
}

// TestCountriesMatchSystemData compares the table with two lists we did not
// write: Debian's iso-codes and the tz database's iso3166.tab.
func TestCountriesMatchSystemData(t *testing.T) {
	want := AllCountries()
	t.Run("iso-codes", func(t *testing.T) {
		b, err := os.ReadFile("/usr/share/iso-codes/json/iso_3166-1.json")
		if err != nil {
			t.Skipf("no iso-codes data on this machine (install the iso-codes package): %v", err)
		}
		var doc struct {
			Countries []struct {
				Alpha2 string `json:"alpha_2"`
			} `json:"3166-1"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range doc.Countries {
			got = append(got, c.Alpha2)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("iso-codes lists %d codes that differ from the table:\n got %v\nwant %v", len(got), got, want)
		}
	})
	t.Run("tzdata", func(t *testing.T) {
		b, err := os.ReadFile("/usr/share/zoneinfo/iso3166.tab")
		if err != nil {
			t.Skipf("no tzdata iso3166.tab on this machine (install the tzdata package): %v", err)
		}
		var got []string
		for _, line := range strings.Split(string(b), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			code, _, _ := strings.Cut(line, "\t")
			got = append(got, code)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("iso3166.tab lists %d codes that differ from the table:\n got %v\nwant %v", len(got), got, want)
		}
	})
}

func TestValidRegionName(t *testing.T) {
	for name, want := range map[string]bool{
		"zurich": true, "a": true, "eu-west-1": true, strings.Repeat("a", 32): true,
		"": false, "Zurich": false, "1zurich": false, "-a": false, "zu_rich": false,
		"zürich": false, strings.Repeat("a", 33): false, "a b": false,
	} {
		if got := ValidRegionName(name); got != want {
			t.Errorf("ValidRegionName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"https://zurich.example.com", true},
		{"http://127.0.0.1:8080/regions/zurich", true},
		{"http://[::1]:8080", true},
		{"https://zurich.example.com/", false},
		{"ftp://example.com", false},
		{"HTTPS://example.com", false},
		{"//example.com", false},
		{"/regions/zurich", false},
		{"https:example.com", false},
		{"https://", false},
		{"https://user:pw@example.com", false},
		{"https://example.com?x=1", false},
		{"https://example.com?", false},
		{"https://example.com#top", false},
		{"https://example.com#", false},
		{"https://exa mple.com", false},
		{"https://example.com/a\"b", false},
		{"https://example.com/ü", false},
		{"https://example.com/%zz", false},
		{"https://example.com/%7e", true},
	} {
		if err := checkURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	valid := func() *Policy {
		return &Policy{Version: 3, Default: "b", Regions: []Region{
			{Name: "a", URL: "https://a.example.com", Countries: []string{"DE", "FR"}},
			{Name: "b", Countries: []string{"RU"}},
		}}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	for _, tc := range []struct {
		name   string
		modify func(*Policy)
		want   string
	}{
		{"version 0", func(p *Policy) { p.Version = 0 }, "version must be at least 1"},
		{"no regions", func(p *Policy) { p.Regions = nil; p.Default = "" }, "no regions"},
		{"bad name", func(p *Policy) { p.Regions[0].Name = "A" }, `region name "A"`},
		{"twice", func(p *Policy) { p.Regions[1].Name = "a"; p.Default = "a" }, `region "a" is listed twice (first)`},
		{"bad url", func(p *Policy) { p.Regions[0].URL = "ftp://a" }, `region "a": url "ftp://a": want an http or https URL`},
		{"bad country", func(p *Policy) { p.Regions[0].Countries[1] = "XX" }, `region "a": unknown country code "XX"`},
		{"lower case", func(p *Policy) { p.Regions[0].Countries[1] = "fr" }, `country code "fr" must be upper case ("FR")`},
		{"country twice", func(p *Policy) { p.Regions[1].Countries = append(p.Regions[1].Countries, "DE") }, `country "DE" is listed twice (first in region "a")`},
		{"no default", func(p *Policy) { p.Default = "" }, "default region is empty"},
		{"unknown default", func(p *Policy) { p.Default = "c" }, `default region "c" is not one of the policy's regions`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := valid()
			tc.modify(p)
			err := p.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), "residency policy: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
