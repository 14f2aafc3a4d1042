package residency

import (
	"slices"
	"testing"
)

func TestMove(t *testing.T) {
	p := Default()
	for _, tc := range []struct{ country, to string }{{"DE", "moscow"}, {"BR", "zurich"}} {
		next, err := p.Move(tc.country, tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if next.Version != p.Version+1 {
			t.Errorf("version %d, want %d", next.Version, p.Version+1)
		}
		if got, _ := next.RegionFor(tc.country); got != tc.to {
			t.Errorf("after moving %s to %s it is served by %s", tc.country, tc.to, got)
		}
		// Every other country stays where it was.
		for _, c := range AllCountries() {
			if c == tc.country {
				continue
			}
			a, _ := p.RegionFor(c)
			b, _ := next.RegionFor(c)
			if a != b {
				t.Errorf("moving %s moved %s from %s to %s", tc.country, c, a, b)
			}
		}
		if !slices.Contains(Default().Region("zurich").Countries, "DE") {
			t.Fatal("Move changed the policy it was called on")
		}
	}
	if _, err := p.Move("DE", "zurich"); err == nil {
		t.Error("moving DE to the region that serves it succeeded")
	}
	if _, err := p.Move("DE", "atlantis"); err == nil {
		t.Error("moving DE to an unknown region succeeded")
	}
	if _, err := p.Move("XX", "moscow"); err == nil {
		t.Error("moving an unknown country succeeded")
	}
}
