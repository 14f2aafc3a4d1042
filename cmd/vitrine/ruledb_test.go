package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuleDBDiff compiles the sample rules and lists what a changed copy
// adds and removes.
func TestRuleDBDiff(t *testing.T) {
	dir := t.TempDir()
	e := func(out *bytes.Buffer) *env {
		return &env{Stdout: out, Stderr: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	var out bytes.Buffer
	sample := filepath.Join("..", "..", "ruledb", "testdata", "sample")
	old := filepath.Join(dir, "v1.vdb")
	if err := runRuleDBCompile(context.Background(), e(&out), []string{"--version", "1", "--out", old, sample}); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(dir, "new")
	if err := os.Mkdir(changed, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"eicar.hdb", "eicar.hsb", "eicar.ndb"} {
		b, err := os.ReadFile(filepath.Join(sample, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "eicar.hdb" {
			b = []byte{} // its signatures removed
		}
		if f == "eicar.ndb" {
			b = append(b, "Vitrine.Test.Added:0:*:6869206d6f6d\n"...)
		}
		if err := os.WriteFile(filepath.Join(changed, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := runRuleDBDiff(context.Background(), e(&out), []string{old, changed}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "+ Vitrine.Test.Added:0:*:6869206d6f6d") || !strings.Contains(s, "- ") || !strings.Contains(s, "1 added") {
		t.Errorf("ruledb diff:\n%s", s)
	}
}
