package main

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vitrine-dev/vitrine/internal/clamav"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/scan"
)

// The scanning benchmark of docs/performance.md: the endpoint scanner
// beside `clamscan -d` on the same generated rule sources and corpus, in the
// same run, with the same detections expected of both.

func runBenchScan(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "scan", "[--corpus-mb 1024] [--hash-sigs 90000] [--body-sigs 10000] [--dir DIR] [--workers N]")
	corpusMB := fs.Int("corpus-mb", 1024, "size of the generated corpus in MiB")
	hashSigs := fs.Int("hash-sigs", 90000, "hash signatures (two thirds MD5, one third SHA-256)")
	bodySigs := fs.Int("body-sigs", 10000, "body signatures")
	dir := fs.String("dir", "", "where to generate rules and corpus (default: a temporary directory, removed afterwards); an existing corpus there is reused")
	workers := fs.Int("workers", 0, "files scanned at once by our scanner (0: every core)")
	seed := fs.Uint64("seed", 1, "seed of the generated rules and corpus")
	clamscan := fs.String("clamscan", "clamscan", "the clamscan binary")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *corpusMB < 1 || *hashSigs < 0 || *bodySigs < 1 {
		fs.Usage()
		return errors.New("need a positive corpus size and body signature count")
	}
	clam, err := exec.LookPath(*clamscan)
	if err != nil {
		return fmt.Errorf("vitrine-bench scan needs clamscan (Debian package clamav): %w", err)
	}
	if *workers <= 0 {
		*workers = runtime.NumCPU()
	}
	root := *dir
	if root == "" {
		if root, err = os.MkdirTemp("", "vitrine-bench-scan-"); err != nil {
			return err
		}
		defer os.RemoveAll(root)
	}
	ruleDir, corpusDir := filepath.Join(root, "rules"), filepath.Join(root, "corpus")

	// Rules and corpus.
	start := time.Now()
	g := &scanGen{r: rand.New(rand.NewChaCha8(seedBytes(*seed)))}
	g.bodies(*bodySigs)
	total, err := g.corpus(corpusDir, int64(*corpusMB)<<20)
	if err != nil {
		return err
	}
	g.hashes(*hashSigs)
	if err := g.writeRules(ruleDir); err != nil {
		return err
	}
	srcs, err := ruledb.LoadDir(ruleDir)
	if err != nil {
		return err
	}
	dbBytes, err := ruledb.Compile(srcs, 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "generated %d signatures (%d hash, %d body; %d bytes compiled) and %d files of %.0f MiB (%d planted detections) in %s\n",
		*hashSigs+*bodySigs, *hashSigs, *bodySigs, len(dbBytes), g.files, float64(total)/(1<<20), g.planted, time.Since(start).Round(time.Millisecond))
	if err := warm(corpusDir); err != nil {
		return err
	}
	mb := float64(total) / (1 << 20)

	// clamscan: database load alone (an empty file), then the corpus.
	empty := filepath.Join(root, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return err
	}
	clamLoad := time.Duration(math.MaxInt64)
	for range 3 {
		t0 := time.Now()
		if _, _, err := clamav.Scan(ctx, clam, ruleDir, empty); err != nil {
			return err
		}
		clamLoad = min(clamLoad, time.Since(t0))
	}
	t0 := time.Now()
	clamFound, clamCPU, err := clamav.Scan(ctx, clam, ruleDir, corpusDir)
	if err != nil {
		return err
	}
	clamWall := time.Since(t0)
	clamScan := clamWall - clamLoad

	// Ours: open and compile the database from its bytes (the best of
	// three, after a garbage collection, as clamscan starts afresh), then
	// the corpus on every core, then on one.
	var s *scan.Scanner
	ourLoad, ourOpen := time.Duration(math.MaxInt64), time.Duration(0)
	for range 3 {
		runtime.GC()
		t0 := time.Now()
		db, err := ruledb.Open(dbBytes)
		if err != nil {
			return err
		}
		open := time.Since(t0)
		if s, err = scan.New(db); err != nil {
			return err
		}
		if d := time.Since(t0); d < ourLoad {
			ourLoad, ourOpen = d, open
		}
	}
	var ours []string
	var scanErrs int
	var mu sync.Mutex
	ru0 := cpuTime()
	t0 = time.Now()
	err = s.ScanPaths(ctx, []string{corpusDir}, *workers, func(r scan.Result) {
		mu.Lock()
		defer mu.Unlock()
		if r.Err != nil {
			scanErrs++
			fmt.Fprintf(e.Stderr, "%s: %v\n", r.Path, r.Err)
		}
		for _, m := range r.Matches {
			ours = append(ours, r.Path+": "+m.Name)
		}
	})
	ourScan := time.Since(t0)
	ourCPU := cpuTime() - ru0
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := s.ScanPaths(ctx, []string{corpusDir}, 1, func(scan.Result) {}); err != nil {
		return err
	}
	ourOne := time.Since(t0)

	slices.Sort(ours)
	slices.Sort(clamFound)
	fmt.Fprintf(e.Stdout, "\n%-34s %12s %12s %10s\n", "", "clamscan", "vitrine", "ratio")
	row := func(what string, c, v time.Duration, better string) {
		fmt.Fprintf(e.Stdout, "%-34s %12s %12s %9.1fx %s\n", what, c.Round(time.Millisecond), v.Round(time.Millisecond), c.Seconds()/v.Seconds(), better)
	}
	row("database load", clamLoad, ourLoad, "faster")
	fmt.Fprintf(e.Stdout, "%-34s %12s %12s\n", "  of which ruledb.Open", "", ourOpen.Round(time.Millisecond))
	row("scan (load excluded)", clamScan, ourScan, "faster")
	fmt.Fprintf(e.Stdout, "%-34s %12.1f %12.1f %9.1fx\n", "throughput, MiB/s", mb/clamScan.Seconds(), mb/ourScan.Seconds(), clamScan.Seconds()/ourScan.Seconds())
	fmt.Fprintf(e.Stdout, "%-34s %12.1f %12.1f %9.1fx\n", "throughput on one core, MiB/s", mb/clamScan.Seconds(), mb/ourOne.Seconds(), clamScan.Seconds()/ourOne.Seconds())
	fmt.Fprintf(e.Stdout, "%-34s %12s %12s\n", "CPU time (user+system)", clamCPU.Round(time.Millisecond), ourCPU.Round(time.Millisecond))
	fmt.Fprintf(e.Stdout, "%-34s %12.1f %12.1f %9.1fx\n", "MiB per CPU-second", mb/clamCPU.Seconds(), mb/ourCPU.Seconds(), clamCPU.Seconds()/ourCPU.Seconds())
	fmt.Fprintf(e.Stdout, "%-34s %12d %12d\n", "detections", len(clamFound), len(ours))
	fmt.Fprintf(e.Stdout, "workers %d, GOMAXPROCS %d, corpus %.0f MiB in %d files\n", *workers, runtime.GOMAXPROCS(0), mb, g.files)
	if scanErrs > 0 {
		return fmt.Errorf("%d files could not be scanned", scanErrs)
	}
	if !slices.Equal(ours, clamFound) {
		for _, c := range clamFound {
			if _, ok := slices.BinarySearch(ours, c); !ok {
				fmt.Fprintf(e.Stdout, "only clamscan: %s\n", c)
			}
		}
		for _, o := range ours {
			if _, ok := slices.BinarySearch(clamFound, o); !ok {
				fmt.Fprintf(e.Stdout, "only vitrine:  %s\n", o)
			}
		}
		return errors.New("the scanners disagree")
	}
	fmt.Fprintf(e.Stdout, "both found the same %d detections\n", len(ours))
	return nil
}

func seedBytes(seed uint64) (b [32]byte) {
	copy(b[:], strconv.AppendUint([]byte("vitrine bench scan "), seed, 10))
	return b
}

// warm reads every file of dir once so that both scanners find the corpus
// in the page cache.
func warm(dir string) error {
	buf := make([]byte, 1<<20)
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			if _, err := f.Read(buf); err != nil {
				return nil
			}
		}
	})
}

// scanGen generates the benchmark's rules and corpus.
type scanGen struct {
	r       *rand.Rand
	bodySrc []string // .ndb lines
	inst    [][]byte // an instance of each body signature
	target  []int
	hdb     []string
	hsb     []string
	files   int
	planted int
}

// bodies makes n body signatures the way real ones look: mostly long runs
// of fixed bytes, some with ?? or nibbles, {n}, {n-m} or * gaps, or
// alternatives; most for any file, some for PE or ELF files.
func (g *scanGen) bodies(n int) {
	r := g.r
	for i := range n {
		var p strings.Builder
		var in []byte
		fixed := func(k int) {
			for range k {
				c := byte(r.Uint32())
				fmt.Fprintf(&p, "%02x", c)
				in = append(in, c)
			}
		}
		fill := func(k int) {
			for range k {
				in = append(in, byte(r.Uint32()))
			}
		}
		fixed(8 + r.IntN(24))
		switch r.IntN(10) {
		case 0:
			p.WriteString("??")
			fill(1)
			fixed(4 + r.IntN(8))
		case 1:
			k := 2 + r.IntN(30)
			fmt.Fprintf(&p, "{%d}", k)
			fill(k)
			fixed(4 + r.IntN(8))
		case 2:
			lo := r.IntN(16)
			hi := lo + 1 + r.IntN(64)
			fmt.Fprintf(&p, "{%d-%d}", lo, hi)
			fill(lo + r.IntN(hi-lo+1))
			fixed(6 + r.IntN(8))
		case 3:
			p.WriteString("*")
			fill(r.IntN(200))
			fixed(6 + r.IntN(8))
		case 4:
			a, b := byte(r.Uint32()), byte(r.Uint32())
			fmt.Fprintf(&p, "(%02x|%02x)", a, b)
			in = append(in, a)
			fixed(4 + r.IntN(8))
		}
		target := 0
		switch r.IntN(10) {
		case 0:
			target = 1
		case 1:
			target = 6
		}
		g.bodySrc = append(g.bodySrc, fmt.Sprintf("Vitrine.Bench.Body%d:%d:*:%s", i, target, p.String()))
		g.inst = append(g.inst, in)
		g.target = append(g.target, target)
	}
}

// corpus writes files of 4 KiB to 16 MiB (log-uniform sizes) until they
// add up to size: binary files (some PE, some ELF) of random runs, zero
// runs and repeats, and text files; about one binary file in eight has signature
// instances planted in it, and one in twenty is named by a hash
// signature. An existing corpus of the same parameters is reused.
func (g *scanGen) corpus(dir string, size int64) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	r := g.r
	words := strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no out up into do only time can will more some could them other about then like these than")
	var total int64
	buf := make([]byte, 0, 16<<20)
	for total < size {
		n := int(math.Exp(math.Log(4<<10) + r.Float64()*(math.Log(16<<20)-math.Log(4<<10))))
		n = int(min(int64(n), size-total+4096))
		buf = buf[:0]
		kind := r.IntN(10)
		if kind < 2 {
			for len(buf) < n {
				w := words[r.IntN(len(words))]
				if r.IntN(8) == 0 {
					w = strings.ToUpper(w[:1]) + w[1:]
				}
				buf = append(buf, w...)
				buf = append(buf, " \n"[min(1, r.IntN(12))])
			}
			buf = buf[:n]
		} else {
			buf = buf[:n]
			header := buf[:min(n, 1024)]
			clear(header)
			switch kind {
			case 2, 3:
				copy(buf, "MZ\x90\x00\x03\x00\x00\x00\x04\x00")
			case 4:
				copy(buf, "\x7fELF\x02\x01\x01")
			}
			for i := len(header); i < n; {
				k := min(n-i, 64+r.IntN(4096))
				switch r.IntN(4) {
				case 0:
					clear(buf[i : i+k])
				case 1:
					if i >= 4096 {
						copy(buf[i:i+k], buf[i-4096:])
						break
					}
					fallthrough
				default:
					for j := i; j < i+k; j += 8 {
						v := r.Uint64()
						for b := 0; b < 8 && j+b < i+k; b++ {
							buf[j+b] = byte(v >> (8 * b))
						}
					}
				}
				i += k
			}
		}
		name := filepath.Join(dir, fmt.Sprintf("%05d", g.files))
		// Plant detections in binary files: body signatures that apply to
		// the file's type.
		if kind >= 2 && r.IntN(8) == 0 {
			for range 1 + r.IntN(3) {
				k := r.IntN(len(g.inst))
				if t := g.target[k]; t == 1 && kind > 3 || t == 6 && kind != 4 {
					continue
				}
				if in := g.inst[k]; len(in)+2048 < n {
					copy(buf[1024+r.IntN(n-len(in)-2048):], in)
					g.planted++
				}
			}
		}
		if r.IntN(20) == 0 {
			m, h := md5.Sum(buf), sha256.Sum256(buf)
			g.hdb = append(g.hdb, fmt.Sprintf("%x:%d:Vitrine.Bench.MD5.%d", m, n, g.files))
			g.hsb = append(g.hsb, fmt.Sprintf("%x:%d:Vitrine.Bench.SHA256.%d", h, n, g.files))
			g.planted += 2
		}
		if fi, err := os.Stat(name); err != nil || fi.Size() != int64(n) {
			if err := os.WriteFile(name, buf, 0o644); err != nil {
				return 0, err
			}
		}
		total += int64(n)
		g.files++
	}
	return total, nil
}

// hashes fills the hash signatures up to n with random ones for files of
// sizes drawn like the corpus's.
func (g *scanGen) hashes(n int) {
	r := g.r
	for i := 0; len(g.hdb)+len(g.hsb) < n; i++ {
		size := int(math.Exp(math.Log(4<<10) + r.Float64()*(math.Log(16<<20)-math.Log(4<<10))))
		var h [32]byte
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		if i%3 == 2 {
			g.hsb = append(g.hsb, fmt.Sprintf("%x:%d:Vitrine.Bench.SHA256.R%d", h, size, i))
		} else {
			g.hdb = append(g.hdb, fmt.Sprintf("%x:%d:Vitrine.Bench.MD5.R%d", h[:16], size, i))
		}
	}
}

func (g *scanGen) writeRules(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, lines := range map[string][]string{"bench.hdb": g.hdb, "bench.hsb": g.hsb, "bench.ndb": g.bodySrc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
