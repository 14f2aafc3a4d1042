package access

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testGrant returns the grant of the type's documentation.
func testGrant() *Grant {
	return &Grant{
		Time:      time.Date(2026, 11, 22, 10, 0, 0, 123_000_000, time.UTC),
		Region:    "zurich",
		Action:    GrantAction,
		Principal: Principal{ID: "analyst:jdoe", Role: "analyst", Location: "CH"},
		Regions:   []string{"moscow", "zurich"},
		Token:     hexID(digestPrefix, 'a'),
		Expires:   time.Date(2027, 11, 22, 10, 0, 0, 123_000_000, time.UTC),
	}
}

// grantVectors are the grants of testdata/grants.jsonl, one a line.
var grantVectors = []struct {
	name  string
	grant func() *Grant
}{
	{"design-example", testGrant},
	{"revoke", func() *Grant {
		g := testGrant()
		g.Time, g.Action = time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC), RevokeAction
		return g
	}},
	{"no-expiry", func() *Grant {
		g := testGrant()
		g.Region, g.Regions, g.Expires = "moscow", []string{"moscow"}, time.Time{}
		g.Principal = Principal{ID: "supervisor:sv", Role: "supervisor", Location: "DE"}
		return g
	}},
	{"revoke-after-expiry", func() *Grant {
		// A revocation repeats the expiry of the grant it ends, which
		// may be past.
		g := testGrant()
		g.Action, g.Time = RevokeAction, time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
		return g
	}},
	{"unsorted-regions-and-zone", func() *Grant {
		g := testGrant()
		g.Time = time.Date(2026, 11, 22, 11, 0, 0, 123_456_789, time.FixedZone("CET", 3600))
		g.Regions = []string{"zurich", "a-1", "moscow"}
		return g
	}},
	{"escapes-and-unicode", func() *Grant {
		g := testGrant()
		g.Principal = Principal{ID: `analyst:"jdoe" \ ü ☃ 😀`, Role: "analyst", Location: "CH"}
		return g
	}},
	{"limits", func() *Grant {
		g := testGrant()
		g.Time = time.Unix(0, 0)
		g.Expires = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
		g.Region = "a" + strings.Repeat("z", 31)
		g.Regions = []string{g.Region}
		return g
	}},
}

// wantGrant is what ParseGrant reads from the encoding of g.
func wantGrant(g *Grant) *Grant {
	w := *g
	w.Time = w.Time.UTC().Truncate(time.Millisecond)
	if !w.Expires.IsZero() {
		w.Expires = w.Expires.UTC().Truncate(time.Millisecond)
	}
	w.Regions = slices.Sorted(slices.Values(w.Regions))
	return &w
}

// TestGrantVectors checks that the grants encode to the bytes in
// testdata/grants.jsonl and parse back to themselves. With -update it
// rewrites the file, always to the same bytes.
func TestGrantVectors(t *testing.T) {
	names, grants := make([]string, len(grantVectors)), make([]*Grant, len(grantVectors))
	for i, v := range grantVectors {
		names[i], grants[i] = v.name, v.grant()
	}
	for i, line := range golden(t, grantsFile, marshalAll(t, names, grants)) {
		v := grantVectors[i]
		got, err := ParseGrant(line)
		if err != nil {
			t.Errorf("%s: ParseGrant: %v", v.name, err)
			continue
		}
		if want := wantGrant(v.grant()); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ParseGrant = %+v, want %+v", v.name, got, want)
		}
		checkKind(t, v.name, KindGrant, line)
	}
}

const grantsFile = "testdata/grants.jsonl"

// invalidGrants are changes to the first line of testdata/grants.jsonl
// that ParseGrant must reject, with a part of the error. They also seed
// FuzzParseGrant.
var invalidGrants = []struct {
	name, old, new, want string
}{
	{"empty", "*", "", "unexpected end of input"},
	{"not an object", "*", "[]", "got an array"},
	{"truncated", `.123Z"}`, `.123Z"`, "unexpected end of input"},
	{"trailing data", `.123Z"}`, `.123Z"}{}`, "data after the grant"},
	{"trailing newline", `.123Z"}`, ".123Z\"}\n", "not in canonical form"},
	{"white space", `"v":1,`, `"v": 1,`, "not in canonical form"},
	{"unknown key", `"token":`, `"extra":1,"token":`, `unknown key "extra"`},
	{"unknown principal key", `"location":"CH"`, `"location":"CH","email":"x"`, `unknown key "principal.email"`},
	{"missing key", `,"action":"grant"`, ``, `key "principal" is where "action" belongs`},
	{"missing token", `,"token":"` + hexID(digestPrefix, 'a') + `"`, ``, `key "expires" is where "token" belongs`},
	{"duplicate key", `"v":1,`, `"v":1,"v":1,`, `key "v" appears twice`},
	{"wrong order", `"v":1,"kind":"grant"`, `"kind":"grant","v":1`, `key "kind" is where "v" belongs`},
	{"wrong version", `"v":1`, `"v":2`, "version 2 is not supported"},
	{"wrong kind", `"kind":"grant"`, `"kind":"access"`, `kind "access" is not "grant"`},
	{"time without millis", `10:00:00.123Z","region"`, `10:00:00Z","region"`, `time "2026-11-22T10:00:00Z" is not UTC with millisecond precision`},
	{"expires with zone", `2027-11-22T10:00:00.123Z`, `2027-11-22T10:00:00.123+00:00`, `expires "2027-11-22T10:00:00.123+00:00" is not UTC`},
	{"expires null", `"expires":"2027-11-22T10:00:00.123Z"`, `"expires":null`, "expires: want a string, got null"},
	{"expires empty", `"2027-11-22T10:00:00.123Z"`, `""`, `expires "" is not UTC`},
	{"expired grant", `2027-11-22T10:00:00.123Z`, `2026-11-22T10:00:00.123Z`, "is not after time"},
	{"unknown action", `"action":"grant"`, `"action":"renew"`, `action "renew" is not "grant" or "revoke"`},
	{"no principal id", `"id":"analyst:jdoe"`, `"id":""`, "principal id is empty"},
	{"no role", `"role":"analyst"`, `"role":""`, "has no role"},
	{"bad location", `"location":"CH"`, `"location":"XX"`, `location "XX" is not`},
	{"regions empty", `"regions":["moscow","zurich"]`, `"regions":[]`, "regions are empty"},
	{"regions null", `"regions":["moscow","zurich"]`, `"regions":null`, "regions: want an array of strings, got null"},
	{"regions unsorted", `"regions":["moscow","zurich"]`, `"regions":["zurich","moscow"]`, `"regions" is not in ascending order`},
	{"region twice", `"regions":["moscow","zurich"]`, `"regions":["moscow","zurich","zurich"]`, `region "zurich" is listed twice`},
	{"region not a name", `"regions":["moscow","zurich"]`, `"regions":["Moscow","zurich"]`, `"Moscow" is not a region name`},
	{"log region not among regions", `"regions":["moscow","zurich"]`, `"regions":["moscow"]`, `region "zurich" is not one of the regions`},
	{"token not a digest", `"token":"sha256:`, `"token":"sha512:`, "is not \"sha256:\" and 64 lower-case hex digits"},
	{"token upper case", `"token":"sha256:a`, `"token":"sha256:A`, "64 lower-case hex digits"},
	{"escaped letter", `"region":"zurich"`, `"region":"\u007aurich"`, "not in canonical form"},
	{"control character", `"id":"analyst:jdoe"`, `"id":"analyst:\u0000jdoe"`, "control character U+0000"},
	{"invalid UTF-8", `"analyst:jdoe"`, "\"analyst:\xffjdoe\"", "UTF-8"},
	{"too large", `"analyst:jdoe"`, `"` + strings.Repeat("j", MaxSize) + `"`, "more than 65535"},
}

func TestParseGrantRejects(t *testing.T) {
	valid := readLines(t, grantsFile)[0]
	for _, tc := range invalidGrants {
		t.Run(tc.name, func(t *testing.T) {
			b := mutate(t, valid, tc.old, tc.new)
			g, err := ParseGrant(b)
			if err == nil {
				t.Fatalf("ParseGrant(%.200s) = %+v, want an error", b, g)
			}
			if g != nil {
				t.Errorf("ParseGrant returned a grant with the error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "parsing grant: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseGrant(%.200s) error = %q, want it to mention %q", b, err, tc.want)
			}
		})
	}
}

func TestGrantMarshalRefuses(t *testing.T) {
	for name, f := range map[string]func(g *Grant){
		"zero time":         func(g *Grant) { g.Time = time.Time{} },
		"before 1970":       func(g *Grant) { g.Time = time.Unix(-1, 0) },
		"expires past 9999": func(g *Grant) { g.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"expires at time":   func(g *Grant) { g.Expires = g.Time.Add(time.Microsecond) },
		"no action":         func(g *Grant) { g.Action = "" },
		"no principal":      func(g *Grant) { g.Principal = Principal{} },
		"no regions":        func(g *Grant) { g.Regions = nil },
		"region twice":      func(g *Grant) { g.Regions = []string{"zurich", "zurich"} },
		"log region absent": func(g *Grant) { g.Region = "bern" },
		"the token itself":  func(g *Grant) { g.Token = "vp1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
		"newline in id":     func(g *Grant) { g.Principal.ID = "analyst:j\ndoe" },
	} {
		g := testGrant()
		f(g)
		if b, err := g.Marshal(); err == nil || !strings.HasPrefix(err.Error(), invalidGrant) {
			t.Errorf("%s: Marshal = %.100s, %v; want an invalid grant error", name, b, err)
		}
	}
	// Marshal sorts a copy: the grant is not changed.
	g := testGrant()
	g.Regions = []string{"zurich", "moscow"}
	if _, err := g.Marshal(); err != nil || !slices.Equal(g.Regions, []string{"zurich", "moscow"}) {
		t.Errorf("Marshal changed the regions to %v or failed: %v", g.Regions, err)
	}
}

func TestGrantCovers(t *testing.T) {
	g := testGrant()
	r := testRecord()
	r.Time = g.Time
	if !g.Covers(r) {
		t.Errorf("a grant does not cover an access of its principal at its own time")
	}
	for name, f := range map[string]func(g *Grant, r *Record){
		"revoked":          func(g *Grant, r *Record) { g.Action = RevokeAction },
		"before the grant": func(g *Grant, r *Record) { r.Time = g.Time.Add(-time.Millisecond) },
		"at expiry":        func(g *Grant, r *Record) { r.Time = g.Expires },
		"other principal":  func(g *Grant, r *Record) { r.Principal.ID = "analyst:eve" },
		"other location":   func(g *Grant, r *Record) { r.Principal.Location = "RU" },
		"other region":     func(g *Grant, r *Record) { g.Region = "moscow" },
		"denied": func(g *Grant, r *Record) {
			r.Action, r.Outcome = "denied", "denied"
		},
	} {
		g, r := testGrant(), testRecord()
		r.Time = g.Time.Add(time.Hour)
		f(g, r)
		if g.Covers(r) {
			t.Errorf("%s: Covers = true", name)
		}
	}
	g.Expires = time.Time{}
	r.Time = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if !g.Covers(r) {
		t.Errorf("a grant without expiry does not cover a later access")
	}
}

// FuzzParseGrant checks that ParseGrant never panics and accepts only
// canonical encodings of valid grants: whatever it accepts must validate,
// marshal back to exactly the input and parse again to the same grant, and
// no other parser of the package accepts it. Seeds are the vectors, the
// invalid changes of the first, an access record and a commitment.
func FuzzParseGrant(f *testing.F) {
	lines := readLines(f, grantsFile)
	for _, l := range lines {
		f.Add(l)
	}
	for _, tc := range invalidGrants {
		if tc.name != "too large" {
			f.Add(mutate(f, lines[0], tc.old, tc.new))
		}
	}
	records, err := readVectors()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(records[0])
	if c, err := os.ReadFile("testdata/commitments.jsonl"); err == nil {
		f.Add(bytes.SplitN(c, []byte("\n"), 2)[0])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonical(t, KindGrant, ParseGrant, b)
	})
}
