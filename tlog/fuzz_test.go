package tlog_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/tlog/internal/gen"
	"golang.org/x/mod/sumdb/note"
)

// seedFrom adds every file in testdata/dir to the corpus.
func seedFrom(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/%s: %v", dir, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParsePolicy checks that ParsePolicy never panics and that Marshal of
// a parsed policy parses back to the same canonical text.
func FuzzParsePolicy(f *testing.F) {
	seedFrom(f, "policy")
	f.Add([]byte("witness a b+00000000+BAAA\ngroup g 1 a a\nquorum g\n"))
	f.Add([]byte("quorum none\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tlog.ParsePolicy(b)
		if err != nil {
			return
		}
		m := p.Marshal()
		again, err := tlog.ParsePolicy(m)
		if err != nil {
			t.Fatalf("ParsePolicy(Marshal(p)): %v\n%s", err, m)
		}
		if m2 := again.Marshal(); !bytes.Equal(m2, m) {
			t.Fatalf("Marshal is not a fixed point:\n%q\nthen\n%q", m, m2)
		}
		if !p.Satisfied(func(tlog.PolicyWitness) bool { return true }) {
			t.Fatal("quorum not satisfied when every witness cosigned")
		}
		if p.Quorum() != "none" && p.Satisfied(func(tlog.PolicyWitness) bool { return false }) {
			t.Fatal("quorum satisfied when no witness cosigned")
		}
	})
}

// FuzzParseProof checks that ParseProof never panics, that what it accepts
// marshals back to exactly the same bytes, and that verifying it does not
// panic either.
func FuzzParseProof(f *testing.F) {
	seedFrom(f, "proof")
	f.Add([]byte("c2sp.org/tlog-proof@v1\nindex 0\n\nx"))
	policy := parsePolicyFile(f, "policy/2of3.txt")
	leaf := tlog.LeafHash(gen.Entry(7))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tlog.ParseProof(b)
		if err != nil {
			return
		}
		if m := p.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Marshal(ParseProof(b)) != b:\n%q\n%q", m, b)
		}
		if cp, err := p.Verify(leaf, nil, policy); err == nil && p.Index >= cp.Size {
			t.Fatalf("verified index %d in a tree of size %d", p.Index, cp.Size)
		}
	})
}

// FuzzVerifyCheckpoint checks that arbitrary bytes given as a checkpoint
// never make VerifyCheckpoint panic, under policies with and without
// witnesses, with and without an explicit log key.
func FuzzVerifyCheckpoint(f *testing.F) {
	seedFrom(f, "checkpoint")
	k := testKeys(f)
	lv := logVerifier(f, k)
	policies := []*tlog.Policy{parsePolicyFile(f, "policy/none.txt"), parsePolicyFile(f, "policy/nested.txt")}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, p := range policies {
			for _, v := range []note.Verifier{lv, nil} {
				cp, err := p.VerifyCheckpoint(raw, v)
				if err != nil {
					continue
				}
				if cp.Origin != gen.Origin || len(cp.Hash) != 32 || !bytes.Equal(cp.Raw, raw) {
					t.Fatalf("verified a checkpoint that is not the log's: %+v", cp)
				}
			}
		}
	})
}

// FuzzCheckpointBody signs arbitrary note text with the test log and a
// witness, so that the checkpoint body parser sees inputs that pass the
// signature checks, and checks that what it accepts is in canonical form.
func FuzzCheckpointBody(f *testing.F) {
	k := testKeys(f)
	policy := parsePolicyFile(f, "policy/single.txt")
	for _, file := range []string{"checkpoint/single-ok", "checkpoint/extension-ok", "checkpoint/empty-tree-ok", "checkpoint/size-leading-zero"} {
		text, _, _ := strings.Cut(string(readTestdata(f, file)), "\n\n")
		f.Add(text + "\n")
	}
	f.Fuzz(func(t *testing.T, text string) {
		raw, err := gen.Sign(text, k.Log.Signer, k.A)
		if err != nil {
			return // not a valid note text
		}
		cp, err := policy.VerifyCheckpoint(raw, nil)
		if err != nil {
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s\n%d\n%s\n", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Hash))
		for _, e := range cp.Extensions {
			b.WriteString(e + "\n")
		}
		if b.String() != text {
			t.Fatalf("accepted non-canonical checkpoint %q, canonical %q", text, b.String())
		}
	})
}
