// Package gotest gives tests that run the conveyer one way to get Go
// modules that works on any machine: an empty, partial or complete module
// cache, with or without other tests filling it at the same time.
//
// # Why not the cache as a proxy
//
// Serving the machine's module cache as a file:// GOPROXY with the
// checksum database off (what these tests once did) passes only where the
// cache happens to hold every module the build lists, for every platform,
// which building and testing on one machine never fetches. Instead the
// conveyer is handed the machine's cache as its own: the go command fills
// what is missing through the machine's GOPROXY, checks every module
// against go.sum and the machine's GOSUMDB, and reads the rest offline.
// The go command locks the cache, so concurrent tests are safe.
package gotest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/tlog"
)

// ModCache returns the machine's module cache ("go env GOMODCACHE"), for a
// conveyer.Builder's ModCache or a platform's GoModCache.
func ModCache(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go env GOMODCACHE is empty")
	}
	return dir
}

// SourceRoots returns the build source roots a test platform needs: the
// system's temporary directory, where tests write sources with t.TempDir,
// and the repository's work tree (testdata, and the repository itself
// for the recipes it ships).
func SourceRoots(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("finding the repository: %v", err)
	}
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return []string{tmp, strings.TrimSpace(string(out))}
}

// WaitQuiet waits, for up to 20 s, until read has given the same bytes for
// a second, and returns them: for a test that needs a platform's logs to
// have settled (no checkpoint still to come), read giving their
// checkpoints.
func WaitQuiet(t testing.TB, read func() []byte) []byte {
	t.Helper()
	last, since := read(), time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Since(since) < time.Second; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still changing after 20 s")
		}
		if now := read(); !bytes.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
	return last
}

// CheckProof verifies, as anyone would from a platform's discovery
// document alone, that entry is at index of the log named log: proof must
// be a c2sp.org/tlog-proof of it in a checkpoint signed by the log's key
// and meeting the document's witness policy.
func CheckProof(t testing.TB, d *client.Discovery, log string, index *uint64, entry, proof string) {
	t.Helper()
	var vkey string
	for _, l := range d.Logs {
		if l.Name == log {
			vkey = l.VKey
		}
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("log %q: %v", log, err)
	}
	policy, err := tlog.ParsePolicy([]byte(d.WitnessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if index == nil {
		t.Fatalf("%s: no index for the proof", log)
	}
	if _, err := tlog.VerifyEntry([]byte(proof), *index, []byte(entry), v, policy); err != nil {
		t.Fatalf("%s entry %d: the proof does not verify: %v", log, *index, err)
	}
}

// Call sends method u with the bearer token and, if not empty, the access
// justification header, and decodes the answer into out (if not nil). The
// answer's status must be want[0] if given, and a 2xx otherwise.
func Call(t testing.TB, method, u, token, body, justification string, out any, want ...int) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if justification != "" {
		req.Header.Set(access.Header, justification)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(want) > 0 && resp.StatusCode != want[0] || len(want) == 0 && resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, u, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, u, err, b)
		}
	}
}
