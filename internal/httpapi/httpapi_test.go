package httpapi

import (
	"encoding/json"
	"reflect"
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
		in      string
		country string // the country read; "" means refused
		errText string // for a refusal: what its error must say
	}{
		{`{"country":"DE"}`, "DE", ""},
		{`{"country":"DE","list":[{"a":"x"},{"a":"y"}],"in":{"a":"z"}}`, "DE", ""},
		{`{"list":[],"country":"DE","in":null}`, "DE", ""},
		{`{"country":"DE","country":"RU"}`, "", "twice"},
		{`{"country":"DE","Country":"RU"}`, "", "twice"},
		{`{"country":"DE","COUNTRY":"RU"}`, "", "twice"},
		// encoding/json folds ſ to s, but "ſountry" differs from
		// "country" in its first letter: an unknown member.
		{`{"country":"DE","ſountry":"RU"}`, "", "unknown field"},
		{`{"in":{"a":"x","a":"y"}}`, "", "twice"},
		{`{"list":[{"a":"x","A":"y"}]}`, "", "twice"},
		{`{"country":"DE"} {"country":"RU"}`, "", "trailing data"},
		{`{"country":`, "", "EOF"},
	} {
		var d doc
		err := DecodeStrict([]byte(tc.in), &d)
		switch {
		case tc.country != "" && (err != nil || d.Country != tc.country):
			t.Errorf("DecodeStrict(%s) = %v, country %q; want country %q", tc.in, err, d.Country, tc.country)
		case tc.country == "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
			t.Errorf("DecodeStrict(%s) = %v, want an error saying %q", tc.in, err, tc.errText)
		}
	}
}

// FuzzDecodeStrict: never a panic, and what DecodeStrict accepts
// encoding/json reads to the same value. (That duplicates are refused is
// TestDecodeStrictDuplicates': a second walk of the tokens here would be
// the same code checking itself.)
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
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("DecodeStrict read %q as %v, encoding/json as %v", b, v, w)
		}
	})
}
