package access

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestDigest(t *testing.T) {
	// The expected values are computed here from the bytes the package
	// documentation describes, independently of Digest.
	sum := func(b ...byte) string {
		h := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(h[:])
	}
	for _, tc := range []struct {
		name string
		ids  []int64
		want string
	}{
		{"none", nil, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"empty", []int64{}, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"one", []int64{1}, sum(0, 0, 0, 0, 0, 0, 0, 1)},
		{"sorted", []int64{258, 1}, sum(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2)},
		{"deduplicated", []int64{1, 258, 1, 258}, sum(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2)},
		{"negative first", []int64{0, -1}, sum(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"extremes", []int64{1<<63 - 1, -1 << 63}, sum(0x80, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
	} {
		if got := Digest(tc.ids); got != tc.want {
			t.Errorf("%s: Digest(%v) = %s, want %s", tc.name, tc.ids, got, tc.want)
		}
	}
	ids := []int64{3, 1, 2}
	Digest(ids)
	if ids[0] != 3 || ids[1] != 1 || ids[2] != 2 {
		t.Errorf("Digest reordered its argument: %v", ids)
	}
}
