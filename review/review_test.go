package review

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

func testReview() *Review {
	return &Review{
		Release: Release{Name: "tool", Version: "1.2.3", Index: 7, Entry: "sha256:" + strings.Repeat("ab", 32)},
		Files:   []string{"cmd/tool/main.go", "README.md"},
		Verdict: Concerns,
		Notes:   "The update check trusts <any> redirect.\nSee main.go:42 — \"fix\" & retest.",
		Auditor: "auditor:alice",
		Time:    time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC),
	}
}

// vectors are the reviews of testdata/valid.jsonl, one a line.
var vectors = []func() *Review{
	testReview,
	func() *Review {
		r := testReview()
		r.Files, r.Verdict, r.Notes = nil, Approved, ""
		return r
	},
	func() *Review {
		r := testReview()
		r.Verdict, r.Notes, r.Files = Rejected, strings.Repeat("é", MaxNotes/2), []string{"a/b/c.go"}
		return r
	},
}

// TestVectors: each vector marshals to its line of testdata/valid.jsonl
// (go test -update rewrites them) and parses back to the same review.
func TestVectors(t *testing.T) {
	var want bytes.Buffer
	for _, v := range vectors {
		b, err := v().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want.Write(b)
		want.WriteByte('\n')
	}
	if *update {
		if err := os.WriteFile("testdata/valid.jsonl", want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("testdata/valid.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("testdata/valid.jsonl differs from what Marshal writes (go test -update rewrites it):\n%s", want.Bytes())
	}
	for i, line := range readVectors(t) {
		r, err := Parse(line)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		w := vectors[i]()
		if w.Files == nil {
			w.Files = []string{}
		}
		w.Files = sorted(w.Files)
		if !reflect.DeepEqual(r, w) {
			t.Errorf("vector %d parses to %+v, want %+v", i, r, w)
		}
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func readVectors(t testing.TB) [][]byte {
	f, err := os.Open("testdata/valid.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		lines = append(lines, bytes.Clone(s.Bytes()))
	}
	return lines
}

// invalid are changes to the first vector that Parse must refuse.
var invalid = []struct{ name, old, new string }{
	{"version 2", `"v":1`, `"v":2`},
	{"no version", `"v":1,`, ``},
	{"another kind", `"kind":"review"`, `"kind":"release"`},
	{"unknown key", `"auditor"`, `"extra":1,"auditor"`},
	{"duplicate key", `"verdict":"concerns"`, `"verdict":"approved","verdict":"concerns"`},
	{"unknown verdict", `"concerns"`, `"fine"`},
	{"files unsorted", `["README.md","cmd/tool/main.go"]`, `["cmd/tool/main.go","README.md"]`},
	{"a file twice", `["README.md","cmd/tool/main.go"]`, `["README.md","README.md"]`},
	{"a file up", `"README.md"`, `"../README.md"`},
	{"an absolute file", `"README.md"`, `"/README.md"`},
	{"a dot file", `"README.md"`, `"./README.md"`},
	{"spacing", `"verdict":"concerns"`, `"verdict": "concerns"`},
	{"escaped html", `<any>`, `\u003cany\u003e`},
	{"a carriage return", `redirect.\n`, `redirect.\r\n`},
	{"a tab", `redirect.\n`, `redirect.\t`},
	{"a time offset", `11:00:00Z`, `12:00:00+01:00`},
	{"fractional seconds", `11:00:00Z`, `11:00:00.5Z`},
	{"another auditor role", `"auditor:alice"`, `"analyst:alice"`},
	{"upper-case digest", `"sha256:abab`, `"sha256:ABAB`},
	{"no release", `"release":{"name":"tool","version":"1.2.3","index":7,"entry":"sha256:` + strings.Repeat("ab", 32) + `"},`, ``},
	{"negative index", `"index":7`, `"index":-7`},
	{"trailing data", `Z"}`, `Z"} `},
	{"null files", `"files":["README.md","cmd/tool/main.go"]`, `"files":null`},
}

func TestParseRefuses(t *testing.T) {
	valid := readVectors(t)[0]
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(valid, []byte(tc.old)) {
				t.Fatalf("the vector has no %q", tc.old)
			}
			b := bytes.Replace(valid, []byte(tc.old), []byte(tc.new), 1)
			if r, err := Parse(b); err == nil {
				t.Errorf("Parse(%s) = %+v, want an error", b, r)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	for name, change := range map[string]func(*Review){
		"notes too long":  func(r *Review) { r.Notes = strings.Repeat("x", MaxNotes+1) },
		"too many files":  func(r *Review) { r.Files = make([]string, MaxFiles+1) },
		"invalid UTF-8":   func(r *Review) { r.Notes = "\xff" },
		"no release name": func(r *Review) { r.Release.Name = "" },
		"a local time":    func(r *Review) { r.Time = r.Time.In(time.FixedZone("x", 3600)) },
		"no time":         func(r *Review) { r.Time = time.Time{} },
		"a long path":     func(r *Review) { r.Files = []string{strings.Repeat("a", MaxPathLen+1)} },
	} {
		r := testReview()
		change(r)
		if _, err := r.Marshal(); err == nil {
			t.Errorf("%s: Marshal accepted it", name)
		}
	}
}

// FuzzParse: Parse never panics, and accepts only canonical encodings of
// valid reviews: whatever it accepts marshals back to exactly the input.
func FuzzParse(f *testing.F) {
	lines := readVectors(f)
	for _, l := range lines {
		f.Add(l)
	}
	for _, tc := range invalid {
		f.Add(bytes.Replace(lines[0], []byte(tc.old), []byte(tc.new), 1))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("Parse accepted a review Check refuses (%v): %q", err, b)
		}
		again, err := r.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("Parse accepted %q, which marshals to %q (%v)", b, again, err)
		}
	})
}
