package access

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// invalidVectors are changes to the first line of testdata/valid.jsonl
// that Parse must reject, with a part of the error it must give. They also
// seed FuzzParse.
var invalidVectors = []struct {
	name, old, new, want string
}{
	{"empty", "*", "", "unexpected end of input"},
	{"not an object", "*", "[]", "want the record as an object, got an array"},
	{"null", "*", "null", "got null"},
	{"truncated", `"outcome":"granted"}`, `"outcome":"granted"`, "unexpected end of input"},
	{"not JSON", `"v":1`, `"v":1,,`, "invalid JSON"},
	{"trailing data", `"granted"}`, `"granted"}{}`, "data after the record"},
	{"trailing newline", `"granted"}`, "\"granted\"}\n", "not in canonical form"},
	{"white space", `"v":1,`, `"v": 1,`, "not in canonical form: at byte 5"},
	{"unknown key", `"outcome":"granted"`, `"outcome":"granted","extra":1`, `unknown key "extra"`},
	{"unknown nested key", `"location":"CH"`, `"location":"CH","email":"x"`, `unknown key "principal.email"`},
	{"missing key", `,"request":"req-0001"`, ``, `key "outcome" is where "request" belongs`},
	{"missing last key", `,"outcome":"granted"`, ``, `key "outcome" is missing`},
	{"missing nested key", `,"detail":"case 1234"`, ``, `key "justification.detail" is missing`},
	{"duplicate key", `"v":1,`, `"v":1,"v":1,`, `key "v" appears twice`},
	{"duplicate nested key", `"role":"analyst"`, `"role":"analyst","role":"analyst"`, `key "principal.role" appears twice`},
	{"wrong order", `"v":1,"kind":"access"`, `"kind":"access","v":1`, `key "kind" is where "v" belongs; keys must be in the order v, kind, time,`},
	{"optional keys out of order", `"outcome":"granted"}`, `"outcome":"granted","reason":"x","keys":["` + hexID(digestPrefix, '0') + `"]}`, `key "keys" is out of order`},
	{"wrong version", `"v":1`, `"v":2`, "version 2 is not supported"},
	{"version as string", `"v":1`, `"v":"1"`, "v: want a number, got a string"},
	{"version as float", `"v":1`, `"v":1.0`, "v: 1.0 is not a 64-bit integer"},
	{"version exponent", `"v":1`, `"v":1e0`, "not a 64-bit integer"},
	{"wrong kind", `"kind":"access"`, `"kind":"release"`, `kind "release" is not "access"`},
	{"time without millis", `10:00:00.123Z`, `10:00:00Z`, `is not UTC with millisecond precision`},
	{"time with zone", `10:00:00.123Z`, `10:00:00.123+00:00`, `is not UTC with millisecond precision`},
	{"time with micros", `10:00:00.123Z`, `10:00:00.123456Z`, `is not UTC with millisecond precision`},
	{"time as number", `"2026-11-22T10:00:00.123Z"`, `1795341600123`, "time: want a string, got a number"},
	{"principal as string", `{"id":"analyst:jdoe","role":"analyst","location":"CH"}`, `"analyst:jdoe"`, "principal: want an object, got a string"},
	{"count as string", `"count":17`, `"count":"17"`, "resource.count: want a number, got a string"},
	{"count negative", `"count":17`, `"count":-1`, "negative"},
	{"count minus zero", `"count":17`, `"count":-0`, "not in canonical form"},
	{"count too large", `"count":17`, `"count":9223372036854775808`, "not a 64-bit integer"},
	{"count leading zero", `"count":17`, `"count":017`, "invalid JSON"},
	{"subjects null", `"subjects":[`, `"subjects":null,"x":[`, "subjects: want an array of strings, got null"},
	{"subject as number", `"subjects":["`, `"subjects":[1,"`, "subjects[0]: want a string, got a number"},
	{"subjects unsorted", `"subjects":["hmac-sha256:1111111111111111111111111111111111111111111111111111111111111111","hmac-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]`, `"subjects":["hmac-sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","hmac-sha256:1111111111111111111111111111111111111111111111111111111111111111"]`, `"subjects" is not in ascending order`},
	{"subject not a pseudonym", `"hmac-sha256:1111111111111111111111111111111111111111111111111111111111111111"`, `"ep_aebagbafaydqqcikbmga2dqpca"`, `subject "ep_aebagbafaydqqcikbmga2dqpca" is not`},
	{"empty keys", `"outcome":"granted"}`, `"outcome":"granted","keys":[]}`, `"keys" is present but empty`},
	{"empty reason", `"outcome":"granted"}`, `"outcome":"granted","reason":""}`, `"reason" is present but empty`},
	{"reason on granted", `"outcome":"granted"}`, `"outcome":"granted","reason":"x"}`, "only a denied attempt has one"},
	{"escaped letter", `"region":"zurich"`, `"region":"\u007aurich"`, "not in canonical form"},
	{"escaped slash", `"case 1234"`, `"case\/1234"`, "not in canonical form"},
	{"escaped newline", `"case 1234"`, `"case\n1234"`, "control character U+000A"},
	{"escaped NUL", `"case 1234"`, `"case\u00001234"`, "control character U+0000"},
	{"invalid UTF-8", `"case 1234"`, "\"case \xff1234\"", "not valid UTF-8"},
	{"raw control", `"case 1234"`, "\"case \x011234\"", "invalid JSON"},
	{"invalid record", `"action":"read"`, `"action":"denied"`, `invalid access record: outcome "granted" does not go with action "denied"`},
	{"deep nesting", `"v":1`, `"v":` + strings.Repeat("[", 10000), "v: want a number, got an array"},
	{"too large", `"req-0001"`, `"` + strings.Repeat("r", MaxSize) + `"`, "more than 65535"},
}

func TestParseRejects(t *testing.T) {
	valid := validLine(t, 0)
	for _, tc := range invalidVectors {
		t.Run(tc.name, func(t *testing.T) {
			in := mutate(t, valid, tc.old, tc.new)
			r, err := Parse(in)
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error containing %q", in, r, tc.want)
			}
			if r != nil {
				t.Errorf("Parse returned a record with the error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "parsing access record: ") {
				t.Errorf("Parse(%.80q…) = %q, want it to contain %q", in, err, tc.want)
			}
		})
	}
}

// mutate replaces old by new in valid, or all of valid when old is "*".
func mutate(t testing.TB, valid []byte, old, new string) []byte {
	if old == "*" {
		return []byte(new)
	}
	if !bytes.Contains(valid, []byte(old)) {
		t.Fatalf("%q is not in the valid record", old)
	}
	return bytes.Replace(valid, []byte(old), []byte(new), 1)
}

// validLine returns line i of testdata/valid.jsonl.
func validLine(t testing.TB, i int) []byte {
	t.Helper()
	b, err := readVectors()
	if err != nil {
		t.Fatal(err)
	}
	return b[i]
}

func TestParseKeepsOrderOfOptionalKeys(t *testing.T) {
	r := testRecord()
	r.Action, r.Outcome = "denied", "denied"
	r.Resource.Count, r.Resource.Digest = 0, Digest(nil)
	r.Subjects = []string{}
	r.Reason = `said "please" \ twice`
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte(`,"outcome":"denied","reason":"said \"please\" \\ twice"}`)) {
		t.Errorf("Marshal() = %s", b)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != r.Reason {
		t.Errorf("reason = %q, want %q", got.Reason, r.Reason)
	}
}

// TestParseTime: the fast path's reading of a time takes exactly what
// time.Parse takes of the layout and writes back the same, and nothing
// else.
func TestParseTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T10:00:00.123Z", "2028-02-29T23:59:59.999Z", "2026-02-28T00:00:00.000Z", "2026-12-31T12:30:45.001Z",
		"2026-02-29T10:00:00.000Z", "2026-04-31T10:00:00.000Z", "2026-13-01T10:00:00.000Z", "2026-00-10T10:00:00.000Z",
		"2026-11-00T10:00:00.000Z", "2026-11-22T24:00:00.000Z", "2026-11-22T10:60:00.000Z", "2026-11-22T10:00:60.000Z",
		"2026-11-22T10:00:00.12Z", "2026-11-22T10:00:00.1234Z", "2026-11-22T10:00:00Z", "2026-11-22 10:00:00.000Z",
		"+026-11-22T10:00:00.000Z", "2026-1a-22T10:00:00.000Z", "2026-11-22T10:00:00.000+", "", "2026-11-22T10:00:00.000Z ",
	} {
		want, err := time.Parse(timeLayout, s)
		wantOK := err == nil && want.Format(timeLayout) == s
		got, ok := parseTime(s)
		if ok != wantOK || ok && !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; time.Parse gives %v, %v", s, got, ok, want, wantOK)
		}
	}
}
