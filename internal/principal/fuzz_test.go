package principal

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseCreateRequest checks that the body parser never panics and that
// what it accepts is stable: written back as JSON, it parses to the same
// principal.
func FuzzParseCreateRequest(f *testing.F) {
	for _, s := range []string{
		jdoeBody,
		`{"regions":["zurich","moscow"],"location":"CH","role":"analyst","id":"analyst:jdoe"}`,
		`{"id":"analyst:jdoe","id":"x","role":"analyst","location":"CH","regions":["zurich"]}`,
		`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}{}`,
		`{"id":"\u0061nalyst:jdoe","role":"analyst","location":"CH","regions":[1,null,{}]}`,
		`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"x":[[[[]]]]}`,
		`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":"720h"}`,
		`{"expires":"2027-01-31T12:00:00Z","id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`,
		`{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":720}`,
		`[`, ``, `null`, `{"id":"\xff"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseCreateRequest(b)
		if err != nil {
			return
		}
		if p.Regions == nil {
			t.Fatalf("parseCreateRequest(%q) accepted a body without regions", b)
		}
		m := map[string]any{"id": p.ID, "role": p.Role, "location": p.Location, "regions": p.Regions}
		if p.Expires != "" {
			m["expires"] = p.Expires
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		q, err := parseCreateRequest(again)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("parseCreateRequest(%q) = %+v, but its re-encoding %s parses to %+v, %v", b, p, again, q, err)
		}
	})
}

// FuzzAuthenticate checks that Authenticate never panics, that each error
// matches exactly one sentinel and never repeats the token, and that only
// the principal's own token authenticates it.
func FuzzAuthenticate(f *testing.F) {
	r, _ := openTest(f)
	tok := mustCreate(f, r, jdoe())
	for _, s := range []string{
		"Bearer " + tok, "bearer " + tok, "Bearer  " + tok + " ", "Bearer " + tok[:len(tok)-1] + "B",
		"Bearer " + tok + "=", "Basic " + tok, tok, "Bearer", "", "Bearer vp1.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		req, _ := http.NewRequest("GET", "/", nil)
		req.Header["Authorization"] = []string{h}
		p, err := r.Authenticate(req)
		if err == nil {
			if p.ID != "analyst:jdoe" {
				t.Fatalf("Authenticate(%q) = %+v", h, p)
			}
			_, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
			if strings.TrimSpace(rest) != tok {
				t.Fatalf("Authenticate accepted %q, which is not the token", h)
			}
			return
		}
		if errors.Is(err, ErrNoCredential) == errors.Is(err, ErrBadCredential) {
			t.Fatalf("Authenticate(%q) = %v, which must match exactly one sentinel", h, err)
		}
		if strings.Contains(err.Error(), tok[4:]) {
			t.Fatalf("error %q contains the token", err)
		}
	})
}
