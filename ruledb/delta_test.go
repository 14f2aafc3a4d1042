package ruledb

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestDelta(t *testing.T) {
	base := generate(2000, 300, 3)
	tests := []struct {
		name     string
		old, new []*Source
	}{
		{"1% replaced", base, mutate(base, 0.01, 1)},
		{"half replaced", base, mutate(base, 0.5, 2)},
		{"same", base, base},
		{"from empty", nil, base},
		{"to empty", base, nil},
		{"sample to generated", loadSample(t), base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := mustCompile(t, tt.old, 1), mustCompile(t, tt.new, 2)
			delta, err := Delta(old, new)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ApplyDelta(old, delta)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, new) {
				t.Fatalf("applying the delta gives %d bytes other than the new database", len(got))
			}
			c := Diff(mustOpen(t, old), mustOpen(t, new))
			want := lines(sourceSigs(tt.new))
			if c.Unchanged+len(c.Added) != len(want) {
				t.Errorf("Diff: %d unchanged + %d added, new has %d", c.Unchanged, len(c.Added), len(want))
			}
			if c.Unchanged+len(c.Removed) != len(lines(sourceSigs(tt.old))) {
				t.Errorf("Diff: %d unchanged + %d removed, old has %d", c.Unchanged, len(c.Removed), len(lines(sourceSigs(tt.old))))
			}
			t.Logf("delta %d bytes, new database %d bytes, +%d -%d", len(delta), len(new), len(c.Added), len(c.Removed))
		})
	}
}

func TestDiffLists(t *testing.T) {
	old := parseString(t, "a.ndb", "Keep:0:*:010203\nGone:0:*:030405\n")
	new := parseString(t, "a.ndb", "Keep:0:*:010203\nNew:0:*:050607\n")
	c := Diff(mustOpen(t, mustCompile(t, []*Source{old}, 1)), mustOpen(t, mustCompile(t, []*Source{new}, 2)))
	if len(c.Added) != 1 || c.Added[0].Name != "New" || len(c.Removed) != 1 || c.Removed[0].Name != "Gone" || c.Unchanged != 1 {
		t.Errorf("Diff = %+v", c)
	}
}

func TestApplyDeltaRefuses(t *testing.T) {
	base := generate(40, 10, 4)
	old := mustCompile(t, base, 1)
	new := mustCompile(t, mutate(base, 0.3, 5), 2)
	delta, err := Delta(old, new)
	if err != nil {
		t.Fatal(err)
	}
	// Every corrupted byte is refused, whether or not the trailer is
	// recomputed to match.
	for i := range delta {
		c := bytes.Clone(delta)
		c[i] ^= 0x01
		if _, err := ApplyDelta(old, c); !errors.Is(err, ErrInvalid) {
			t.Fatalf("byte %d flipped: ApplyDelta = %v, want ErrInvalid", i, err)
		}
		if i < len(c)-32 {
			d := sha256.Sum256(c[:len(c)-32])
			copy(c[len(c)-32:], d[:])
			if got, err := ApplyDelta(old, c); err == nil && !bytes.Equal(got, new) {
				// A flip inside an inserted record can make another
				// valid database, but never one that passes as new.
				t.Fatalf("byte %d flipped with digest fixed: ApplyDelta produced a database other than the new one", i)
			}
		}
	}
	for n := range len(delta) {
		if _, err := ApplyDelta(old, delta[:n]); err == nil {
			t.Fatalf("ApplyDelta accepted the first %d bytes of the delta", n)
		}
	}
	if _, err := ApplyDelta(new, delta); !errors.Is(err, ErrInvalid) {
		t.Errorf("ApplyDelta on the wrong base = %v, want ErrInvalid", err)
	}
	if _, err := Delta(new, old); !errors.Is(err, ErrNotNewer) {
		t.Errorf("Delta to an older version = %v, want ErrNotNewer", err)
	}
	bad := bytes.Clone(old)
	bad[60] ^= 1
	if _, err := ApplyDelta(bad, delta); !errors.Is(err, ErrInvalid) {
		t.Errorf("ApplyDelta on a corrupted base = %v, want ErrInvalid", err)
	}
}
