package agent

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// current is the installed version of a release, or "".
func (a *Agent) current(name string) string {
	v, err := os.Readlink(filepath.Join(a.dir, "installed", name, "current"))
	if err != nil {
		return ""
	}
	return v
}

// Installed lists the installed releases: the version current points to
// and its files.
func (a *Agent) Installed() ([]Installed, error) {
	base := filepath.Join(a.dir, "installed")
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []Installed
	for _, e := range entries {
		v := a.current(e.Name())
		if v == "" {
			continue
		}
		files, err := os.ReadDir(filepath.Join(base, e.Name(), v))
		if err != nil {
			return nil, err
		}
		in := Installed{Release: e.Name(), Version: v, Files: map[string]string{}}
		for _, f := range files {
			in.Files[f.Name()] = filepath.Join(base, e.Name(), v, f.Name())
		}
		out = append(out, in)
	}
	return out, nil
}

// put installs files as version of release: into a temporary directory,
// synced and renamed to <release>/<version>; then current moves to it in
// one rename, previous to the version it replaced, and older versions are
// removed. A crash leaves current at the old version or the new one,
// never between.
func (a *Agent) put(name, version string, files map[string][]byte) (map[string]string, error) {
	base := filepath.Join(a.dir, "installed", name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	final := filepath.Join(base, version)
	if _, err := os.Lstat(final); err == nil {
		// Left by an install that crashed before current moved: its
		// files were not trusted then and are not now.
		if err := os.RemoveAll(final); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+version+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	paths := map[string]string{}
	for _, n := range slices.Sorted(maps.Keys(files)) {
		mode := os.FileMode(0o644)
		if platformSuffix.MatchString(n) {
			mode = 0o755 // a program
		}
		if err := writeSynced(filepath.Join(tmp, n), files[n], mode); err != nil {
			return nil, err
		}
		paths[n] = filepath.Join(final, n)
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	prev := a.current(name)
	if err := swapLink(base, "current", version); err != nil {
		return nil, err
	}
	if prev != "" && prev != version {
		if err := swapLink(base, "previous", prev); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if n == "current" || n == "previous" || n == version || n == prev || strings.HasPrefix(n, ".tmp-") {
			continue
		}
		_ = os.RemoveAll(filepath.Join(base, n))
	}
	return paths, syncDir(base)
}

// swapLink points dir/link at target with a rename, which replaces the
// old link atomically.
func swapLink(dir, link, target string) error {
	tmp := filepath.Join(dir, "."+link+".new")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, link)); err != nil {
		return err
	}
	return syncDir(dir)
}

func writeSynced(p string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
