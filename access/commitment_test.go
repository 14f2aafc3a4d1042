package access

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	sumtlog "golang.org/x/mod/sumdb/tlog"
)

// ref is a record as a commitment covers it.
type ref struct {
	id   int64
	sha  string
	time time.Time
}

// fileHash is a file hash (64 lower-case hex digits) named by label.
func fileHash(label string) string {
	h := sha256.Sum256([]byte(label))
	return hex.EncodeToString(h[:])
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// refsOf returns n records with ids from first in steps of step.
func refsOf(n int, first, step int64) []ref {
	out := make([]ref, n)
	for i := range out {
		id := first + int64(i)*step
		out[i] = ref{id, fileHash(fmt.Sprint("file ", id)), t0.Add(time.Duration(id) * time.Microsecond)}
	}
	return out
}

// treeOf appends refs to a new DatasetTree.
func treeOf(t testing.TB, refs []ref) *DatasetTree {
	t.Helper()
	tree := NewDatasetTree()
	for _, r := range refs {
		if err := tree.Append(r.id, r.sha, r.time); err != nil {
			t.Fatalf("Append(%d): %v", r.id, err)
		}
	}
	return tree
}

// commitmentVectors are the commitments of testdata/commitments.jsonl, one
// a line, each with the records it covers.
var commitmentVectors = []struct {
	name    string
	refs    []ref
	c       Commitment // Count and Root are filled from refs
	through int64
}{
	{"empty", nil, Commitment{Time: t0.Add(123 * time.Millisecond), Region: "zurich", Dataset: "telemetry"}, 0},
	{"empty-after-deletes", nil, Commitment{Time: t0, Region: "moscow", Dataset: "telemetry"}, 42},
	{"one", []ref{{1, fileHash("a"), t0}}, Commitment{Time: t0, Region: "zurich", Dataset: "telemetry"}, 1},
	{"gaps", []ref{{3, fileHash("a"), t0}, {7, fileHash("b"), t0.Add(time.Minute)}, {17, fileHash("a"), t0.Add(-time.Hour)}},
		Commitment{Time: t0, Region: "zurich", Dataset: "telemetry"}, 20},
	{"full-tile", refsOf(256, 1, 1), Commitment{Time: t0, Region: "zurich", Dataset: "telemetry"}, 256},
	{"tile-and-one", refsOf(257, 16384, 16384), Commitment{Time: t0, Region: "zurich", Dataset: "telemetry"}, 257 * 16384},
	{"limits", []ref{
		{1, strings.Repeat("0", 64), time.Unix(0, 0)},
		{2, strings.Repeat("f", 64), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{1<<62 + 5, fileHash("x"), time.Date(9999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{1<<63 - 1, fileHash("y"), t0.Add(999 * time.Nanosecond)},
	}, Commitment{Time: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), Region: "a" + strings.Repeat("z", 31), Dataset: "d" + strings.Repeat("9", 31)}, 1<<63 - 1},
	{"epoch", refsOf(3, 1, 1), Commitment{Time: time.Unix(0, 0), Region: "z", Dataset: "t"}, 5},
}

// vectorCommitment returns vector i's commitment, its count and root
// computed from its records.
func vectorCommitment(t testing.TB, i int) *Commitment {
	v := commitmentVectors[i]
	c := v.c
	tree := treeOf(t, v.refs)
	c.Count, c.Through, c.Root = tree.Count(), v.through, tree.Root()
	return &c
}

// TestCommitmentVectors checks that the vectors encode to the bytes in
// testdata/commitments.jsonl, parse back to themselves, and that their
// roots are what code we did not write computes from their records. With
// -update it rewrites the file, always to the same bytes.
func TestCommitmentVectors(t *testing.T) {
	names, cms := make([]string, len(commitmentVectors)), make([]*Commitment, len(commitmentVectors))
	for i, v := range commitmentVectors {
		c := vectorCommitment(t, i)
		if want := independentRoot(t, v.refs); c.Root != want {
			t.Errorf("%s: root %s, x/mod's sumdb/tlog computes %s", v.name, c.Root, want)
		}
		if want := mth(leavesOf(t, v.refs)); c.Root != "sha256:"+hex.EncodeToString(want) {
			t.Errorf("%s: root %s, RFC 6962's definition gives %x", v.name, c.Root, want)
		}
		names[i], cms[i] = v.name, c
	}
	for i, line := range golden(t, "testdata/commitments.jsonl", marshalAll(t, names, cms)) {
		got, err := ParseCommitment(line)
		if err != nil {
			t.Errorf("%s: ParseCommitment: %v", commitmentVectors[i].name, err)
			continue
		}
		want := vectorCommitment(t, i)
		want.Time = want.Time.UTC()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ParseCommitment = %+v, want %+v", commitmentVectors[i].name, got, want)
		}
		if k := EntryKind(line); k != KindCommitment {
			t.Errorf("%s: EntryKind = %q, want %q", commitmentVectors[i].name, k, KindCommitment)
		}
		if err := got.Verify(treeOf(t, commitmentVectors[i].refs)); err != nil {
			t.Errorf("%s: Verify with its own records: %v", commitmentVectors[i].name, err)
		}
	}
}

func leavesOf(t testing.TB, refs []ref) [][]byte {
	t.Helper()
	leaves := make([][]byte, len(refs))
	for i, r := range refs {
		l, err := CommitmentLeaf(r.id, r.sha, r.time)
		if err != nil {
			t.Fatal(err)
		}
		leaves[i] = l
	}
	return leaves
}

// independentRoot computes the root of refs' leaves with x/mod's
// sumdb/tlog, written apart from transparency-dev/merkle, and checks an
// inclusion proof of each of a few leaves, made by x/mod, with merkle's
// verifier against our root.
func independentRoot(t testing.TB, refs []ref) string {
	t.Helper()
	leaves := leavesOf(t, refs)
	var hashes []sumtlog.Hash
	reader := sumtlog.HashReaderFunc(func(idx []int64) ([]sumtlog.Hash, error) {
		out := make([]sumtlog.Hash, len(idx))
		for k, x := range idx {
			out[k] = hashes[x]
		}
		return out, nil
	})
	for i, l := range leaves {
		h, err := sumtlog.StoredHashes(int64(i), l, reader)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h...)
	}
	n := int64(len(leaves))
	if n == 0 {
		return "sha256:" + hex.EncodeToString(sha256.New().Sum(nil))
	}
	root, err := sumtlog.TreeHash(n, reader)
	if err != nil {
		t.Fatal(err)
	}
	ours := treeOf(t, refs).Root()
	ourRoot, _ := hex.DecodeString(strings.TrimPrefix(ours, "sha256:"))
	for _, i := range []int64{0, n / 2, n - 1} {
		p, err := sumtlog.ProveRecord(n, i, reader)
		if err != nil {
			t.Fatal(err)
		}
		hs := make([][]byte, len(p))
		for k := range p {
			hs[k] = p[k][:]
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), uint64(n), rfc6962.DefaultHasher.HashLeaf(leaves[i]), hs, ourRoot); err != nil {
			t.Errorf("x/mod's inclusion proof of leaf %d of %d does not verify against our root %s: %v", i, n, ours, err)
		}
	}
	return "sha256:" + hex.EncodeToString(root[:])
}

// mth is RFC 6962's Merkle Tree Hash, section 2.1, as written there.
func mth(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		h := sha256.Sum256(append(append([]byte{1}, mth(leaves[:k])...), mth(leaves[k:])...))
		return h[:]
	}
}

// TestCommitmentRootIndependent compares roots with x/mod's and with RFC
// 6962's definition for every size up to 300 and a few larger ones.
func TestCommitmentRootIndependent(t *testing.T) {
	sizes := []int{1000, 1024, 1025, 4097}
	for n := range 301 {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		refs := refsOf(n, 7, 3)
		got := treeOf(t, refs).Root()
		if want := independentRoot(t, refs); got != want {
			t.Fatalf("%d records: root %s, x/mod computes %s", n, got, want)
		}
		if n <= 300 {
			if want := "sha256:" + hex.EncodeToString(mth(leavesOf(t, refs))); got != want {
				t.Fatalf("%d records: root %s, RFC 6962's definition gives %s", n, got, want)
			}
		}
	}
}

func TestCommitmentLeaf(t *testing.T) {
	l, err := CommitmentLeaf(0x0102030405060708, strings.Repeat("ab", 32), time.UnixMicro(-2))
	if err != nil {
		t.Fatal(err)
	}
	want := "0102030405060708" + strings.Repeat("ab", 32) + "fffffffffffffffe"
	if got := hex.EncodeToString(l); got != want {
		t.Errorf("leaf = %s, want %s", got, want)
	}
	for _, bad := range []string{"", strings.Repeat("A", 64), strings.Repeat("a", 63), strings.Repeat("a", 65), strings.Repeat("g", 64), "sha256:" + strings.Repeat("a", 64)} {
		if _, err := CommitmentLeaf(1, bad, t0); err == nil {
			t.Errorf("CommitmentLeaf accepted the file hash %q", bad)
		}
	}
}

// TestCommitmentDetectsChanges checks that every change to the records
// that a commitment covers — one changed, removed or added, a time moved
// by a microsecond, ids renumbered — makes Verify fail.
func TestCommitmentDetectsChanges(t *testing.T) {
	refs := refsOf(100, 10, 10)
	tree := treeOf(t, refs)
	c := &Commitment{Time: t0, Region: "zurich", Dataset: "telemetry", Count: tree.Count(), Through: 1000, Root: tree.Root()}
	if err := c.Verify(tree); err != nil {
		t.Fatalf("Verify with the records committed to: %v", err)
	}
	changed := func(f func([]ref) []ref) []ref { return f(append([]ref(nil), refs...)) }
	cases := []struct {
		name string
		refs []ref
		want string
	}{
		{"a hash changed", changed(func(r []ref) []ref { r[42].sha = fileHash("other"); return r }), "root"},
		{"a time moved by 1µs", changed(func(r []ref) []ref { r[0].time = r[0].time.Add(time.Microsecond); return r }), "root"},
		{"an id changed", changed(func(r []ref) []ref { r[50].id++; return r }), "root"},
		{"the first removed", refs[1:], "99 records"},
		{"the last removed", refs[:99], "99 records"},
		{"one removed, one added", changed(func(r []ref) []ref { r[0] = ref{5, fileHash("new"), t0}; return r }), "root"},
		{"one added within the bound", changed(func(r []ref) []ref {
			return append(r[:50:50], append([]ref{{505, fileHash("new"), t0}}, r[50:]...)...)
		}), "101 records"},
		{"one added beyond the bound", changed(func(r []ref) []ref { return append(r[1:], ref{1001, fileHash("new"), t0}) }), "beyond"},
		{"two swapped", changed(func(r []ref) []ref { r[3].sha, r[4].sha = r[4].sha, r[3].sha; return r }), "root"},
	}
	for _, tc := range cases {
		err := c.Verify(treeOf(t, tc.refs))
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Verify = %v, want ErrMismatch mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestDatasetTreeRefuses(t *testing.T) {
	tree := treeOf(t, refsOf(3, 1, 1))
	root := tree.Root()
	for _, r := range []ref{{3, fileHash("x"), t0}, {2, fileHash("x"), t0}, {4, "nothex", t0}} {
		if err := tree.Append(r.id, r.sha, r.time); err == nil {
			t.Errorf("Append(%d, %q) after id 3 succeeded", r.id, r.sha)
		}
	}
	if tree.Count() != 3 || tree.Last() != 3 || tree.Root() != root {
		t.Errorf("refused appends changed the tree: count %d, last %d, root %s", tree.Count(), tree.Last(), tree.Root())
	}
	for _, id := range []int64{0, -1} {
		if err := NewDatasetTree().Append(id, fileHash("x"), t0); err == nil {
			t.Errorf("Append(%d) succeeded", id)
		}
	}
	if got := NewDatasetTree().Root(); got != EmptyRoot || EmptyRoot != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty root = %s (EmptyRoot %s), want the SHA-256 of nothing", got, EmptyRoot)
	}
}

// invalidCommitments are changes to the first vector with what the error
// must say.
var invalidCommitments = []struct {
	name, old, new, want string
}{
	{"version", `"v":1`, `"v":2`, "version 2"},
	{"access kind", `"kind":"commitment"`, `"kind":"access"`, `kind "access" is not "commitment"`},
	{"missing key", `,"dataset":"telemetry"`, ``, `key "count" is where "dataset" belongs`},
	{"unknown key", `"root"`, `"rot"`, `unknown key "rot"`},
	{"key order", `"count":0,"through":0`, `"through":0,"count":0`, `key "through" is where "count" belongs`},
	{"duplicate key", `"count":0,`, `"count":0,"count":0,`, "twice"},
	{"time without millis", `10:00:00.123Z`, `10:00:00Z`, "millisecond"},
	{"time with offset", `10:00:00.123Z`, `10:00:00.123+00:00`, "millisecond"},
	{"region", `"zurich"`, `"Zurich"`, "region name"},
	{"dataset", `"telemetry"`, `""`, "dataset name"},
	{"negative count", `"count":0`, `"count":-1`, "negative"},
	{"count beyond through", `"count":0,"through":0`, `"count":1,"through":0`, "more than through"},
	{"count as string", `"count":0`, `"count":"0"`, "want a number"},
	{"count exponent", `"count":0`, `"count":0e0`, "plain decimal"},
	{"count leading zero", `"through":0`, `"through":00`, "invalid JSON"},
	{"count float", `"through":0`, `"through":1.0`, "plain decimal"},
	{"root prefix", `"root":"sha256:`, `"root":"sha512:`, "root"},
	{"root upper case", `"root":"sha256:e3b0`, `"root":"sha256:E3B0`, "root"},
	{"root of nothing", `"root":"sha256:e3b0`, `"root":"sha256:f3b0`, "empty root"},
	{"whitespace", `"count":0`, `"count": 0`, "canonical"},
	{"escaped", `"zurich"`, `"\u007aurich"`, "canonical"},
	{"trailing data", `}`, `}{}`, "after the commitment"},
	{"trailing newline", `}`, "}\n", "canonical"},
	{"null", `"region":"zurich"`, `"region":null`, "want a string"},
	{"not an object", `{"v":1,"kind":"commitment"`, `[{"v":1,"kind":"commitment"`, "want the record as an object"},
	{"truncated", `"}`, `"`, "end of input"},
	{"invalid UTF-8", `"zurich"`, "\"zur\xffich\"", "UTF-8"},
}

func TestParseCommitmentInvalid(t *testing.T) {
	valid, err := vectorCommitment(t, 0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range invalidCommitments {
		t.Run(tc.name, func(t *testing.T) {
			b := mutate(t, valid, tc.old, tc.new)
			c, err := ParseCommitment(b)
			if err == nil {
				t.Fatalf("ParseCommitment(%s) = %+v, want an error", b, c)
			}
			if !strings.HasPrefix(err.Error(), "parsing commitment: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCommitment(%s) error = %q, want it to mention %q", b, err, tc.want)
			}
		})
	}
	if _, err := ParseCommitment(make([]byte, MaxSize+1)); err == nil {
		t.Error("ParseCommitment accepted a commitment larger than MaxSize")
	}
}

func TestCommitmentMarshalRefuses(t *testing.T) {
	ok := func() *Commitment { return vectorCommitment(t, 3) }
	cases := map[string]func(c *Commitment){
		"zero time":     func(c *Commitment) { c.Time = time.Time{} },
		"before 1970":   func(c *Commitment) { c.Time = time.Unix(-1, 0) },
		"no region":     func(c *Commitment) { c.Region = "" },
		"quote":         func(c *Commitment) { c.Dataset = `tele"metry` },
		"root no hex":   func(c *Commitment) { c.Root = "sha256:" },
		"no root":       func(c *Commitment) { c.Root = "" },
		"through < ids": func(c *Commitment) { c.Through = c.Count - 1 },
	}
	for name, f := range cases {
		c := ok()
		f(c)
		if b, err := c.Marshal(); err == nil || !strings.HasPrefix(err.Error(), invalidCommitment) {
			t.Errorf("%s: Marshal = %s, %v; want an invalid commitment error", name, b, err)
		}
	}
	// Time in another zone, with nanoseconds: encoded in UTC, truncated.
	c := ok()
	c.Time = time.Date(2026, 11, 22, 11, 0, 0, 123_999_999, time.FixedZone("CET", 3600))
	b, err := c.Marshal()
	if err != nil || !bytes.Contains(b, []byte(`"time":"2026-11-22T10:00:00.123Z"`)) {
		t.Errorf("Marshal = %s, %v; want the time in UTC to the millisecond", b, err)
	}
}

func TestEntryKind(t *testing.T) {
	lines, err := readVectors()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if k := EntryKind(l); k != KindAccess {
			t.Errorf("EntryKind(%.40s…) = %q, want %q", l, k, KindAccess)
		}
	}
	for _, b := range []string{"", "{}", `{"v":1,"kind":"commitments",`, `{"v":2,"kind":"access",`, ` {"v":1,"kind":"access",`} {
		if k := EntryKind([]byte(b)); k != "" {
			t.Errorf("EntryKind(%q) = %q, want none", b, k)
		}
	}
}

// FuzzParseCommitment checks that ParseCommitment never panics and accepts
// only canonical encodings of valid commitments: whatever it accepts must
// validate, marshal back to exactly the input and parse again to the same
// commitment. Seeds are the vectors, the invalid changes of the first,
// and the access records.
func FuzzParseCommitment(f *testing.F) {
	file, err := os.ReadFile("testdata/commitments.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(file, []byte("\n")), []byte("\n"))
	for _, l := range lines {
		f.Add(l)
	}
	for _, tc := range invalidCommitments {
		f.Add(mutate(f, lines[0], tc.old, tc.new))
	}
	records, err := readVectors()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(records[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonical(t, KindCommitment, ParseCommitment, b)
	})
}

// BenchmarkDatasetTree measures the hashing a commitment costs per record.
func BenchmarkDatasetTree(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	shas := make([]string, 1024)
	for i := range shas {
		shas[i] = fileHash(fmt.Sprint(rng.Uint64()))
	}
	tree := NewDatasetTree()
	b.ReportAllocs()
	id := int64(0)
	for b.Loop() {
		id++
		if err := tree.Append(id, shas[id%1024], t0); err != nil {
			b.Fatal(err)
		}
	}
	_ = tree.Root()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
