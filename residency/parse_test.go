package residency

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// validDoc is a policy as an operator writes it in a config file.
const validDoc = `{
  "version": 7,
  "default": "moscow",
  "regions": [
    {
      "name": "zurich",
      "url": "https://zurich.example.com",
      "countries": ["DE", "FR", "CH"]
    },
    {"name": "moscow", "url": "https://moscow.example.com"},
    {"name": "tokyo", "countries": ["JP"], "url": ""}
  ]
}
`

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{Version: 7, Default: "moscow", Regions: []Region{
		{Name: "zurich", URL: "https://zurich.example.com", Countries: []string{"DE", "FR", "CH"}},
		{Name: "moscow", URL: "https://moscow.example.com"},
		{Name: "tokyo", Countries: []string{"JP"}},
	}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("ParsePolicy = %+v, want %+v", p, want)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		doc        string
		line, col  int
		wantSubstr string
	}{
		{"unknown top-level key", `{
  "version": 1,
  "defualt": "moscow",
  "regions": [{"name": "moscow"}]
}`, 3, 3, `unknown key "defualt"`},
		{"unknown region key", `{
  "version": 1,
  "default": "moscow",
  "regions": [
    {"name": "moscow",
     "country": ["RU"]}
  ]
}`, 6, 6, `unknown key "country" (a region has name, url and countries)`},
		{"unknown country", `{"version": 1, "default": "moscow", "regions": [
  {"name": "moscow", "countries": [
    "RU",
    "XX"
  ]}
]}`, 4, 5, `region "moscow": unknown country code "XX"`},
		{"reserved country code UK", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "countries": ["UK"]}]}`, 2, 31, `unknown country code "UK"`},
		{"lower-case country", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "countries": ["de"]}]}`, 2, 31, `country code "de" must be upper case ("DE")`},
		{"country twice in one region", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "countries": [
    "DE",
    "FR",
    "DE"]}]}`, 5, 5, `country "DE" is listed twice (first in region "a" on line 3)`},
		{"country in two regions", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "countries": ["DE"]},
  {"name": "b", "countries": ["FR", "DE"]}
]}`, 3, 37, `country "DE" is listed twice (first in region "a" on line 2)`},
		{"unknown default", `{
  "version": 1,
  "default": "mosow",
  "regions": [{"name": "moscow"}]
}`, 3, 14, `default region "mosow" is not one of the policy's regions`},
		{"empty default", `{"version": 1,
"default": "",
"regions": [{"name": "moscow"}]}`, 2, 12, "default region is empty"},
		{"upper-case region name", `{"version": 1, "default": "a",
"regions": [{"name": "a"},
  {"name": "Zurich"}]}`, 3, 12, `region name "Zurich" must be`},
		{"region name starts with a digit", `{"version": 1, "default": "a", "regions": [
{"name": "1a"}]}`, 2, 10, `region name "1a"`},
		{"region name too long", `{"version": 1, "default": "a", "regions": [
{"name": "` + strings.Repeat("a", 33) + `"}]}`, 2, 10, `region name "aaaa`},
		{"region twice", `{"version": 1, "default": "a", "regions": [
  {"name": "a"},
  {"name": "b"},
  {"name": "a"}]}`, 4, 12, `region "a" is listed twice (first on line 2)`},
		{"region without name", `{"version": 1, "default": "a", "regions": [
  {"name": "a"},
  {"url": "https://b.example.com"}]}`, 3, 3, `the region has no "name"`},
		{"ftp url", `{"version": 1, "default": "a", "regions": [
  {"name": "a",
   "url": "ftp://a.example.com"}]}`, 3, 11, `region "a": url "ftp://a.example.com": want an http or https URL`},
		{"relative url", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": "/regions/a"}]}`, 2, 24, "want an http or https URL"},
		{"url with trailing slash", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": "https://a.example.com/"}]}`, 2, 24, "must not end in a slash"},
		{"url with query", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": "https://a.example.com?x=1"}]}`, 2, 24, "must not have a query"},
		{"url with user", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": "https://me@a.example.com"}]}`, 2, 24, "user information"},
		{"version zero", `{
  "version": 0, "default": "a", "regions": [{"name": "a"}]}`, 2, 14, "version must be at least 1"},
		{"negative version", `{
  "version": -1, "default": "a", "regions": [{"name": "a"}]}`, 2, 14, "version -1 is not a whole number"},
		{"fractional version", `{
  "version": 1.0, "default": "a", "regions": [{"name": "a"}]}`, 2, 14, "version 1.0 is not a whole number"},
		{"huge version", `{
  "version": 18446744073709551616, "default": "a", "regions": [{"name": "a"}]}`, 2, 14, "is not a whole number"},
		{"version as string", `{
  "version": "1", "default": "a", "regions": [{"name": "a"}]}`, 2, 14, `"version" must be a number, not a string`},
		{"missing version", `{
  "default": "a", "regions": [{"name": "a"}]}`, 1, 1, `the policy has no "version"`},
		{"missing default", `
  {"version": 1, "regions": [{"name": "a"}]}`, 2, 3, `the policy has no "default"`},
		{"missing regions", `{"version": 1, "default": "a"}`, 1, 1, `the policy has no "regions"`},
		{"no regions", `{"version": 1, "default": "a",
  "regions": []}`, 2, 14, "the policy has no regions"},
		{"regions is an object", `{"version": 1, "default": "a",
  "regions": {"name": "a"}}`, 2, 14, `"regions" must be an array, not an object`},
		{"region is a string", `{"version": 1, "default": "a",
  "regions": ["a"]}`, 2, 15, "a region must be an object, not a string"},
		{"countries is a string", `{"version": 1, "default": "a",
  "regions": [{"name": "a", "countries": "DE"}]}`, 2, 42, `"countries" must be an array, not a string`},
		{"country is a number", `{"version": 1, "default": "a",
  "regions": [{"name": "a", "countries": [49]}]}`, 2, 43, "a country must be a string, not a number"},
		{"null url", `{"version": 1, "default": "a",
  "regions": [{"name": "a", "url": null}]}`, 2, 36, `"url" must be a string, not null`},
		{"null countries", `{"version": 1, "default": "a",
  "regions": [{"name": "a", "countries": null}]}`, 2, 42, `"countries" must be an array, not null`},
		{"repeated key", `{"version": 1,
  "default": "a",
  "regions": [{"name": "a"}],
  "default": "b"}`, 4, 3, `key "default" appears twice in the policy (first on line 2)`},
		{"repeated region key", `{"version": 1, "default": "a", "regions": [
  {"name": "a",
   "name": "b"}]}`, 3, 4, `key "name" appears twice in a region (first on line 2)`},
		{"not an object", `
[{"version": 1}]`, 2, 1, "a policy must be an object, not an array"},
		{"missing comma", `{"version": 1,
  "default": "a"
  "regions": []}`, 3, 3, "invalid character '\"' after object key:value pair"},
		{"trailing comma", `{"version": 1, "default": "a", "regions": [
  {"name": "a"},
]}`, 3, 1, "invalid character ']'"},
		{"unterminated", `{"version": 1, "default": "a", "regions": [
  {"name": "a"}`, 2, 16, "unexpected end of the document"},
		{"trailing data", `{"version": 1, "default": "a", "regions": [{"name": "a"}]}
{}`, 2, 1, "unexpected data after the policy"},
		{"trailing garbage", `{"version": 1, "default": "a", "regions": [{"name": "a"}]} x`, 1, 60, "unexpected data after the policy"},
		{"empty", ``, 1, 1, "unexpected end of the document"},
		{"bad escape in a string", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "countries": ["D\qE"]}]}`, 2, 34, "invalid character 'q' in string escape code"},
		{"control character in a string", "{\"version\": 1, \"default\": \"a\", \"regions\": [\n  {\"name\": \"a\tb\"}]}", 2, 14, "invalid character '\\t' in string literal"},
		{"bad literal", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": nul}]}`, 2, 27, "invalid character '}' in literal null"},
		{"column counts characters", `{"version": 1, "default": "a", "regions": [
  {"name": "a", "url": "", "countries": ["DE"]}], "zürich": 1}`, 2, 51, `unknown key "zürich"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tc.doc))
			if err == nil {
				t.Fatalf("ParsePolicy succeeded: %+v", p)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if pe.Line != tc.line || pe.Column != tc.col {
				t.Errorf("error at line %d column %d, want line %d column %d: %v", pe.Line, pe.Column, tc.line, tc.col, err)
			}
			if LineOf([]byte(tc.doc), pe.Offset) != pe.Line {
				t.Errorf("Offset %d is on line %d, but the error says line %d", pe.Offset, LineOf([]byte(tc.doc), pe.Offset), pe.Line)
			}
			if !strings.Contains(pe.Msg, tc.wantSubstr) {
				t.Errorf("error %q does not contain %q", pe.Msg, tc.wantSubstr)
			}
			if want := "residency policy line "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestParsePolicyTooLarge(t *testing.T) {
	doc := validDoc + strings.Repeat(" ", MaxPolicySize)
	if _, err := ParsePolicy([]byte(doc)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ParsePolicy of %d bytes = %v, want a size error", len(doc), err)
	}
}

// TestParsePolicyAt parses the policy inside a config file, as the
// platform's config loader does, and checks that errors name lines of the
// whole file.
func TestParsePolicyAt(t *testing.T) {
	config := func(policy string) []byte {
		return []byte("{\n  \"listen\": \"127.0.0.1:8080\",\n  \"residency\": " + policy + ",\n  \"data\": \"/var/lib/vitrine\"\n}\n")
	}
	offset := func(doc []byte) int64 {
		return int64(strings.Index(string(doc), `"residency": `) + len(`"residency": `))
	}
	doc := config(strings.TrimSpace(validDoc))
	p, err := ParsePolicyAt(doc, offset(doc))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ParsePolicy([]byte(validDoc))
	if !reflect.DeepEqual(p, want) {
		t.Errorf("ParsePolicyAt = %+v, want %+v", p, want)
	}

	// validDoc's line 8 is the countries of zurich; in the config it is line 10.
	bad := config(strings.Replace(strings.TrimSpace(validDoc), `"CH"`, `"XY"`, 1))
	_, err = ParsePolicyAt(bad, offset(bad))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 10 || pe.Column != 33 || !strings.Contains(pe.Msg, `"XY"`) {
		t.Errorf("ParsePolicyAt error = %v, want line 10 column 33 naming XY", err)
	}
	for _, off := range []int64{-1, int64(len(doc)) + 1} {
		if _, err := ParsePolicyAt(doc, off); err == nil {
			t.Errorf("ParsePolicyAt(doc, %d) succeeded", off)
		}
	}
}

func TestLineOf(t *testing.T) {
	doc := []byte("a\nbc\n\nd")
	for _, tc := range []struct {
		off  int64
		line int
	}{{-5, 1}, {0, 1}, {1, 1}, {2, 2}, {4, 2}, {5, 3}, {6, 4}, {7, 4}, {100, 4}} {
		if got := LineOf(doc, tc.off); got != tc.line {
			t.Errorf("LineOf(%q, %d) = %d, want %d", doc, tc.off, got, tc.line)
		}
	}
	if got := LineOf(nil, 3); got != 1 {
		t.Errorf("LineOf(nil, 3) = %d, want 1", got)
	}
}
