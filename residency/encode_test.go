package residency

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// testKey returns a signed-note key pair derived from seed, so that test
// vectors come out the same every time.
func testKey(t testing.TB, name string, seed byte) (note.Signer, note.Verifier) {
	t.Helper()
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	vkey, err := note.NewEd25519VerifierKey(name, ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(vkey, "+", 3) // name, hash, key
	signer, err := note.NewSigner("PRIVATE+KEY+" + name + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, s...)))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}

// canonicalOrder returns p with regions and countries sorted, the order
// ParsePolicy returns a canonical document in.
func canonicalOrder(t *testing.T, p *Policy) *Policy {
	t.Helper()
	q, err := ParsePolicy(p.Marshal())
	if err != nil {
		t.Fatalf("ParsePolicy(Marshal(p)) = %v\n%s", err, p.Marshal())
	}
	return q
}

func TestMarshal(t *testing.T) {
	got := string(Default().Marshal())
	want := `{"version":1,"default":"moscow","regions":[{"name":"moscow","url":"","countries":[]},{"name":"zurich","url":"","countries":["AT","AU","BE","BG","CA","CH","CY","CZ","DE","DK","EE","ES","FI","FR","GB","GR","HR","HU","IE","IS","IT","JP","KR","LI","LT","LU","LV","MT","NL","NO","PL","PT","RO","SE","SG","SI","SK","US"]}]}` + "\n"
	if got != want {
		t.Errorf("Default().Marshal() =\n%s\nwant\n%s", got, want)
	}
	// Order in the policy does not change the encoding.
	p, err := ParsePolicy([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	shuffled := &Policy{Version: p.Version, Default: p.Default, Regions: []Region{p.Regions[2], p.Regions[0], p.Regions[1]}}
	shuffled.Regions[1].Countries = []string{"CH", "FR", "DE"}
	if a, b := p.Marshal(), shuffled.Marshal(); !bytes.Equal(a, b) {
		t.Errorf("same policy, different bytes:\n%s\n%s", a, b)
	}
	if bytes.Equal(p.Marshal(), Default().Marshal()) {
		t.Error("different policies, same bytes")
	}
	// Marshal leaves the policy alone.
	if p.Regions[0].Name != "zurich" || p.Regions[0].Countries[0] != "DE" {
		t.Errorf("Marshal reordered the policy: %+v", p)
	}
}

func TestRoundTrip(t *testing.T) {
	parsed, err := ParsePolicy([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	many := Default()
	many.Version = 1 << 63
	many.Regions = append(many.Regions, Region{Name: "eu-west-1", URL: "http://[::1]:8080/regions/eu-west-1", Countries: []string{"RE", "GF", "AX"}})
	for name, p := range map[string]*Policy{"default": Default(), "config": parsed, "three regions": many} {
		t.Run(name, func(t *testing.T) {
			b := p.Marshal()
			q, err := ParsePolicy(b)
			if err != nil {
				t.Fatalf("ParsePolicy(Marshal(p)) = %v", err)
			}
			if !bytes.Equal(q.Marshal(), b) {
				t.Errorf("Marshal(ParsePolicy(b)) != b:\n%s\n%s", q.Marshal(), b)
			}
			if !reflect.DeepEqual(q, canonicalOrder(t, q)) {
				t.Errorf("ParsePolicy(Marshal(p)) is not in canonical order: %+v", q)
			}
			for _, c := range AllCountries() {
				r1, _ := p.RegionFor(c)
				r2, _ := q.RegionFor(c)
				if r1 != r2 {
					t.Errorf("after a round trip %s moved from %s to %s", c, r1, r2)
				}
			}
		})
	}
	if p := Default(); !reflect.DeepEqual(canonicalOrder(t, p), p) {
		t.Errorf("Default() is not in canonical order")
	}
}

func TestSignOpen(t *testing.T) {
	signer, verifier := testKey(t, "vitrine.example/logs/policy", 1)
	_, otherVerifier := testKey(t, "vitrine.example/logs/policy", 2)
	otherSigner, _ := testKey(t, "vitrine.example/logs/policy", 2)

	p := Default()
	p.Region("zurich").URL = "https://zurich.example.com"
	entry, err := Sign(p, signer)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(entry, []byte("vitrine residency policy v1\n{\"version\":1,")) {
		t.Errorf("signed policy starts %q", entry[:40])
	}
	got, err := Open(entry, verifier)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("Open = %+v, want %+v", got, p)
	}
	if _, err := Open(entry, otherVerifier); err == nil {
		t.Error("Open with another key's verifier succeeded")
	}
	// Cosigned by another key: still opens.
	both, err := note.Sign(&note.Note{Text: string(entry[:bytes.Index(entry, []byte("\n\n"))+1])}, signer, otherSigner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(both, verifier); err != nil {
		t.Errorf("Open of a doubly signed policy = %v", err)
	}

	tampered := bytes.Replace(entry, []byte(`"moscow"`), []byte(`"zurich"`), 1)
	if _, err := Open(tampered, verifier); err == nil {
		t.Error("Open of a tampered policy succeeded")
	}

	// Properly signed notes that are not canonical policies.
	for name, text := range map[string]string{
		"no header":         string(p.Marshal()),
		"other header":      "vitrine residency policy v2\n" + string(p.Marshal()),
		"not canonical":     noteHeader + strings.Replace(string(p.Marshal()), `,"default"`, `, "default"`, 1),
		"regions unsorted":  noteHeader + `{"version":1,"default":"moscow","regions":[{"name":"zurich","url":"","countries":["DE"]},{"name":"moscow","url":"","countries":[]}]}` + "\n",
		"invalid policy":    noteHeader + `{"version":1,"default":"nowhere","regions":[{"name":"moscow","url":"","countries":[]}]}` + "\n",
		"trailing newlines": noteHeader + string(p.Marshal()) + "\n",
	} {
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Open(msg, verifier); err == nil {
			t.Errorf("%s: Open succeeded: %+v", name, got)
		}
	}

	if _, err := Sign(&Policy{Version: 1, Default: "x"}, signer); err == nil {
		t.Error("Sign of an invalid policy succeeded")
	}
}

// TestVectors checks the encodings against testdata/, which
// `go test -run TestVectors -update` rewrites; the same code gives the same
// bytes every time.
func TestVectors(t *testing.T) {
	signer, verifier := testKey(t, "vitrine.example/logs/policy", 1)
	parsed, err := ParsePolicy([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	vectors := map[string]*Policy{"default": Default(), "config": parsed}
	for name, p := range vectors {
		entry, err := Sign(p, signer)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{name + ".json": p.Marshal(), name + ".note": entry}
		for file, want := range files {
			path := filepath.Join("testdata", file)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from what the code produces now:\n%s\nwant\n%s", path, got, want)
			}
		}
		if q, err := Open(entry, verifier); err != nil || !reflect.DeepEqual(q, canonicalOrder(t, p)) {
			t.Errorf("Open(%s.note) = %+v, %v", name, q, err)
		}
	}
}
