package conveyer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// ErrSourceNotAllowed is wrapped by the error of a build whose local
// source lies outside every one of [Builder.SourceRoots].
var ErrSourceNotAllowed = fault.New(fault.ErrForbidden, "source not allowed")

// Export writes the source s names into dir, which must not exist yet. A
// source that [ParseRecipe] would refuse is an error wrapping
// [ErrInvalidRecipe]; Export does not restrict local paths, which is what
// [Builder.SourceRoots] is for.
//
// For a git source it is exactly "git archive" of the commit: tracked files
// at that commit, nothing from any work tree. A local repository path is
// archived directly; a URL is first fetched (that commit only, over https
// or ssh and no other protocol) into a bare repository next to dir.
//
// For a directory source the rule is: inside a git work tree, the files git
// lists as tracked or untracked-but-not-ignored ("git ls-files --cached
// --others --exclude-standard"), so .git and ignored build output such as
// binaries and *.test stay behind; outside a git work tree, every regular
// file and symlink except those under a directory named ".git".
func Export(ctx context.Context, s Source, dir string) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("exporting source: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("exporting source: %w", err)
	}
	switch {
	case s.Git != "":
		repo := s.Git
		if isURL(s.Git) {
			repo = dir + ".git"
			if err := fetch(ctx, repo, s.Git, s.Commit); err != nil {
				return fmt.Errorf("exporting source: fetching %s: %w", s.Git, err)
			}
		}
		// The commit is hex (validate), so it cannot be an option either.
		out, err := runGit(ctx, "-C", repo, "archive", "--format=tar", "--end-of-options", s.Commit+"^{commit}")
		if err != nil {
			return fmt.Errorf("exporting source: git archive of %s: %w", s.Commit, err)
		}
		if err := untar(bytes.NewReader(out), dir); err != nil {
			return fmt.Errorf("exporting source: %w", err)
		}
		return checkLinks(dir)
	case s.Dir != "":
		files, err := listDir(ctx, s.Dir)
		if err != nil {
			return fmt.Errorf("exporting source: %w", err)
		}
		for _, f := range files {
			if err := copyEntry(filepath.Join(s.Dir, f), filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("exporting source: %w", err)
			}
		}
		return checkLinks(dir)
	}
	return errors.New("exporting source: source names neither git nor dir")
}

// checkLinks refuses an exported tree holding a symlink that does not
// resolve to a path inside it: the build and the rule compiler would
// follow it and read (and report, in an error message) files of the
// builder's host, such as a rule directory linked to /etc. Links are
// resolved as the file system does, chains and "dir/.." included, which
// no reading of the link's text alone gets right.
func checkLinks(dir string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("exporting source: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("exporting source: %w: symlink %s does not resolve inside the source", ErrSourceNotAllowed, filepath.ToSlash(rel))
		}
		if !within(target, []string{root}) {
			return fmt.Errorf("exporting source: %w: symlink %s points outside the source", ErrSourceNotAllowed, filepath.ToSlash(rel))
		}
		return nil
	})
}

// fetch makes a bare repository at repo and fetches commit from url into
// it. The url and commit come after "--", so neither can be an option
// such as --upload-pack, and only the https and ssh protocols are allowed
// (no file, ext or local transport), whatever the url says.
func fetch(ctx context.Context, repo, url, commit string) error {
	if _, err := runGit(ctx, "init", "--bare", "--quiet", "--", repo); err != nil {
		return err
	}
	_, err := runGit(ctx,
		"-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.ssh.allow=always",
		"-C", repo, "fetch", "--quiet", "--depth=1", "--", url, commit)
	return err
}

// allowedSource checks that the local path of s, if it has one, lies in
// one of roots once made absolute and free of symlinks, and returns s with
// that resolved path, so that what is exported is what was checked. For a
// git path the repository git finds there (which may be a parent, or what
// a .git file points to) must lie in a root as well. Errors wrap
// [ErrSourceNotAllowed], except that of a path inside a root that does not
// exist; a path outside every root is refused before it is looked at.
func allowedSource(ctx context.Context, s Source, roots []string) (Source, error) {
	p := s.Dir
	if p == "" {
		if isURL(s.Git) {
			return s, nil
		}
		p = s.Git
	}
	// given are the roots as written, for the first check, which does
	// not look at the file system; resolved are the roots themselves
	// free of symlinks, for the check of the path resolved.
	var given, resolved []string
	for _, r := range roots {
		if !filepath.IsAbs(r) {
			continue
		}
		given = append(given, filepath.Clean(r))
		if r, err := filepath.EvalSymlinks(r); err == nil {
			resolved = append(resolved, r)
		}
	}
	refuse := func(p string) error {
		return fmt.Errorf("exporting source: %w: %s is not under %s, the directories this builder takes local sources from",
			ErrSourceNotAllowed, p, strings.Join(roots, ", "))
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return s, fmt.Errorf("exporting source: %w", err)
	}
	if !within(abs, given) && !within(abs, resolved) {
		return s, refuse(p)
	}
	final, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return s, fmt.Errorf("exporting source: %w", err)
	}
	if !within(final, resolved) {
		return s, refuse(p)
	}
	if s.Dir != "" {
		s.Dir = final
		return s, nil
	}
	out, err := runGit(ctx, "-C", final, "rev-parse", "--absolute-git-dir")
	if err != nil {
		return s, fmt.Errorf("exporting source: %s is not a git repository: %w", p, err)
	}
	gitDir, err := filepath.EvalSymlinks(strings.TrimSpace(string(out)))
	if err != nil || !within(gitDir, resolved) {
		return s, refuse(p + "'s repository")
	}
	s.Git = final
	return s, nil
}

// within reports whether the clean absolute path p is one of roots or
// below one.
func within(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, strings.TrimSuffix(r, string(filepath.Separator))+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func runGit(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// listDir returns the slash-separated paths of the files to copy from dir,
// following the rule documented on [Export].
func listDir(ctx context.Context, dir string) ([]string, error) {
	if out, err := runGit(ctx, "-C", dir, "rev-parse", "--is-inside-work-tree"); err == nil && strings.TrimSpace(string(out)) == "true" {
		out, err := runGit(ctx, "-C", dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		if err != nil {
			return nil, err
		}
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			// A tracked file deleted from the work tree is listed but absent.
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f))); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			files = append(files, f)
		}
		return files, nil
	}
	return walkFiles(dir, true)
}

// walkFiles lists the slash-separated paths of everything but directories
// below dir, in sorted byte order; with skipGit, directories named .git are
// left out.
func walkFiles(dir string, skipGit bool) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipGit && d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	// WalkDir orders by name within each directory; sort whole paths so
	// the order is that of the byte strings, whatever the nesting.
	slices.Sort(files)
	return files, err
}

func copyEntry(src, dst string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case info.Mode().IsRegular():
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, normMode(info.Mode()))
	default:
		return fmt.Errorf("%s: not a regular file or symlink", src)
	}
}

// untar extracts a tar stream from git archive into dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !cleanRel(name) {
			return fmt.Errorf("archive entry %q escapes the export directory", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, normMode(fs.FileMode(h.Mode)))
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("archive entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}

// normMode is 0755 for a file with any execute bit and 0644 otherwise.
func normMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// epoch is the modification time of every entry in a source archive.
var epoch = time.Unix(0, 0)

// Archive writes the tree at dir to w as a deterministic gzip-compressed
// tar and returns the hex SHA-256 of the bytes written.
//
// The bytes depend only on the paths, contents, symlink targets and
// executable bits of the files in dir: entries are regular files and
// symlinks in sorted path order (directories are implied), every mtime is
// the Unix epoch, uid and gid are 0, user and group names are empty, modes
// are 0644 or 0755 (0777 for symlinks), and no PAX timestamps are written.
// The gzip header carries no name and no mtime. The compressor is the Go
// standard library's at best compression, so archives are byte-identical
// for a given Go release.
func Archive(dir string, w io.Writer) (string, error) {
	paths, err := walkFiles(dir, false)
	if err != nil {
		return "", fmt.Errorf("archiving source: %w", err)
	}

	h := sha256.New()
	gz, err := gzip.NewWriterLevel(io.MultiWriter(w, h), gzip.BestCompression)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(gz)
	for _, rel := range paths {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("archiving source: %w", err)
		}
		hdr := &tar.Header{
			Name:    rel,
			ModTime: epoch,
			Format:  tar.FormatUnknown,
		}
		var data []byte
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return "", fmt.Errorf("archiving source: %w", err)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, filepath.ToSlash(target), 0o777
		case info.Mode().IsRegular():
			if data, err = os.ReadFile(p); err != nil {
				return "", fmt.Errorf("archiving source: %w", err)
			}
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, int64(len(data)), int64(normMode(info.Mode()))
		default:
			return "", fmt.Errorf("archiving source: %s: not a regular file or symlink", rel)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", fmt.Errorf("archiving source: %s: %w", rel, err)
		}
		if _, err := tw.Write(data); err != nil {
			return "", fmt.Errorf("archiving source: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("archiving source: %w", err)
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("archiving source: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
