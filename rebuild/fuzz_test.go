package rebuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParseVerdict checks that ParseVerdict never crashes, and that a
// verdict it accepts survives signing and parsing again unchanged, with
// the same statement bytes.
func FuzzParseVerdict(f *testing.F) {
	for _, name := range []string{"reproduced.json", "differ.json", "failed.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`))
	k := newSeedSigner("fuzz")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVerdict(b)
		if err != nil {
			return
		}
		st, err := Statement(v.Subjects, &v.Predicate)
		if err != nil {
			t.Fatalf("an accepted verdict does not make a statement: %v", err)
		}
		env, err := Sign(ctx, k, v.Subjects, &v.Predicate)
		if err != nil {
			t.Fatalf("an accepted verdict does not sign: %v", err)
		}
		w, err := VerifyVerdict(ctx, env, k.pub())
		if err != nil {
			t.Fatalf("a re-signed verdict does not verify: %v", err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("round trip changed the verdict:\n got %+v\nwant %+v", w, v)
		}
		st2, err := Statement(w.Subjects, &w.Predicate)
		if err != nil || !bytes.Equal(st, st2) {
			t.Fatalf("round trip changed the statement:\n%s\n%s (%v)", st, st2, err)
		}
	})
}
