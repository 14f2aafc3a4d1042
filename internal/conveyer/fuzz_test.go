package conveyer

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRecipe checks that ParseRecipe never crashes and that every
// recipe it accepts survives a round trip through JSON unchanged.
func FuzzParseRecipe(f *testing.F) {
	f.Add([]byte(goodRecipe))
	f.Add([]byte(`{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]} {}`))
	// Sources a command line could take for options, found by an
	// attacker: ParseRecipe must refuse them all.
	for _, git := range []string{
		`--upload-pack=sh -c \"id > /tmp/x\"`,
		`-oProxyCommand=id`,
		`ssh://-oProxyCommand=id/x`,
		`ext::sh -c id`,
		`file:///etc`,
	} {
		f.Add([]byte(`{"name":"a","version":"1","source":{"git":"` + git + `","commit":"0123456789abcdef0123456789abcdef01234567"},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`))
	}
	f.Add([]byte(`{"name":"a","version":"1","source":{"dir":"--help"},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`))
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
		for _, p := range []string{r.Source.Git, r.Source.Dir, r.Source.Commit} {
			if strings.HasPrefix(p, "-") {
				t.Fatalf("accepted a source that starts with '-': %+v", r.Source)
			}
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
