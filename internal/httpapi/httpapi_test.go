package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDecodeStrictDuplicates: a member named twice is refused at any depth
// and in any case (POST /v1/endpoints once read {"country":"DE",
// "country":"RU"} as RU, and issued a Moscow token).
func TestDecodeStrictDuplicates(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type doc struct {
		Country string  `json:"country"`
		List    []inner `json:"list"`
		In      *inner  `json:"in"`
	}
	for _, tc := range []struct {
		in   string
		ok   bool
		want string // for ok: the country read
	}{
		{`{"country":"DE"}`, true, "DE"},
		{`{"country":"DE","list":[{"a":"x"},{"a":"y"}],"in":{"a":"z"}}`, true, "DE"},
		{`{"list":[],"country":"DE","in":null}`, true, "DE"},
		{`{"country":"DE","country":"RU"}`, false, ""},
		{`{"country":"DE","Country":"RU"}`, false, ""},
		{`{"country":"DE","COUNTRY":"RU"}`, false, ""},
		{`{"country":"DE","ſountry":"RU"}`, true, "DE"}, // unknown field: refused below, not as a duplicate
		{`{"in":{"a":"x","a":"y"}}`, false, ""},
		{`{"list":[{"a":"x","A":"y"}]}`, false, ""},
		{`{"country":"DE"} {"country":"RU"}`, false, ""},
		{`{"country":`, false, ""},
	} {
		var d doc
		err := DecodeStrict([]byte(tc.in), &d)
		if strings.Contains(tc.in, "ſ") {
			// encoding/json folds ſ to s, but "ſountry" differs from
			// "country" in its first letter: an unknown field.
			if err == nil {
				t.Errorf("DecodeStrict(%s) = nil, want an error", tc.in)
			}
			continue
		}
		if (err == nil) != tc.ok || (tc.ok && d.Country != tc.want) {
			t.Errorf("DecodeStrict(%s) = %v, country %q; want ok=%v country %q", tc.in, err, d.Country, tc.ok, tc.want)
		}
		if !tc.ok && err != nil && strings.Contains(tc.in, `"RU"`) && strings.Count(tc.in, "{") == 1 && !strings.Contains(err.Error(), "twice") && !strings.Contains(tc.in, "} {") {
			t.Errorf("DecodeStrict(%s) = %v, want it to name the member named twice", tc.in, err)
		}
	}
}

// FuzzDecodeStrict: never a panic; what DecodeStrict accepts,
// encoding/json reads the same way, and it holds no object with a member
// named twice.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{`{"country":"DE"}`, `{"country":"DE","country":"RU"}`, `{"a":{"b":[1,{"c":2,"C":3}]}}`, `[{"x":1},{"x":1}]`, `"s"`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if err := DecodeStrict(b, &v); err != nil {
			return
		}
		var w any
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatalf("DecodeStrict accepted %q, which encoding/json refuses: %v", b, err)
		}
		if err := noDuplicateNames(b); err != nil {
			t.Fatalf("accepted %q with %v", b, err)
		}
	})
}
