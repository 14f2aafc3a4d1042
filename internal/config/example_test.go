package config

import (
	"path/filepath"
	"testing"

	"github.com/vitrine-dev/vitrine/residency"
)

// TestExample loads docs/config.example.json, which the README points
// newcomers to: it must stay a valid configuration that sets every key.
func TestExample(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "docs", "config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name == "" || c.Data == "" || c.Listen == "" || c.PublicURL == "" || c.Residency == nil || len(c.Stores) == 0 || len(c.BuildSourceRoots) == 0 {
		t.Errorf("the example leaves a key out: %+v", c)
	}
	// Its policy is the default one, spelled out.
	def := residency.Default()
	for _, cc := range []string{"CH", "DE", "US", "SG", "AU", "JP", "KR", "BR", "CN"} {
		got, err := c.Residency.RegionFor(cc)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := def.RegionFor(cc); got != want {
			t.Errorf("the example puts %s in %s, the default policy in %s", cc, got, want)
		}
	}
}
