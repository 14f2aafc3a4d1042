package conveyer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportRefusesLinksOut: a source (directory or git) holding a symlink
// that resolves outside it is refused before anything reads through it
// (a rule directory linked to /etc was compiled, and its files' lines
// reported in the build's error). Links inside the source stay.
func TestExportRefusesLinksOut(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.hdb"), []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		links map[string]string // link path -> target
		ok    bool
	}{
		{"inside", map[string]string{"rules/link.hsb": "../main.hsb", "alias": "rules"}, true},
		{"absolute", map[string]string{"rules": outside}, false},
		{"relative out", map[string]string{"rules": "../../../../../../../../../../" + strings.TrimPrefix(outside, "/")}, false},
		// "up" resolves to the source itself, so "up/.." is its parent:
		// the link's text alone ("up/../x") reads as inside.
		{"through a link", map[string]string{"up": ".", "rules": "up/../" + "x"}, false},
		{"dangling", map[string]string{"rules": "nowhere"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "main.hsb"), []byte(eicarHSB), 0o644); err != nil {
				t.Fatal(err)
			}
			for link, target := range tc.links {
				p := filepath.Join(src, filepath.FromSlash(link))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, p); err != nil {
					t.Fatal(err)
				}
			}
			err := Export(context.Background(), Source{Dir: src}, filepath.Join(t.TempDir(), "dir"))
			if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, ErrSourceNotAllowed)) {
				t.Errorf("dir source: Export = %v, want ok=%v (else ErrSourceNotAllowed)", err, tc.ok)
			}
			// The same tree committed to git and exported by commit.
			if _, err := exec.LookPath("git"); err != nil {
				return
			}
			git := func(args ...string) string {
				cmd := exec.Command("git", append([]string{"-C", src, "-c", "user.name=t", "-c", "user.email=t@t.invalid"}, args...)...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("git %v: %v: %s", args, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			git("init", "--quiet")
			git("add", "-A")
			git("commit", "--quiet", "-m", "tree")
			err = Export(context.Background(), Source{Git: src, Commit: git("rev-parse", "HEAD")}, filepath.Join(t.TempDir(), "git"))
			if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, ErrSourceNotAllowed)) {
				t.Errorf("git source: Export = %v, want ok=%v (else ErrSourceNotAllowed)", err, tc.ok)
			}
		})
	}
}

const eicarHSB = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Vitrine.Test.EICAR-SHA256\n"
