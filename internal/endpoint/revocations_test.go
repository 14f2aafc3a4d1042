package endpoint

import (
	"path/filepath"
	"testing"
	"time"
)

// TestMirror checks that a mirror takes the list its original gives,
// byte for byte, refuses a list that drops a revocation or is not exactly
// such a list, and changes nothing when it refuses.
func TestMirror(t *testing.T) {
	orig, err := OpenRevocations(filepath.Join(t.TempDir(), "revoked.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newID()
	b, _ := newID()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if err := orig.Revoke(a, at); err != nil {
		t.Fatal(err)
	}
	m := Mirror()
	list, err := orig.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Replace(list); err != nil {
		t.Fatal(err)
	}
	if !m.Revoked(a) || m.Revoked(b) {
		t.Fatalf("mirror: %s revoked %v, %s revoked %v", a, m.Revoked(a), b, m.Revoked(b))
	}
	if again, _ := m.MarshalJSON(); string(again) != string(list) {
		t.Errorf("the mirror gives\n%s\nnot the original's\n%s", again, list)
	}
	if err := m.Revoke(b, at); err == nil {
		t.Error("a mirror took a revocation of its own")
	}
	for name, doc := range map[string]string{
		"drops a revocation": `{"version":1,"revoked":[]}`,
		"another version":    `{"version":2,"revoked":[{"id":"` + a + `","time":"2026-12-07T10:00:00Z"}]}`,
		"not an id":          `{"version":1,"revoked":[{"id":"` + a + `","time":"2026-12-07T10:00:00Z"},{"id":"x","time":"2026-12-07T10:00:00Z"}]}`,
		"unknown key":        `{"version":1,"revoked":[{"id":"` + a + `","time":"2026-12-07T10:00:00Z"}],"x":1}`,
		"trailing data":      `{"version":1,"revoked":[{"id":"` + a + `","time":"2026-12-07T10:00:00Z"}]} {}`,
	} {
		if err := m.Replace([]byte(doc)); err == nil {
			t.Errorf("%s: Replace took %s", name, doc)
		}
		if !m.Revoked(a) {
			t.Fatalf("%s: the refused list changed the mirror", name)
		}
	}
	if err := orig.Revoke(b, at); err != nil {
		t.Fatal(err)
	}
	list, _ = orig.MarshalJSON()
	if err := m.Replace(list); err != nil || !m.Revoked(b) {
		t.Fatalf("a longer list: %v; %s revoked %v", err, b, m.Revoked(b))
	}
}

// FuzzReplace checks that Replace never panics and that what it takes
// round-trips.
func FuzzReplace(f *testing.F) {
	f.Add([]byte(`{"version":1,"revoked":[]}`))
	id, _ := newID()
	f.Add([]byte(`{"version":1,"revoked":[{"id":"` + id + `","time":"2026-12-07T10:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := Mirror()
		if err := m.Replace(b); err != nil {
			return
		}
		out, err := m.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		m2 := Mirror()
		if err := m2.Replace(out); err != nil {
			t.Fatalf("the mirror's own list %s is refused: %v", out, err)
		}
		if again, _ := m2.MarshalJSON(); string(again) != string(out) {
			t.Fatalf("round trip: %s != %s", again, out)
		}
	})
}
