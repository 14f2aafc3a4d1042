package residency

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParsePolicy checks that ParsePolicy never panics, that every error
// names a line within the input, and that an accepted policy is valid and
// reaches a fixed point: Marshal, parse and Marshal again give the same
// bytes.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(validDoc))
	f.Add(Default().Marshal())
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version": 1, "default": "a", "regions": [{"name": "a", "url": "https://a.example.com/x", "countries": ["DE", "FR"]}, {"name": "b", "countries": ["JP"]}]}`))
	f.Add([]byte(`{"version":1,"default":"a","regions":[{"name":"a","url":"http://[::1]:80","countries":["D\u0045"]}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := ParsePolicy(doc)
		if err != nil {
			if pe, ok := err.(*ParseError); ok {
				if pe.Line < 1 || pe.Line > LineOf(doc, int64(len(doc))) || pe.Column < 1 {
					t.Fatalf("error at line %d column %d of a %d-line document: %v", pe.Line, pe.Column, LineOf(doc, int64(len(doc))), err)
				}
			} else {
				t.Fatalf("error %v is a %T, not a *ParseError", err, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted policy does not validate: %v", err)
		}
		m1 := p.Marshal()
		q, err := ParsePolicy(m1)
		if err != nil {
			t.Fatalf("ParsePolicy(Marshal(p)) = %v\n%s", err, m1)
		}
		if m2 := q.Marshal(); !bytes.Equal(m1, m2) {
			t.Fatalf("Marshal is not a fixed point:\n%s\n%s", m1, m2)
		}
		for _, c := range AllCountries() {
			r1, err1 := p.RegionFor(c)
			r2, err2 := q.RegionFor(c)
			if r1 != r2 || err1 != nil || err2 != nil {
				t.Fatalf("RegionFor(%s): %q, %v before the round trip, %q, %v after", c, r1, err1, r2, err2)
			}
		}
	})
}
