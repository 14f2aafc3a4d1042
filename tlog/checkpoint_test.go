package tlog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/tlog/internal/gen"
	"golang.org/x/mod/sumdb/note"
)

//go:generate go run ./internal/gen/write.go -dir testdata

// sentinels maps the names used in testdata/vectors.json to errors.
var sentinels = map[string]error{
	"ErrMalformed":    tlog.ErrMalformed,
	"ErrLogSignature": tlog.ErrLogSignature,
	"ErrCosignature":  tlog.ErrCosignature,
	"ErrQuorum":       tlog.ErrQuorum,
	"ErrInclusion":    tlog.ErrInclusion,
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parsePolicyFile(t testing.TB, name string) *tlog.Policy {
	t.Helper()
	p, err := tlog.ParsePolicy(readTestdata(t, name))
	if err != nil {
		t.Fatalf("ParsePolicy(%s): %v", name, err)
	}
	return p
}

func parsePolicyText(t testing.TB, text string) *tlog.Policy {
	t.Helper()
	p, err := tlog.ParsePolicy([]byte(text))
	if err != nil {
		t.Fatalf("ParsePolicy(%q): %v", text, err)
	}
	return p
}

func testKeys(t testing.TB) *gen.Keys {
	t.Helper()
	k, err := gen.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func logVerifier(t testing.TB, k *gen.Keys) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(k.Log.VKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func signNote(t testing.TB, text string, signers ...note.Signer) []byte {
	t.Helper()
	b, err := gen.Sign(text, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "ok" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	sentinel, ok := sentinels[want]
	if !ok {
		t.Fatalf("unknown sentinel %q", want)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("got error %v, want %s", err, want)
	}
}

// TestVectors runs every case of testdata/vectors.json, both with the log
// key given explicitly and with the log looked up in the policy.
func TestVectors(t *testing.T) {
	var cases []gen.Case
	if err := json.Unmarshal(readTestdata(t, "vectors.json"), &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no vectors")
	}
	lv := logVerifier(t, testKeys(t))
	modes := []struct {
		name     string
		verifier note.Verifier
	}{{"log-key", lv}, {"policy-log", nil}}
	for _, c := range cases {
		for _, m := range modes {
			v := m.verifier
			t.Run(c.Name+"/"+m.name, func(t *testing.T) {
				policy := parsePolicyFile(t, c.Policy)
				if c.Checkpoint != "" {
					cp, err := policy.VerifyCheckpoint(readTestdata(t, c.Checkpoint), v)
					checkErr(t, err, c.Want)
					if err == nil && cp.Origin != gen.Origin {
						t.Errorf("got origin %q, want %q", cp.Origin, gen.Origin)
					}
					return
				}
				p, err := tlog.ParseProof(readTestdata(t, c.Proof))
				if err != nil {
					t.Fatalf("ParseProof: %v", err)
				}
				_, err = p.Verify(tlog.LeafHash([]byte(c.Entry)), v, policy)
				checkErr(t, err, c.Want)
			})
		}
	}
}

// TestVectorsUpToDate regenerates the vectors and compares them with
// testdata, so a change to the generator cannot go unnoticed and the
// generator is shown to be deterministic.
func TestVectorsUpToDate(t *testing.T) {
	files, err := gen.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	again, err := gen.Vectors()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, again) {
		t.Fatal("gen.Vectors is not deterministic")
	}
	for name, want := range files {
		if got := readTestdata(t, name); !bytes.Equal(got, want) {
			t.Errorf("testdata/%s is stale; run go generate ./tlog", name)
		}
	}
	// Files the generator no longer makes must go; other directories of
	// testdata belong to other tests.
	for _, dir := range []string{"policy", "checkpoint", "proof"} {
		entries, err := os.ReadDir(filepath.Join("testdata", dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := files[dir+"/"+e.Name()]; !ok {
				t.Errorf("testdata/%s/%s is not made by the generator", dir, e.Name())
			}
		}
	}
}

func TestVerifyCheckpointResult(t *testing.T) {
	k := testKeys(t)
	policy := parsePolicyFile(t, "policy/nested.txt")
	raw := readTestdata(t, "checkpoint/nested-ok")
	got, err := policy.VerifyCheckpoint(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantCosigners := []string{"X1", "X3", "Y2"}
	if !reflect.DeepEqual(got.Cosigners, wantCosigners) {
		t.Errorf("got cosigners %q, want %q", got.Cosigners, wantCosigners)
	}
	wantTimes := map[string]time.Time{
		"X1": time.Unix(int64(k.A.Time), 0).UTC(),
		"X3": time.Unix(int64(k.C.Time), 0).UTC(),
		"Y2": time.Unix(int64(k.E.Time), 0).UTC(),
	}
	if !reflect.DeepEqual(got.CosignedAt, wantTimes) {
		t.Errorf("got cosignature times %v, want %v", got.CosignedAt, wantTimes)
	}
	if got.Size != gen.TreeSize || len(got.Hash) != 32 || got.Extensions != nil || !bytes.Equal(got.Raw, raw) {
		t.Errorf("got checkpoint %+v", got)
	}

	ext, err := parsePolicyFile(t, "policy/2of3.txt").VerifyCheckpoint(readTestdata(t, "checkpoint/extension-ok"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"opaque extension"}; !reflect.DeepEqual(ext.Extensions, want) {
		t.Errorf("got extensions %q, want %q", ext.Extensions, want)
	}
}

// TestVerifyCheckpointLibrarySigners checks cosignatures made by
// transparency-dev/formats, including randomised ML-DSA-44 ones, rather
// than by the vector generator.
func TestVerifyCheckpointLibrarySigners(t *testing.T) {
	k := testKeys(t)
	mlSKey, mlVKey, err := fnote.GenerateMLDSAKey("ml.example")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := fnote.NewSignerForCosignatureV1(mlSKey)
	if err != nil {
		t.Fatal(err)
	}
	edSKey, edVKey, err := note.GenerateKey(nil, "ed.example")
	if err != nil {
		t.Fatal(err)
	}
	ed, err := fnote.NewSignerForCosignatureV1(edSKey)
	if err != nil {
		t.Fatal(err)
	}
	edVKey, err = fnote.VKeyToCosignatureV1(edVKey)
	if err != nil {
		t.Fatal(err)
	}
	policy := parsePolicyText(t, "log "+k.Log.VKey+"\nwitness ml "+mlVKey+"\nwitness ed "+edVKey+"\ngroup both all ml ed\nquorum both\n")
	cp := readTestdata(t, "checkpoint/none-ok")
	text, _, _ := bytes.Cut(cp, []byte("\n\n"))
	before := time.Now().Add(-time.Second)
	got, err := policy.VerifyCheckpoint(signNote(t, string(text)+"\n", k.Log.Signer, ml, ed), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ml", "ed"}; !reflect.DeepEqual(got.Cosigners, want) {
		t.Errorf("got cosigners %q, want %q", got.Cosigners, want)
	}
	if at := got.CosignedAt["ml"]; at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("got ML-DSA cosignature time %v, want about now", at)
	}
	_, err = policy.VerifyCheckpoint(signNote(t, string(text)+"\n", k.Log.Signer, ml), nil)
	checkErr(t, err, "ErrQuorum")
}

func TestVerifyCheckpointErrors(t *testing.T) {
	k := testKeys(t)
	single := parsePolicyFile(t, "policy/single.txt")
	none := parsePolicyFile(t, "policy/none.txt")
	cp := string(readTestdata(t, "checkpoint/none-ok"))
	text, _, _ := strings.Cut(cp, "\n\n")
	text += "\n"
	other, err := gen.NewLog("example.com/other-log", "other")
	if err != nil {
		t.Fatal(err)
	}
	otherVerifier, err := note.NewVerifier(other.VKey)
	if err != nil {
		t.Fatal(err)
	}
	future := *k.A
	future.Time = 1 << 63

	for _, c := range []struct {
		name     string
		policy   *tlog.Policy
		raw      []byte
		verifier note.Verifier
		want     string
	}{
		{"ok", single, signNote(t, text, k.Log.Signer, k.A), nil, "ok"},
		{"verifier for another origin", none, signNote(t, text, k.Log.Signer), otherVerifier, "ErrLogSignature"},
		{"origin not in policy", none, signNote(t, strings.Replace(text, gen.Origin, "example.com/other-log", 1), other.Signer), nil, "ErrLogSignature"},
		{"origin not in policy but verifier given", none, signNote(t, strings.Replace(text, gen.Origin, "example.com/other-log", 1), other.Signer), otherVerifier, "ok"},
		{"timestamp beyond 2^63-1", single, signNote(t, text, k.Log.Signer, &future), nil, "ErrCosignature"},
		{"not a note", none, []byte("hello\n"), nil, "ErrLogSignature"},
		{"empty", none, nil, nil, "ErrLogSignature"},
		{"control character", none, append(signNote(t, text, k.Log.Signer), '\r'), nil, "ErrMalformed"},
		{"no signatures", none, []byte(text + "\n"), nil, "ErrMalformed"},
		{"too large", none, append(signNote(t, text, k.Log.Signer), bytes.Repeat([]byte("— x AAAA\n"), 20000)...), nil, "ErrMalformed"},
		{"two lines", none, signNote(t, gen.Origin+"\n23\n", k.Log.Signer), nil, "ErrMalformed"},
		{"empty extension line", none, signNote(t, text+"\nx\n", k.Log.Signer), nil, "ErrMalformed"},
		{"size overflows", none, signNote(t, strings.Replace(text, "\n23\n", "\n18446744073709551616\n", 1), k.Log.Signer), nil, "ErrMalformed"},
		{"size has a sign", none, signNote(t, strings.Replace(text, "\n23\n", "\n+23\n", 1), k.Log.Signer), nil, "ErrMalformed"},
		{"root not canonical base64", none, signNote(t, strings.Replace(text, "=\n", "\n", 1), k.Log.Signer), nil, "ErrMalformed"},
		{"duplicate log signature ignored", none, append(signNote(t, text, k.Log.Signer), signNote(t, text, k.Log.Signer)[len(text)+1:]...), nil, "ok"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.policy.VerifyCheckpoint(c.raw, c.verifier)
			checkErr(t, err, c.want)
		})
	}

	witnessAsLog, err := fnote.NewVerifierForCosignatureV1(k.A.VKey)
	if err != nil {
		t.Fatal(err)
	}
	asLog := signNote(t, strings.Replace(text, gen.Origin, witnessAsLog.Name(), 1), k.A)
	if _, err := single.VerifyCheckpoint(asLog, witnessAsLog); err == nil || !strings.Contains(err.Error(), "key name and key ID of witness") {
		t.Errorf("witness key given as log key: got %v", err)
	}
	var zero tlog.Policy
	if _, err := zero.VerifyCheckpoint(signNote(t, text, k.Log.Signer), logVerifier(t, k)); err == nil {
		t.Error("zero Policy verified a checkpoint")
	}
	var nilPolicy *tlog.Policy
	if _, err := nilPolicy.VerifyCheckpoint(signNote(t, text, k.Log.Signer), logVerifier(t, k)); err == nil {
		t.Error("nil Policy verified a checkpoint")
	}
}
