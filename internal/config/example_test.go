package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
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
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	var set map[string]json.RawMessage
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if _, ok := set[k]; !ok {
			t.Errorf("the example leaves the key %q out", k)
		}
		if !strings.Contains(string(doc), "| `"+k+"` |") {
			t.Errorf("docs/config.md has no row for the key %q", k)
		}
	}
	if c.CustodyURL == "" || c.CheckpointInterval == 0 || c.CommitmentInterval == 0 {
		t.Errorf("the example's values were not read: %+v", c)
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
