package tlog_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/tlog/internal/gen"
	sumdb "golang.org/x/mod/sumdb/tlog"
)

func proofFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "proof", "*.tlog-proof"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no proof vectors: %v", err)
	}
	for i, f := range files {
		files[i] = filepath.ToSlash(strings.TrimPrefix(f, "testdata"+string(filepath.Separator)))
	}
	return files
}

func TestParseProofRoundTrip(t *testing.T) {
	for _, file := range proofFiles(t) {
		t.Run(file, func(t *testing.T) {
			b := readTestdata(t, file)
			p, err := tlog.ParseProof(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Marshal(); !bytes.Equal(got, b) {
				t.Errorf("Marshal(ParseProof(b)) differs from b:\n%s\nwant\n%s", got, b)
			}
		})
	}
}

func TestParseProofFields(t *testing.T) {
	p, err := tlog.ParseProof(readTestdata(t, "proof/extra.tlog-proof"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(p.Extra), "vitrine-agent_1.0.0_linux_amd64.tar.gz"; got != want {
		t.Errorf("got extra %q, want %q", got, want)
	}
	if p.Index != 16 || len(p.Hashes) != 4 || !bytes.HasPrefix(p.Checkpoint, []byte(gen.Origin+"\n23\n")) {
		t.Errorf("got index %d, %d hashes, checkpoint %q", p.Index, len(p.Hashes), p.Checkpoint)
	}

	one, err := tlog.ParseProof(readTestdata(t, "proof/size-one.tlog-proof"))
	if err != nil {
		t.Fatal(err)
	}
	if one.Extra != nil || one.Index != 0 || one.Hashes != nil {
		t.Errorf("got %+v, want no extra, index 0 and no hashes", one)
	}

	// An empty Extra is no extra line, like nil.
	empty := &tlog.Proof{Extra: []byte{}, Index: 3, Checkpoint: []byte("c\n")}
	if got, want := string(empty.Marshal()), "c2sp.org/tlog-proof@v1\nindex 3\n\nc\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseProofErrors(t *testing.T) {
	valid := string(readTestdata(t, "proof/extra.tlog-proof"))
	header, rest, _ := strings.Cut(valid, "\n")
	extraLine, rest, _ := strings.Cut(rest, "\n")
	indexLine, rest, _ := strings.Cut(rest, "\n")
	hashLine, _, _ := strings.Cut(rest, "\n")
	_, checkpoint, _ := strings.Cut(valid, "\n\n")
	join := func(lines ...string) string { return strings.Join(lines, "\n") }
	for _, c := range []struct {
		name, text, want string
	}{
		{"empty", "", "tlog-proof line 1: first line is not"},
		{"header only", header, "line 1: first line is not"},
		{"wrong version", strings.Replace(valid, "@v1", "@v2", 1), "line 1: first line is not"},
		{"header with CR", strings.Replace(valid, "@v1\n", "@v1\r\n", 1), "line 1"},
		{"missing index", join(header, "", ""), "line 2: want \"index <n>\""},
		{"ends after header", header + "\n", "line 2: missing index line"},
		{"ends after extra", join(header, extraLine, ""), "line 3: missing index line"},
		{"extra after index", join(header, indexLine, extraLine, "", checkpoint), "line 3: \"extra"},
		{"empty extra", join(header, "extra ", indexLine, "", checkpoint), "line 2: extra data is not non-empty canonical base64"},
		{"extra without padding", join(header, strings.TrimRight(extraLine, "="), indexLine, "", checkpoint), "line 2: extra data"},
		{"extra with CR", join(header, extraLine+"\r", indexLine, "", checkpoint), "line 2: extra data"},
		{"two extras", join(header, extraLine, extraLine, indexLine, "", checkpoint), "line 3: want \"index <n>\""},
		{"index leading zero", join(header, "index 07", "", checkpoint), `line 2: index "07" is not a decimal`},
		{"index negative", join(header, "index -1", "", checkpoint), `index "-1"`},
		{"index overflow", join(header, "index 18446744073709551616", "", checkpoint), `index "18446744073709551616"`},
		{"index tab", join(header, "index\t7", "", checkpoint), `line 2: want "index <n>"`},
		{"index two spaces", join(header, "index  7", "", checkpoint), `index " 7"`},
		{"index empty", join(header, "index ", "", checkpoint), `index ""`},
		{"hash short", join(header, indexLine, hashLine[:40]+"==", "", checkpoint), "line 3: "},
		{"hash without padding", join(header, indexLine, strings.TrimRight(hashLine, "="), "", checkpoint), "is not a base64 SHA-256 hash"},
		{"hash non-canonical", join(header, indexLine, hashLine[:42]+"B=", "", checkpoint), "is not a base64 SHA-256 hash"},
		{"hash with space", join(header, indexLine, hashLine+" ", "", checkpoint), "is not a base64 SHA-256 hash"},
		{"64 hashes", join(header, "index 0", strings.Repeat(hashLine+"\n", 64), checkpoint), "line 66: more than 63 inclusion proof hashes"},
		{"no empty line", join(header, indexLine, hashLine, ""), "line 4: missing empty line before the checkpoint"},
		{"no checkpoint", join(header, indexLine, hashLine, "", ""), "line 5: missing checkpoint"},
		{"too large", valid + strings.Repeat("x", 128<<10), "tlog-proof: proof is"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := tlog.ParseProof([]byte(c.text))
			if err == nil {
				t.Fatalf("ParseProof succeeded: %+v", p)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %q, want it to contain %q", err, c.want)
			}
			if !errors.Is(err, tlog.ErrMalformed) {
				t.Errorf("error %v does not match ErrMalformed", err)
			}
		})
	}
	// 63 hashes is the maximum, and parses.
	if _, err := tlog.ParseProof([]byte(join(header, "index 0", strings.Repeat(hashLine+"\n", 63), checkpoint))); err != nil {
		t.Errorf("63 hashes: %v", err)
	}
}

// TestProofVerifySumdb checks Proof.Verify against trees and inclusion
// proofs from golang.org/x/mod/sumdb/tlog, for every index of trees of size
// 1 to 40 and of size 1000, and checks that tampering is caught.
func TestProofVerifySumdb(t *testing.T) {
	k := testKeys(t)
	// Cosignatures are covered elsewhere; one signature keeps this fast.
	policy := parsePolicyFile(t, "policy/none.txt")
	big, err := gen.NewTree(1000)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int64{1000}
	for n := int64(1); n <= 40; n++ {
		sizes = append(sizes, n)
	}
	for _, size := range sizes {
		root, err := big.Root(size)
		if err != nil {
			t.Fatal(err)
		}
		cp := signNote(t, gen.CheckpointText(gen.Origin, size, root), k.Log.Signer)
		for index := int64(0); index < size; index++ {
			if size == 1000 && index%37 != 0 && index != 999 {
				continue
			}
			hashes, err := big.Prove(index, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := tlog.LeafHash(gen.Entry(int(index)))
			p := &tlog.Proof{Index: uint64(index), Hashes: hashes, Checkpoint: cp}
			again, err := tlog.ParseProof(p.Marshal())
			if err != nil {
				t.Fatalf("size %d index %d: ParseProof(Marshal): %v", size, index, err)
			}
			got, err := again.Verify(leaf, nil, policy)
			if err != nil {
				t.Fatalf("size %d index %d: %v", size, index, err)
			}
			if got.Size != uint64(size) || !bytes.Equal(got.Hash, root) {
				t.Fatalf("size %d index %d: got checkpoint of size %d", size, index, got.Size)
			}
			ts := tamperings(p, size)
			if index%7 != 0 && index != size-1 {
				ts = ts[:2] // wrong leaf and index past the end; the rest on a sample
			}
			for _, tamper := range ts {
				leaf := leaf
				if tamper.name == "wrong leaf" {
					leaf = tlog.LeafHash(gen.Entry(int(index + 1)))
				}
				if _, err := tamper.proof.Verify(leaf, nil, policy); !errors.Is(err, tlog.ErrInclusion) {
					t.Errorf("size %d index %d, %s: got %v, want ErrInclusion", size, index, tamper.name, err)
				}
			}
		}
	}
}

type tampering struct {
	name  string
	proof *tlog.Proof
}

// tamperings returns altered copies of a valid proof that must not verify.
func tamperings(p *tlog.Proof, size int64) []tampering {
	with := func(f func(q *tlog.Proof)) *tlog.Proof {
		q := &tlog.Proof{Index: p.Index, Checkpoint: p.Checkpoint}
		for _, h := range p.Hashes {
			q.Hashes = append(q.Hashes, bytes.Clone(h))
		}
		f(q)
		return q
	}
	ts := []tampering{
		{"wrong leaf", p},
		{"index past the end", with(func(q *tlog.Proof) { q.Index = uint64(size) })},
		{"extra hash", with(func(q *tlog.Proof) { q.Hashes = append(q.Hashes, make([]byte, 32)) })},
	}
	if int64(p.Index)+1 < size {
		ts = append(ts, tampering{"next index", with(func(q *tlog.Proof) { q.Index++ })})
	}
	if p.Index > 0 {
		ts = append(ts, tampering{"previous index", with(func(q *tlog.Proof) { q.Index-- })})
	}
	for i := range p.Hashes {
		ts = append(ts, tampering{"flipped hash", with(func(q *tlog.Proof) { q.Hashes[i][31] ^= 0x80 })})
	}
	if len(p.Hashes) > 0 {
		ts = append(ts, tampering{"short hash", with(func(q *tlog.Proof) { q.Hashes[0] = q.Hashes[0][:31] })})
		ts = append(ts, tampering{"missing hash", with(func(q *tlog.Proof) { q.Hashes = q.Hashes[:len(q.Hashes)-1] })})
	}
	return ts
}

func TestProofVerifyErrors(t *testing.T) {
	k := testKeys(t)
	policy := parsePolicyFile(t, "policy/2of3.txt")
	p, err := tlog.ParseProof(readTestdata(t, "proof/middle.tlog-proof"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := tlog.LeafHash(gen.Entry(7))
	if _, err := p.Verify(leaf[:31], nil, policy); err == nil {
		t.Error("verified with a 31-byte leaf hash")
	}
	if _, err := p.Verify(leaf, nil, nil); err == nil {
		t.Error("verified without a policy")
	}
	if _, err := p.Verify(leaf, logVerifier(t, k), parsePolicyFile(t, "policy/nested.txt")); !errors.Is(err, tlog.ErrQuorum) {
		t.Errorf("under a policy the cosigners do not meet: got %v, want ErrQuorum", err)
	}
	garbled := &tlog.Proof{Index: p.Index, Hashes: p.Hashes, Checkpoint: []byte("garbage")}
	if _, err := garbled.Verify(leaf, logVerifier(t, k), policy); !errors.Is(err, tlog.ErrLogSignature) {
		t.Errorf("garbage checkpoint: got %v, want ErrLogSignature", err)
	}
}

func TestLeafHash(t *testing.T) {
	for _, entry := range []string{"", "a", "vitrine test entry 0\n"} {
		want := sumdb.RecordHash([]byte(entry))
		if got := tlog.LeafHash([]byte(entry)); !bytes.Equal(got, want[:]) {
			t.Errorf("LeafHash(%q) = %x, want %x", entry, got, want)
		}
	}
}

// BenchmarkProofVerify measures what an endpoint pays per update: parsing
// a proof and verifying it under a 2-of-3 policy.
func BenchmarkProofVerify(b *testing.B) {
	raw := readTestdata(b, "proof/middle.tlog-proof")
	policy := parsePolicyFile(b, "policy/2of3.txt")
	leaf := tlog.LeafHash(gen.Entry(7))
	for b.Loop() {
		p, err := tlog.ParseProof(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Verify(leaf, nil, policy); err != nil {
			b.Fatal(err)
		}
	}
}
