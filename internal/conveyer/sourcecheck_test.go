package conveyer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const someCommit = "0123456789abcdef0123456789abcdef01234567"

// sourceRecipe is a rule database recipe over source, given as JSON.
func sourceRecipe(source string) []byte {
	return []byte(`{"name":"a","version":"1","source":` + source + `,"targets":[{"ruledb":{"name":"x","dir":"rules"}}]}`)
}

// TestParseRecipeSources: a source that a command line could read as an
// option, a scheme other than https and ssh, and control characters are
// refused when the recipe is read.
func TestParseRecipeSources(t *testing.T) {
	for _, tc := range []struct {
		name, source string
		ok           bool
	}{
		{"upload-pack", `{"git":"--upload-pack=sh -c \"id > /tmp/x\"","commit":"` + someCommit + `"}`, false},
		{"short option", `{"git":"-uid","commit":"` + someCommit + `"}`, false},
		{"ssh host option", `{"git":"ssh://-oProxyCommand=id/x","commit":"` + someCommit + `"}`, false},
		{"ssh user option", `{"git":"ssh://-oProxyCommand=id@host/x","commit":"` + someCommit + `"}`, false},
		{"ext transport", `{"git":"ext::sh -c id","commit":"` + someCommit + `"}`, false},
		{"file URL", `{"git":"file:///etc","commit":"` + someCommit + `"}`, false},
		{"http URL", `{"git":"http://example.com/x.git","commit":"` + someCommit + `"}`, false},
		{"scp-like", `{"git":"git@example.com:x/y.git","commit":"` + someCommit + `"}`, false},
		{"password", `{"git":"https://u:secret@example.com/x.git","commit":"` + someCommit + `"}`, false},
		{"newline", `{"git":"./a\nb","commit":"` + someCommit + `"}`, false},
		{"NUL", `{"git":"./a\u0000b","commit":"` + someCommit + `"}`, false},
		{"commit with newline", `{"git":".","commit":"` + someCommit + `\n"}`, false},
		{"commit as option", `{"git":".","commit":"--output=/tmp/x"}`, false},
		{"dir option", `{"dir":"--help"}`, false},
		{"dir control", `{"dir":"a\u001bb"}`, false},
		{"https", `{"git":"https://example.com/x.git","commit":"` + someCommit + `"}`, true},
		{"ssh", `{"git":"ssh://git@example.com:22/x.git","commit":"` + someCommit + `"}`, true},
		{"dot", `{"git":".","commit":"` + someCommit + `"}`, true},
		{"dash behind ./", `{"git":"./-x","commit":"` + someCommit + `"}`, true},
		{"absolute dir", `{"dir":"/srv/src"}`, true},
		{"sha256 commit", `{"git":"/srv/x","commit":"` + strings.Repeat("ab", 32) + `"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipe(sourceRecipe(tc.source))
			if tc.ok && err != nil {
				t.Errorf("ParseRecipe(%s) = %v, want it accepted", tc.source, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidRecipe) {
				t.Errorf("ParseRecipe(%s) = %v, want ErrInvalidRecipe", tc.source, err)
			}
		})
	}
}

// TestExportNoOptionInjection: a git source that is an option, handed to
// Export without going through ParseRecipe, never runs a command.
func TestExportNoOptionInjection(t *testing.T) {
	repoRoot(t) // skips without git
	for _, tc := range []struct{ name, git string }{
		{"upload-pack", `--upload-pack=sh -c "id > MARKER"`},
		{"ext", `ext::sh -c id% >% MARKER`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			marker := filepath.Join(tmp, "marker")
			s := Source{Git: strings.ReplaceAll(tc.git, "MARKER", marker), Commit: someCommit}
			err := Export(context.Background(), s, filepath.Join(tmp, "src"))
			if err == nil {
				t.Errorf("Export of git %q succeeded", s.Git)
			}
			if _, serr := os.Stat(marker); serr == nil {
				t.Fatalf("Export of git %q ran a command (err %v)", s.Git, err)
			}
		})
	}
}

// TestFetchEndOfOptions: fetch, below Export's checks, still takes its
// URL as a URL and never as an option, and allows no local transport.
func TestFetchEndOfOptions(t *testing.T) {
	repoRoot(t)
	for _, url := range []string{
		`--upload-pack=sh -c "id > MARKER"`,
		`ext::sh -c id% >% MARKER`,
	} {
		tmp := t.TempDir()
		marker := filepath.Join(tmp, "marker")
		url = strings.ReplaceAll(url, "MARKER", marker)
		err := fetch(context.Background(), filepath.Join(tmp, "repo.git"), url, someCommit)
		if err == nil {
			t.Errorf("fetch of %q succeeded", url)
		}
		if _, serr := os.Stat(marker); serr == nil {
			t.Fatalf("fetch of %q ran a command (err %v)", url, err)
		}
	}
}

// rulesTree writes a rule source tree (rules/a.hdb) into dir.
func rulesTree(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "rules", "a.hdb")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBuildSourceRoots: with SourceRoots set, a local source outside
// them, or reached through a symlink or a repository that leads out of
// them, is refused before anything is exported; inside them, relative
// paths work as before.
func TestBuildSourceRoots(t *testing.T) {
	root, head := repoRoot(t)
	allowed, outside := t.TempDir(), t.TempDir()
	rulesTree(t, allowed)
	rulesTree(t, outside)
	// A tree of its own for the builds that succeed: allowed itself
	// holds the link out, which the export refuses (TestExportRefusesLinksOut).
	tree := filepath.Join(allowed, "tree")
	rulesTree(t, tree)
	if err := os.Symlink(outside, filepath.Join(allowed, "link")); err != nil {
		t.Fatal(err)
	}
	recipe := func(s Source) *Recipe {
		return &Recipe{Name: "rules", Version: "1", Source: s,
			Targets: []Target{{RuleDB: &RuleDBTarget{Name: "db", Dir: "rules"}}}}
	}
	hello := filepath.Join(root, "internal", "conveyer", "testdata", "hello")
	for _, tc := range []struct {
		name  string
		roots []string
		src   Source
	}{
		{"dir outside", []string{allowed}, Source{Dir: outside}},
		{"dir escaping with ..", []string{allowed}, Source{Dir: filepath.Join(allowed, "..", filepath.Base(outside))}},
		{"symlink out", []string{allowed}, Source{Dir: filepath.Join(allowed, "link")}},
		{"below a symlink out", []string{allowed}, Source{Dir: filepath.Join(allowed, "link", "rules")}},
		{"git outside", []string{allowed}, Source{Git: root, Commit: head}},
		{"git through a symlink out", []string{allowed}, Source{Git: filepath.Join(allowed, "link"), Commit: head}},
		{"repository above the root", []string{filepath.Dir(hello)}, Source{Git: hello, Commit: head}},
		{"no roots", []string{}, Source{Dir: allowed}},
		{"relative root", []string{"."}, Source{Dir: allowed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Builder{SourceRoots: tc.roots}
			res, err := b.Build(context.Background(), recipe(tc.src), workDir(t))
			if !errors.Is(err, ErrSourceNotAllowed) {
				t.Fatalf("Build from %+v with roots %q = %v, want ErrSourceNotAllowed", tc.src, tc.roots, err)
			}
			if res != nil {
				t.Errorf("a refused build returned %+v", res)
			}
		})
	}

	// Relative paths are resolved against the working directory.
	t.Run("relative dir", func(t *testing.T) {
		t.Chdir(tree)
		res, err := (&Builder{SourceRoots: []string{allowed}}).Build(context.Background(), recipe(Source{Dir: "."}), workDir(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.RuleDBs) != 1 {
			t.Errorf("rule databases = %+v, want one", res.RuleDBs)
		}
	})
	t.Run("relative git", func(t *testing.T) {
		t.Chdir(root)
		r := recipe(Source{Git: ".", Commit: head})
		r.Targets[0].RuleDB.Dir = "ruledb/testdata/sample"
		res, err := (&Builder{SourceRoots: []string{root}}).Build(context.Background(), r, workDir(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.RuleDBs) != 1 {
			t.Errorf("rule databases = %+v, want one", res.RuleDBs)
		}
	})
	t.Run("symlinked root", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "root")
		if err := os.Symlink(allowed, link); err != nil {
			t.Fatal(err)
		}
		if _, err := (&Builder{SourceRoots: []string{link}}).Build(context.Background(), recipe(Source{Dir: filepath.Join(link, "tree", "rules", "..")}), workDir(t)); err != nil {
			t.Fatal(err)
		}
	})
}
