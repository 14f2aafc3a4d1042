package conveyer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseRecipe checks that ParseRecipe never crashes and that every
// recipe it accepts survives a round trip through JSON unchanged.
func FuzzParseRecipe(f *testing.F) {
	f.Add([]byte(goodRecipe))
	f.Add([]byte(`{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]} {}`))
	files, _ := filepath.Glob("../../recipes/*.json")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecipe(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshalling an accepted recipe: %v", err)
		}
		r2, err := ParseRecipe(out)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		// Compare encodings: an empty list and an absent one are the same
		// recipe.
		out2, err := json.Marshal(r2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the recipe:\n%s\n%s", out, out2)
		}
	})
}
