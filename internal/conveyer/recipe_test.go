package conveyer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/ruledb"
)

const goodRecipe = `{
  "name": "vitrine",
  "version": "42",
  "source": {"git": ".", "commit": "0123456789abcdef0123456789abcdef01234567"},
  "targets": [
    {"go": {"package": "./cmd/vitrine", "platforms": ["linux/amd64", "linux/arm64"], "ldflags": ["-s", "-w"], "tags": ["netgo"]}},
    {"ruledb": {"name": "sample", "dir": "ruledb/testdata/sample"}}
  ],
  "toolchain": "go1.26.8"
}`

func TestParseRecipe(t *testing.T) {
	r, err := ParseRecipe([]byte(goodRecipe))
	if err != nil {
		t.Fatalf("ParseRecipe(good) = %v", err)
	}
	if got, want := r.Targets[0].Go.artifact("linux", "arm64"), "vitrine_linux_arm64"; got != want {
		t.Errorf("artifact name = %q, want %q", got, want)
	}
	if got, want := r.Targets[1].RuleDB.Dir, "ruledb/testdata/sample"; got != want {
		t.Errorf("ruledb dir = %q, want %q", got, want)
	}
	if r.Toolchain != "go1.26.8" {
		t.Errorf("toolchain = %q, want go1.26.8", r.Toolchain)
	}
}

func TestParseRecipeRefuses(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"unknown top key", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}],"extra":1}`, `unknown field "extra"`},
		{"unknown nested key", `{"name":"a","version":"1","source":{"dir":".","branch":"main"},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, `unknown field "branch"`},
		{"unknown go key", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./x","platforms":["linux/amd64"],"cgo":true}}]}`, `unknown field "cgo"`},
		{"trailing data", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]} {}`, "trailing data"},
		{"trailing garbage", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}x`, "trailing data"},
		{"a member named twice", `{"name":"a","version":"1","version":"2","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "appears twice"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"empty", ``, "EOF"},
		{"bad name", `{"name":"A B","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "name"},
		{"no version", `{"name":"a","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "version"},
		{"short commit", `{"name":"a","version":"1","source":{"git":".","commit":"abc123"},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "full lowercase hex"},
		{"branch as commit", `{"name":"a","version":"1","source":{"git":".","commit":"main"},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "full lowercase hex"},
		{"git and dir", `{"name":"a","version":"1","source":{"git":".","dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "not both"},
		{"no source", `{"name":"a","version":"1","source":{},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "source"},
		{"no targets", `{"name":"a","version":"1","source":{"dir":"."},"targets":[]}`, "at least one target"},
		{"empty target", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{}]}`, "exactly one"},
		{"absolute package", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"github.com/x/y","platforms":["linux/amd64"]}}]}`, "starting with ./"},
		{"escaping package", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./../y","platforms":["linux/amd64"]}}]}`, "clean relative"},
		{"no platforms", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./x"}}]}`, "platforms"},
		{"bad platform", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./x","platforms":["linux"]}}]}`, "goos/goarch"},
		{"duplicate platform", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./x","platforms":["linux/amd64","linux/amd64"]}}]}`, "built twice"},
		{"quoted ldflag", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"go":{"package":"./x","platforms":["linux/amd64"],"ldflags":["-X 'a=b'"]}}]}`, "ldflags"},
		{"ruledb escapes", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"../etc"}}]}`, "inside the source"},
		{"ruledb version not decimal", `{"name":"a","version":"1.0.0","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "decimal version"},
		{"ruledb version zero", `{"name":"a","version":"0","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "decimal version"},
		{"ruledb version leading zero", `{"name":"a","version":"07","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}]}`, "decimal version"},
		{"ruledb absolute", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"/etc"}}]}`, "inside the source"},
		{"toolchain not a release", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}],"toolchain":"go1.26.8 -toolexec=x"}`, "toolchain"},
		{"toolchain a word", `{"name":"a","version":"1","source":{"dir":"."},"targets":[{"ruledb":{"name":"x","dir":"d"}}],"toolchain":"local"}`, "toolchain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRecipe([]byte(tt.json))
			if err == nil {
				t.Fatalf("ParseRecipe = %+v, want an error containing %q", r, tt.want)
			}
			if !errors.Is(err, ErrInvalidRecipe) {
				t.Errorf("error %v does not wrap ErrInvalidRecipe", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestRepositoryRecipes parses the recipes the repository ships.
func TestRepositoryRecipes(t *testing.T) {
	files, err := filepath.Glob("../../recipes/*.json")
	if err != nil || len(files) < 2 {
		t.Fatalf("recipes: %v %v, want at least two", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRecipe(data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSampleRuleDBRecipe runs the rule database recipe as far as the
// conveyer goes: the source at its commit holds the rule directory.
func TestSampleRuleDBRecipe(t *testing.T) {
	root, _ := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "recipes", "sample-ruledb.json"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecipe(data)
	if err != nil {
		t.Fatal(err)
	}
	r.Source.Git = root // "." in the recipe means the repository root
	res, err := testBuilder(t).Build(context.Background(), r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RuleDBs) != 1 || !strings.HasSuffix(filepath.ToSlash(res.RuleDBs[0].Dir), "/ruledb/testdata/sample") {
		t.Fatalf("rule databases = %+v, want ruledb/testdata/sample", res.RuleDBs)
	}
	// The database is the one package ruledb compiles from the sample
	// rules at the recipe's version, EICAR included.
	compiled, err := os.ReadFile(res.RuleDBs[0].File.Path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Open(compiled)
	if err != nil {
		t.Fatal(err)
	}
	if db.Version() != 1 {
		t.Errorf("database version %d, want the recipe's 1", db.Version())
	}
	names := map[string]bool{}
	for _, s := range db.Signatures() {
		names[s.Name] = true
	}
	if !names["Vitrine.Test.EICAR-Body"] || !names["Vitrine.Test.EICAR-SHA256"] {
		t.Errorf("database lacks the EICAR signatures: %v", names)
	}
	if d := sha256.Sum256(compiled); hex.EncodeToString(d[:]) != res.RuleDBs[0].File.SHA256 {
		t.Errorf("File.SHA256 %s is not the database's digest", res.RuleDBs[0].File.SHA256)
	}
}
