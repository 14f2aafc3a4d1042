package custody

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
)

func FuzzParsePublicKey(f *testing.F) {
	s := testPublicKey(f, "zurich").String()
	f.Add(s)
	f.Add(testPublicKey(f, "moscow").String())
	f.Add(s + "\n")
	f.Add(s[:len(s)-4])
	f.Add("vitrine-region-key v1 zurich AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParsePublicKey(in)
		if err != nil {
			return
		}
		// Exactly one text per key.
		if got := k.String(); got != in {
			t.Fatalf("ParsePublicKey(%q).String() = %q", in, got)
		}
		if _, err := k.Wrap(make([]byte, DataKeySize)); err != nil {
			t.Fatalf("a parsed key does not wrap: %v", err)
		}
	})
}

func FuzzParseUnwrapRequest(f *testing.F) {
	good, _ := json.Marshal(&UnwrapRequest{
		Region: "zurich",
		Entry:  record("zurich", "read", "granted", [][]byte{[]byte("k")}),
		Proof:  []byte("c2sp.org/tlog-proof@v1\nindex 0\n\nvitrine.test/access-zurich\n1\nAAAA\n"),
		Keys:   [][]byte{[]byte("k"), nil},
	})
	f.Add(good)
	f.Add([]byte(`{"region":"moscow","keys":["AA=="],"rewrap_for":"zurich"}`))
	f.Add([]byte(`{"region":"zurich","keys":[null],"entry":null,"proof":""}`))
	f.Add([]byte(`{"Region":"zurich","KEYS":["AA=="]}`))
	f.Add([]byte(`{"region":"zurich","keys":["AA=="]} {}`))
	f.Add([]byte(`{"region":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseUnwrapRequest(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if req.Region == "" || len(req.Keys) == 0 || len(req.Keys) > MaxKeys {
			t.Fatalf("accepted a request without the required shape: %+v", req)
		}
		// What the client sends for req, the server reads back as req.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseUnwrapRequest(b)
		if err != nil {
			t.Fatalf("re-encoded request %s does not parse: %v", b, err)
		}
		if !reflect.DeepEqual(req, again) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, again)
		}
	})
}

// FuzzParseAccess checks the access-record parser against encoding/json:
// whatever it accepts, encoding/json reads the same fields from.
func FuzzParseAccess(f *testing.F) {
	entry := record("zurich", "read", "granted", [][]byte{[]byte("a")})
	f.Add(entry)
	f.Add([]byte(`{"v":1,"kind":"access","region":"zurich","action":"read","outcome":"granted","keys":[]}`))
	f.Add([]byte(`{"v":1,"kind":"access","region":"zurich","action":"read","outcome":"denied","outcome":"granted","keys":[]}`))
	f.Add([]byte(`{"v":1,"kind":"access","region":"z\u00fcrich","action":"read","Outcome":"granted","keys":[null]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := parseAccess(in)
		if err != nil {
			return
		}
		var std struct {
			V       json.RawMessage `json:"v"`
			Kind    string          `json:"kind"`
			Region  string          `json:"region"`
			Action  string          `json:"action"`
			Outcome string          `json:"outcome"`
			Keys    []string        `json:"keys"`
		}
		if err := json.Unmarshal(in, &std); err != nil {
			t.Fatalf("parseAccess accepted what encoding/json rejects: %v", err)
		}
		if string(std.V) != a.v || std.Kind != a.kind || std.Region != a.region || std.Action != a.action ||
			std.Outcome != a.outcome || !slices.Equal(std.Keys, a.keys) {
			t.Fatalf("parseAccess = %+v, encoding/json = %+v", *a, std)
		}
	})
}
