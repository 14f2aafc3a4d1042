package worldmap

import (
	"regexp"
	"testing"

	"github.com/vitrine-dev/vitrine/residency"
)

// TestWorld: the map holds the large countries under their ISO codes,
// each code a residency country once, and path data made only of
// absolute moves, relative lines and closes, inside the map.
func TestWorld(t *testing.T) {
	m := World()
	if m.Width != 1000 || m.Height < 400 || m.Height > 500 || len(m.Shapes) < 170 {
		t.Fatalf("the map: %d×%d, %d shapes", m.Width, m.Height, len(m.Shapes))
	}
	known := map[string]bool{}
	for _, c := range residency.AllCountries() {
		known[c] = true
	}
	seen := map[string]bool{}
	path := regexp.MustCompile(`^(M\d+ \d+l(-?\d+[ -]?)+z)+$`)
	move := regexp.MustCompile(`M(\d+) (\d+)`)
	for _, s := range m.Shapes {
		if s.Code != "" && (!known[s.Code] || seen[s.Code]) {
			t.Errorf("%s: code %s unknown or repeated", s.Name, s.Code)
		}
		seen[s.Code] = true
		if !path.MatchString(s.D) {
			t.Errorf("%s: path data %.40q…", s.Name, s.D)
		}
		for _, mv := range move.FindAllStringSubmatch(s.D, -1) {
			var x, y int
			for _, c := range mv[1] {
				x = x*10 + int(c-'0')
			}
			for _, c := range mv[2] {
				y = y*10 + int(c-'0')
			}
			if x > m.Width || y > m.Height {
				t.Errorf("%s: a ring starts at %d,%d, outside the map", s.Name, x, y)
			}
		}
	}
	for _, c := range []string{"DE", "BR", "US", "RU", "CN", "AU", "ZA", "IN", "CH", "FJ"} {
		if !seen[c] {
			t.Errorf("no shape for %s", c)
		}
	}
}
