package rebuilder

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Limits on a source archive, against archives that unpack to far more
// than they weigh.
const (
	maxSourceFiles = 200_000
	maxSourceBytes = 8 << 30
)

// unpack extracts a source archive the conveyer wrote (regular files and
// symlinks, no directories needed) into dir, which must not exist. Every
// write goes through an [os.Root], so no entry, symlink or not, can reach
// outside dir.
func unpack(r io.Reader, dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("source archive: %w", err)
	}
	tr := tar.NewReader(gz)
	var files int
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("source archive: %w", err)
		}
		if files++; files > maxSourceFiles {
			return fmt.Errorf("source archive: more than %d entries", maxSourceFiles)
		}
		name := h.Name
		if !cleanRel(name) {
			return fmt.Errorf("source archive: entry %q is not a clean relative path", h.Name)
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("source archive: %s: %w", name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if total += h.Size; h.Size < 0 || total > maxSourceBytes {
				return fmt.Errorf("source archive: more than %d bytes", int64(maxSourceBytes))
			}
			mode := fs.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("source archive: %s: %w", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("source archive: %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("source archive: %s: %w", name, err)
			}
		default:
			return fmt.Errorf("source archive: entry %q: type %q is neither a file nor a symlink", h.Name, h.Typeflag)
		}
	}
	// Read the gzip trailer: its checksum covers what was unpacked.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("source archive: %w", err)
	}
	return nil
}

// cleanRel reports whether p is a clean, relative, slash-separated path
// that stays inside its root.
func cleanRel(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.Contains(p, `\`) && !strings.Contains(p, "\x00")
}

// errInsideGit means a rebuild directory is inside a git work tree, where
// the conveyer would take only the files git lists.
var errInsideGit = errors.New("inside a git work tree")
