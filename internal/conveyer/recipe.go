package conveyer

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// ErrInvalidRecipe is wrapped by every error [ParseRecipe] returns for a
// recipe that is malformed or incomplete.
var ErrInvalidRecipe = fault.New(fault.ErrInvalid, "invalid recipe")

// A Recipe says what to build and from which source. Every key is
// documented here; a key not listed is an error.
type Recipe struct {
	// Name identifies the product, e.g. "vitrine". Lowercase letters,
	// digits, '.', '_' and '-'.
	Name string `json:"name"`
	// Version is the release version, e.g. "1.0.0". Same alphabet as Name.
	// A recipe with a rule database target has a decimal version, e.g.
	// "42": it is the database's version, which endpoints only ever
	// move up.
	Version string `json:"version"`
	// Source is where the source comes from.
	Source Source `json:"source"`
	// Targets are built in order; at least one is required.
	Targets []Target `json:"targets"`
	// Toolchain is the Go release the Go targets are built with, e.g.
	// "go1.26.8". Empty means the building machine's go command. Another
	// release than that is fetched through the module proxy and checked
	// against the checksum database (see [Builder.Toolchain], which
	// overrides it).
	Toolchain string `json:"toolchain,omitempty"`
}

// Source is either a git repository at a commit or a directory.
//
// Neither path nor URL may start with '-' or hold control characters, so
// that nothing from a recipe can reach a command line as an option. A
// builder may further restrict local paths to some directories (see
// [Builder.SourceRoots]).
type Source struct {
	// Git is an https:// or ssh:// repository URL, or a local path
	// (relative paths are resolved against the process's working
	// directory). Other schemes and the scp-like "host:path" form are
	// refused; write ssh://host/path instead. It requires Commit.
	Git string `json:"git,omitempty"`
	// Commit is the full hexadecimal object name (40 or 64 digits) of the
	// commit to build. Branch names and abbreviations are refused: a
	// recipe must name exactly one source.
	Commit string `json:"commit,omitempty"`
	// Dir is a local directory to build as it is, instead of Git. See
	// [Export] for which files are taken.
	Dir string `json:"dir,omitempty"`
}

// A Target is exactly one of a Go program or a rule database.
type Target struct {
	Go     *GoTarget     `json:"go,omitempty"`
	RuleDB *RuleDBTarget `json:"ruledb,omitempty"`
}

// GoTarget is a Go main package built for one or more platforms.
type GoTarget struct {
	// Program names the artifacts, "<program>_<goos>_<goarch>". It
	// defaults to the last element of Package.
	Program string `json:"program,omitempty"`
	// Package is the package path relative to the module root, e.g.
	// "./cmd/vitrine".
	Package string `json:"package"`
	// Platforms lists "goos/goarch" pairs, e.g. "linux/amd64".
	Platforms []string `json:"platforms"`
	// LDFlags are passed to the linker as -ldflags, joined by spaces.
	LDFlags []string `json:"ldflags,omitempty"`
	// Tags are build tags.
	Tags []string `json:"tags,omitempty"`
}

// RuleDBTarget is a rule database compiled by package ruledb from the rule
// sources in Dir.
type RuleDBTarget struct {
	// Name names the database artifact.
	Name string `json:"name"`
	// Dir is the rule source directory, relative to the source root,
	// slash-separated, e.g. "ruledb/testdata/sample".
	Dir string `json:"dir"`
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	wordRE   = regexp.MustCompile(`^[a-z0-9]{1,16}$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_.]{1,64}$`)
)

// ParseRecipe reads a recipe from JSON. Unknown keys, trailing data and
// missing or malformed fields are errors wrapping [ErrInvalidRecipe].
func ParseRecipe(data []byte) (*Recipe, error) {
	// Strict: unknown members, trailing data and a member named twice
	// ({"version":"1","version":"2"} was built as 2, then refused at
	// publishing by the provenance's encoder, minutes later, as a 500).
	var r Recipe
	if err := httpapi.DecodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecipe, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate reports the first problem with r, wrapping [ErrInvalidRecipe].
func (r *Recipe) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRecipe, fmt.Sprintf(format, a...))
	}
	if !nameRE.MatchString(r.Name) {
		return bad("name %q: want 1-64 of [a-z0-9._-], starting with a letter or digit", r.Name)
	}
	if !nameRE.MatchString(r.Version) {
		return bad("version %q: want 1-64 of [a-z0-9._-], starting with a letter or digit", r.Version)
	}
	if err := r.Source.validate(); err != nil {
		return err
	}
	if len(r.Targets) == 0 {
		return bad("targets: at least one target is required")
	}
	if r.Toolchain != "" && !IsToolchain(r.Toolchain) {
		return bad("toolchain %q: want a Go release such as go1.26.8", r.Toolchain)
	}
	seen := map[string]bool{}
	for i, t := range r.Targets {
		switch {
		case (t.Go == nil) == (t.RuleDB == nil):
			return bad("targets[%d]: give exactly one of go or ruledb", i)
		case t.Go != nil:
			g := t.Go
			if !strings.HasPrefix(g.Package, "./") && g.Package != "." {
				return bad("targets[%d].go.package %q: want a path relative to the module root, starting with ./", i, g.Package)
			}
			if !cleanRel(strings.TrimPrefix(g.Package, "./")) && g.Package != "." {
				return bad("targets[%d].go.package %q: not a clean relative path", i, g.Package)
			}
			if g.Program != "" && !nameRE.MatchString(g.Program) {
				return bad("targets[%d].go.program %q: want 1-64 of [a-z0-9._-]", i, g.Program)
			}
			if !nameRE.MatchString(g.program()) {
				return bad("targets[%d].go: program name %q derived from the package is not valid; set program", i, g.program())
			}
			if len(g.Platforms) == 0 {
				return bad("targets[%d].go.platforms: at least one goos/goarch is required", i)
			}
			for _, p := range g.Platforms {
				goos, goarch, ok := strings.Cut(p, "/")
				if !ok || !wordRE.MatchString(goos) || !wordRE.MatchString(goarch) {
					return bad("targets[%d].go.platforms: %q is not goos/goarch", i, p)
				}
				name := g.artifact(goos, goarch)
				if seen[name] {
					return bad("targets[%d].go: artifact %s is built twice", i, name)
				}
				seen[name] = true
			}
			for _, tag := range g.Tags {
				if !tagRE.MatchString(tag) {
					return bad("targets[%d].go.tags: %q is not a build tag", i, tag)
				}
			}
			for _, f := range g.LDFlags {
				if f == "" || strings.ContainsAny(f, " \t\n\r'\"") {
					return bad("targets[%d].go.ldflags: %q must be one non-empty word without spaces or quotes", i, f)
				}
			}
		default:
			if _, err := r.ruleDBVersion(); err != nil {
				return err
			}
			d := t.RuleDB
			if !nameRE.MatchString(d.Name) {
				return bad("targets[%d].ruledb.name %q: want 1-64 of [a-z0-9._-]", i, d.Name)
			}
			if !cleanRel(d.Dir) {
				return bad("targets[%d].ruledb.dir %q: want a clean slash-separated path inside the source", i, d.Dir)
			}
			if seen[d.Name] {
				return bad("targets[%d].ruledb: artifact %s is built twice", i, d.Name)
			}
			seen[d.Name] = true
		}
	}
	return nil
}

// validate reports the first problem with s, wrapping [ErrInvalidRecipe].
// [Export] checks it too, for sources that did not come through
// [ParseRecipe].
func (s *Source) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRecipe, fmt.Sprintf(format, a...))
	}
	switch {
	case s.Git != "" && s.Dir != "":
		return bad("source: give either git or dir, not both")
	case s.Git != "":
		if err := checkLocation(s.Git); err != nil {
			return bad("source.git %q: %v", s.Git, err)
		}
		if isURL(s.Git) {
			if err := checkURL(s.Git); err != nil {
				return bad("source.git %q: %v", s.Git, err)
			}
		} else if i := strings.IndexByte(s.Git, ':'); i >= 0 && !strings.Contains(s.Git[:i], "/") {
			// git reads "host:path" as ssh; a path means it otherwise.
			return bad("source.git %q: the scp-like host:path form is not accepted; write an ssh:// URL, or ./ before a local path", s.Git)
		}
		if !commitRE.MatchString(s.Commit) {
			return bad("source.commit %q: want the full lowercase hex commit hash", s.Commit)
		}
	case s.Dir != "":
		if err := checkLocation(s.Dir); err != nil {
			return bad("source.dir %q: %v", s.Dir, err)
		}
		if s.Commit != "" {
			return bad("source.commit is only meaningful with source.git")
		}
	default:
		return bad("source: give git and commit, or dir")
	}
	return nil
}

// checkLocation refuses what a command line could take for an option,
// and control characters, in a source path or URL.
func checkLocation(p string) error {
	if strings.HasPrefix(p, "-") {
		return errors.New("must not start with '-'; write ./ before a local path that does")
	}
	if !utf8.ValidString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return errors.New("holds control characters or is not UTF-8")
	}
	return nil
}

// isURL reports whether a git source is a URL rather than a local path.
func isURL(git string) bool {
	return strings.Contains(git, "://")
}

// checkURL accepts https:// and ssh:// repository URLs without a password
// (the recipe is published) and without a host or user that an ssh
// command line could take for an option.
func checkURL(git string) error {
	u, err := url.Parse(git)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "ssh" {
		return errors.New("want an https:// or ssh:// URL, or a local path")
	}
	if u.Host == "" || u.Opaque != "" || strings.HasPrefix(u.Host, "-") || strings.HasPrefix(u.Hostname(), "-") {
		return errors.New("want a host name after the scheme")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return errors.New("a recipe is published: it must not hold a password")
		}
		if strings.HasPrefix(u.User.Username(), "-") {
			return errors.New("the user name must not start with '-'")
		}
	}
	return nil
}

// cleanRel reports whether p is a clean, relative, slash-separated path
// that stays inside its root.
func cleanRel(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.Contains(p, `\`)
}

func (g *GoTarget) program() string {
	if g.Program != "" {
		return g.Program
	}
	return path.Base(g.Package)
}

func (g *GoTarget) artifact(goos, goarch string) string {
	return g.program() + "_" + goos + "_" + goarch
}

// ruleDBVersion is the recipe's version as a rule database version: a
// decimal number from 1 up, without leading zeros.
func (r *Recipe) ruleDBVersion() (uint64, error) {
	v, err := strconv.ParseUint(r.Version, 10, 64)
	if err != nil || v == 0 || strconv.FormatUint(v, 10) != r.Version {
		return 0, fmt.Errorf("%w: version %q: a recipe with a rule database target needs a decimal version from 1 up (the database's version)", ErrInvalidRecipe, r.Version)
	}
	return v, nil
}
