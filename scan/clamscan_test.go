package scan

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/clamav"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// corpus is a generated set of rules and files: signatures of every form,
// files that contain instances of some of them, and near misses.
type corpus struct {
	rules map[string]string // file name → ClamAV rule text
	files map[string][]byte // file name → contents
}

// genPattern makes a random body signature pattern over the bytes of
// alphabet, and an instance of it; parts of the patterns follow ClamAV's
// rules (two fixed bytes in a row between variable gaps).
func genPattern(r *rand.Rand, alphabet string, text bool) (pattern string, instance []byte) {
	var p strings.Builder
	var in []byte
	pick := func() byte { return alphabet[r.IntN(len(alphabet))] }
	fixed := func(n int) {
		for range n {
			c := pick()
			fmt.Fprintf(&p, "%02x", c)
			in = append(in, c)
		}
	}
	filler := func(n int) {
		for range n {
			in = append(in, pick())
		}
	}
	nparts := 1 + r.IntN(3)
	for k := range nparts {
		if k > 0 {
			switch r.IntN(4) {
			case 0:
				p.WriteString("*")
				filler(r.IntN(30))
			case 1:
				lo := r.IntN(5)
				hi := lo + 1 + r.IntN(6)
				fmt.Fprintf(&p, "{%d-%d}", lo, hi)
				filler(lo + r.IntN(hi-lo+1))
			case 2:
				hi := 1 + r.IntN(6)
				fmt.Fprintf(&p, "{-%d}", hi)
				filler(r.IntN(hi + 1))
			case 3:
				lo := r.IntN(6)
				fmt.Fprintf(&p, "{%d-}", lo)
				filler(lo + r.IntN(10))
			}
		}
		fixed(3 + r.IntN(4))
		if text {
			continue // keep text signatures to letters and spaces
		}
		for range r.IntN(3) {
			switch r.IntN(6) {
			case 0:
				p.WriteString("??")
				filler(1)
			case 1:
				c := pick()
				fmt.Fprintf(&p, "%x?", c>>4)
				in = append(in, c)
			case 2:
				c := pick()
				fmt.Fprintf(&p, "?%x", c&15)
				in = append(in, c)
			case 3:
				n := 1 + r.IntN(8)
				fmt.Fprintf(&p, "{%d}", n)
				filler(n)
			case 4:
				a, b := []byte{pick(), pick()}[:1+r.IntN(2)], []byte{pick(), pick()}[:1+r.IntN(2)]
				fmt.Fprintf(&p, "(%x|%x)", a, b)
				in = append(in, [][]byte{a, b}[r.IntN(2)]...)
			case 5:
				n := 1 + r.IntN(2)
				a, b := make([]byte, n), make([]byte, n)
				for i := range n {
					a[i], b[i] = pick(), pick()
				}
				fmt.Fprintf(&p, "!(%x|%x)", a, b)
				for {
					c := make([]byte, n)
					for i := range c {
						c[i] = pick()
					}
					if !bytes.Equal(c, a) && !bytes.Equal(c, b) {
						in = append(in, c...)
						break
					}
				}
			}
			fixed(2 + r.IntN(3))
		}
	}
	return p.String(), in
}

// genCorpus makes n body signatures with hash signatures for some of the
// files, and the files.
func genCorpus(seed uint64, nbody, nfiles int) *corpus {
	r := rand.New(rand.NewPCG(seed, 1))
	const binAlpha = "\x80\x81\x82\x83\x90\x91\xa0\xa1\xa2\xb0\xc0\xc1\xd0\xe0\xf0\xf1"
	const textAlpha = "abcdefgh "
	c := &corpus{rules: map[string]string{}, files: map[string][]byte{}}
	type inst struct {
		target int
		text   bool
		b      []byte
		offset int
	}
	var ndb strings.Builder
	var insts []inst
	for i := range nbody {
		target := []int{0, 0, 0, 1, 6, 7}[r.IntN(6)]
		text := target == 7 || target == 0 && r.IntN(4) == 0
		alpha := binAlpha
		if text {
			alpha = textAlpha
		}
		pat, in := genPattern(r, alpha, text)
		if bytes.HasPrefix(in, []byte(" ")) || bytes.HasSuffix(in, []byte(" ")) || bytes.Contains(in, []byte("  ")) {
			continue // normalisation would change the instance
		}
		off := "*"
		offset := -1
		if r.IntN(6) == 0 {
			offset = 4 + r.IntN(40)
			off = strconv.Itoa(offset)
		}
		fmt.Fprintf(&ndb, "Vitrine.Parity.B%d:%d:%s:%s\n", i, target, off, pat)
		insts = append(insts, inst{target, text, in, offset})
	}
	c.rules["parity.ndb"] = ndb.String()
	var hdb, hsb strings.Builder
	for f := range nfiles {
		kind := []string{"bin", "pe", "elf", "text"}[r.IntN(4)]
		size := 64 + r.IntN(8<<10)
		var b []byte
		switch kind {
		case "text":
			words := []string{"alpha", "Beta", "GAMMA", "delta", "eps", "zeta", "Eta", "theta"}
			for len(b) < size {
				b = append(b, words[r.IntN(len(words))]...)
				b = append(b, []string{" ", "  ", "\n", "\t", " \r\n"}[r.IntN(5)]...)
			}
		default:
			b = make([]byte, size)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			switch kind {
			case "pe":
				copy(b, "MZ")
			case "elf":
				copy(b, "\x7fELF")
			default:
				b[0] = 0xc3 // neither of them, nor text
			}
		}
		// Plant instances of a few signatures, some of them spoiled.
		for range r.IntN(6) {
			in := insts[r.IntN(len(insts))]
			if in.text != (kind == "text") {
				continue
			}
			x := bytes.Clone(in.b)
			if in.text && r.IntN(2) == 0 {
				x = bytes.ToUpper(x)
				x = bytes.ReplaceAll(x, []byte(" "), []byte(" \t "))
			}
			if r.IntN(3) == 0 { // a near miss
				x[r.IntN(len(x))] ^= 0x01
			}
			at := 4 + r.IntN(len(b)-len(x)-4)
			if in.offset >= 0 {
				at = in.offset
			}
			if at+len(x) < len(b) {
				copy(b[at:], x)
			}
		}
		name := fmt.Sprintf("%03d.%s", f, kind)
		c.files[name] = b
		if r.IntN(4) == 0 {
			m := md5.Sum(b)
			size := strconv.Itoa(len(b))
			if r.IntN(3) == 0 {
				size = "*"
			}
			fmt.Fprintf(&hdb, "%x:%s:Vitrine.Parity.M%d%s\n", m, size, f, map[bool]string{true: ":73", false: ""}[size == "*"])
		}
		if r.IntN(4) == 0 {
			h := sha256.Sum256(b)
			size := len(b)
			if r.IntN(3) == 0 {
				size++ // right hash, wrong size
			}
			fmt.Fprintf(&hsb, "%x:%d:Vitrine.Parity.S%d\n", h, size, f)
		}
	}
	c.rules["parity.hdb"] = hdb.String()
	c.rules["parity.hsb"] = hsb.String()
	return c
}

func (c *corpus) write(t testing.TB, dir string) (ruleDir string, files []string) {
	ruleDir = filepath.Join(dir, "rules")
	fileDir := filepath.Join(dir, "files")
	for _, d := range []string{ruleDir, fileDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range c.rules {
		if err := os.WriteFile(filepath.Join(ruleDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range c.files {
		p := filepath.Join(fileDir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	slices.Sort(files)
	return ruleDir, files
}

// clamscanFound runs clamscan with only the rules in ruleDir over files and
// returns its detections as "file: name" lines, sorted.
func clamscanFound(t testing.TB, ruleDir string, files []string) []string {
	t.Helper()
	path, err := exec.LookPath("clamscan")
	if err != nil {
		t.Skip("clamscan not installed (Debian package clamav); skipping the parity check against ClamAV")
	}
	found, _, err := clamav.Scan(context.Background(), path, ruleDir, files...)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestClamscanParity generates several hundred signatures of every form and
// files that contain some of them (and near misses), and checks the
// scanner finds exactly the (file, signature) pairs clamscan finds.
func TestClamscanParity(t *testing.T) {
	if _, err := exec.LookPath("clamscan"); err != nil {
		t.Skip("clamscan not installed (Debian package clamav); skipping the parity check against ClamAV")
	}
	for _, seed := range []uint64{6, 7} {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { checkParity(t, seed) })
	}
}

func checkParity(t *testing.T, seed uint64) {
	c := genCorpus(seed, 400, 80)
	ruleDir, files := c.write(t, t.TempDir())
	want := clamscanFound(t, ruleDir, files)

	srcs, err := ruledb.LoadDir(ruleDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ruledb.Compile(srcs, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	n := newNaive(t, db)
	var got []string
	for i, f := range files {
		ms, err := s.ScanFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			got = append(got, f+": "+m.Name)
		}
		if i >= 20 {
			continue // the reference matcher is slow; FuzzScan covers it more
		}
		data, _ := os.ReadFile(f)
		if g, w := names(ms), n.scan(data); !slices.Equal(g, w) {
			t.Errorf("%s: scanner finds %v, reference matcher %v", f, g, w)
		}
	}
	slices.Sort(got)
	if len(want) < 20 {
		t.Errorf("clamscan found only %d detections; the corpus should plant more", len(want))
	}
	if !slices.Equal(got, want) {
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("missed (clamscan finds it): %s", w)
			}
		}
		for _, g := range got {
			if !slices.Contains(want, g) {
				t.Errorf("extra (clamscan does not find it): %s", g)
			}
		}
	}
	t.Logf("%d signatures, %d files, %d detections by clamscan, %d by the scanner", db.Len(), len(files), len(want), len(got))
}
