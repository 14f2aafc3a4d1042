package ruledb

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// eicar is the EICAR anti-virus test file.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// clamscan runs ClamAV's scanner with only the rules in db (a file or a
// directory) over file, reporting every match. It skips the test when
// clamscan is not installed (.ci/run installs it).
func clamscan(t *testing.T, db, file string) (out string, infected bool) {
	t.Helper()
	path, err := exec.LookPath("clamscan")
	if err != nil {
		t.Skip("clamscan not installed (Debian package clamav); skipping the check against ClamAV")
	}
	cmd := exec.Command(path, "--allmatch", "-d", db, file)
	b, err := cmd.CombinedOutput()
	out = string(b)
	switch cmd.ProcessState.ExitCode() {
	case 0:
		return out, false
	case 1:
		return out, true
	}
	t.Fatalf("clamscan -d %s: %v\n%s", db, err, out)
	return "", false
}

var knownRE = regexp.MustCompile(`(?m)^Known viruses: (\d+)$`)

// checkClamAV has clamscan load each rule file alone, checks it loads every
// signature, and that every signature named Vitrine.Test.EICAR* detects the
// EICAR file.
func checkClamAV(t *testing.T, dir string) {
	eicarFile := filepath.Join(t.TempDir(), "eicar.com")
	if err := os.WriteFile(eicarFile, []byte(eicar), 0o644); err != nil {
		t.Fatal(err)
	}
	srcs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range srcs {
		out, infected := clamscan(t, src.Name, eicarFile)
		m := knownRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("clamscan -d %s: no signature count in\n%s", src.Name, out)
		}
		if n, _ := strconv.Atoi(m[1]); n != len(src.Signatures) {
			t.Errorf("clamscan -d %s loaded %d signatures, we parsed %d", src.Name, n, len(src.Signatures))
		}
		for _, s := range src.Signatures {
			if !strings.HasPrefix(s.Name, "Vitrine.Test.EICAR") {
				continue
			}
			if !infected || !strings.Contains(out, ": "+s.Name+".UNOFFICIAL FOUND") {
				t.Errorf("clamscan -d %s: %s did not detect EICAR:\n%s", src.Name, s.Name, out)
			}
		}
	}
	out, infected := clamscan(t, dir, eicarFile)
	if !infected {
		t.Errorf("clamscan -d %s did not detect EICAR:\n%s", dir, out)
	}
	clean := filepath.Join(t.TempDir(), "clean.txt")
	if err := os.WriteFile(clean, []byte("nothing to see here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, infected := clamscan(t, dir, clean); infected {
		t.Errorf("clamscan -d %s flagged a clean file:\n%s", dir, out)
	}
}

func TestClamAVLoadsSample(t *testing.T) {
	checkClamAV(t, "testdata/sample")
}

// TestClamAVLoadsCompiled writes the signatures of the compiled sample
// database back out as ClamAV rule files and has ClamAV check those: what
// the database holds is what ClamAV understood.
func TestClamAVLoadsCompiled(t *testing.T) {
	db := mustOpen(t, mustCompile(t, loadSample(t), 1))
	dir := t.TempDir()
	ext := map[Kind]string{KindMD5: ".hdb", KindSHA256: ".hsb", KindBody: ".ndb"}
	text := map[Kind]string{}
	for _, s := range db.Signatures() {
		text[s.Kind] += s.String() + "\n"
	}
	for k, body := range text {
		if err := os.WriteFile(filepath.Join(dir, "compiled"+ext[k]), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkClamAV(t, dir)
}

// TestClamAVAgreesOnPatterns has ClamAV load one body signature at a time
// and checks it refuses exactly the patterns Parse refuses, except for the
// few that ClamAV takes although its documentation rules them out, which we
// refuse.
func TestClamAVAgreesOnPatterns(t *testing.T) {
	path, err := exec.LookPath("clamscan")
	if err != nil {
		t.Skip("clamscan not installed (Debian package clamav); skipping the check against ClamAV")
	}
	clean := filepath.Join(t.TempDir(), "clean.txt")
	if err := os.WriteFile(clean, []byte("nothing to see here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	patterns := []string{
		"0102", "010203", "(01|02)03", "0102(03|04)", "01", "01??02", "0102??03", "01??0203", "??0102", "0102??",
		"0102*03", "01*0203", "0102*0304", "0102{3}03", "01{2}0203",
		"0102{1-3}03", "0102{1-3}0304", "0102{-3}03", "0102{-3}0304", "0102{3-}03", "0102{3-}0304",
		"01(02|03)04", "(01|02)0304", "0102!(03|04)", "0102(0304|0506)", "0a?102", "0102a?",
		"*0102", "0102*", "0102**0304",
	}
	stricter := map[string]bool{"0102{2}*0304": true, "0102{3-1}0304": true}
	dir := t.TempDir()
	for _, p := range append(patterns, slices.Sorted(maps.Keys(stricter))...) {
		line := "Vitrine.Test.Pattern:0:*:" + p
		_, ourErr := parseLine(KindBody, line)
		db := filepath.Join(dir, "p.ndb")
		if err := os.WriteFile(db, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path, "--no-summary", "-d", db, clean)
		out, _ := cmd.CombinedOutput()
		clamRefuses := cmd.ProcessState.ExitCode() == 2
		if stricter[p] {
			if clamRefuses || ourErr == nil {
				t.Errorf("pattern %s: ClamAV refuses: %v; we refuse: %v; want only us to refuse", p, clamRefuses, ourErr)
			}
			continue
		}
		if clamRefuses != (ourErr != nil) {
			t.Errorf("pattern %s: ClamAV refuses: %v (%s); we refuse: %v", p, clamRefuses, strings.TrimSpace(string(out)), ourErr)
		}
	}
}
