package clamav

import (
	"slices"
	"strings"
	"testing"
)

func TestFound(t *testing.T) {
	out := `/tmp/x/eicar.com: Test.EICAR-MD5.UNOFFICIAL FOUND
/tmp/x/eicar.com: Test.EICAR-Body.UNOFFICIAL FOUND
/tmp/x/a: b.txt: Sig.A FOUND
/tmp/x/eicar.com: Test.EICAR-MD5.UNOFFICIAL FOUND
/tmp/x/ok.txt: OK
LibClamAV Warning: something
/tmp/x/nocolon FOUND
`
	got, err := Found(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/tmp/x/a: b.txt: Sig.A",
		"/tmp/x/eicar.com: Test.EICAR-Body",
		"/tmp/x/eicar.com: Test.EICAR-MD5",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Found = %q, want %q", got, want)
	}
	if got, err := Found(strings.NewReader(strings.Repeat("x", 70<<10) + " FOUND\n")); err == nil {
		t.Errorf("Found of a 70 KiB line = %q, want an error", got)
	}
}

// FuzzFound: any output gives sorted, unique "path: signature" lines, one
// for each line of it that ends in " FOUND" and names a signature.
func FuzzFound(f *testing.F) {
	f.Add("/a: X.UNOFFICIAL FOUND\n/b: Y FOUND\n")
	f.Add(": FOUND\n\n FOUND")
	f.Fuzz(func(t *testing.T, out string) {
		got, err := Found(strings.NewReader(out))
		if err != nil {
			return // a line over the scanner's limit
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("Found = %q: not sorted and unique", got)
		}
		if n := strings.Count(out, " FOUND"); len(got) > n {
			t.Fatalf("Found = %q: %d detections from %d FOUND lines", got, len(got), n)
		}
		for _, g := range got {
			if !strings.Contains(g, ": ") || strings.Contains(g, "\n") {
				t.Fatalf("Found gave %q", g)
			}
		}
	})
}
