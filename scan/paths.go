package scan

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// Result is the outcome of scanning one file.
type Result struct {
	// Path is the file's path: as given, or joined to the directory it was
	// found in.
	Path string
	// Matches are the signatures that matched, as Scan returns them; empty
	// for a clean file.
	Matches []Match
	// Err is why the file (or directory) could not be scanned, if it
	// could not: it was unreadable, vanished, changed size, or was not a
	// regular file. Matches is then empty.
	Err error
}

// ScanPaths scans every regular file named in paths or found below the
// directories among them, with workers files scanned at once (0 or less:
// runtime.NumCPU()), and hands each file's Result to fn. fn is called from
// one goroutine at a time, in no particular order; a file or directory
// that cannot be read yields a Result with Err and the walk goes on.
// Symbolic links named in paths are followed; those met while walking a
// directory are not (as clamscan does by default), nor are devices, pipes
// and sockets scanned. ScanPaths returns when every file is done, or early,
// with ctx's error, once ctx is cancelled.
func (s *Scanner) ScanPaths(ctx context.Context, paths []string, workers int, fn func(Result)) error {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	files := make(chan string, 4*workers)
	results := make(chan Result, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range files {
				if ctx.Err() != nil {
					continue // drain
				}
				m, err := s.ScanFile(path)
				results <- Result{Path: path, Matches: m, Err: err}
			}
		}()
	}
	go func() {
		defer func() {
			close(files)
			wg.Wait()
			close(results)
		}()
		send := func(r Result) bool {
			select {
			case results <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, root := range paths {
			fi, err := os.Stat(root)
			if err != nil {
				if !send(Result{Path: root, Err: err}) {
					return
				}
				continue
			}
			if !fi.IsDir() {
				select {
				case files <- root:
				case <-ctx.Done():
					return
				}
				continue
			}
			err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					if !send(Result{Path: path, Err: err}) {
						return ctx.Err()
					}
					return nil
				}
				if !d.Type().IsRegular() {
					return nil
				}
				select {
				case files <- path:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil {
				return
			}
		}
	}()
	for r := range results {
		if ctx.Err() == nil {
			fn(r)
		}
	}
	return ctx.Err()
}
