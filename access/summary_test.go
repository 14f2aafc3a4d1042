package access

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// summaryVectors are the summaries of testdata/denied-summaries.jsonl, one
// a line.
var summaryVectors = []struct {
	name    string
	summary func() *DeniedSummary
}{
	{"one", func() *DeniedSummary {
		return &DeniedSummary{
			Time: time.Date(2026, 11, 22, 10, 0, 10, 0, time.UTC), Region: "zurich",
			From: time.Date(2026, 11, 22, 10, 0, 0, 123_000_000, time.UTC), To: time.Date(2026, 11, 22, 10, 0, 9, 877_000_000, time.UTC),
			Counts: []DeniedCount{{Action: "read", Reason: "no credential", Network: "203.0.113.0/24", Count: 9431}},
		}
	}},
	{"many", func() *DeniedSummary {
		// In no order: Marshal sorts.
		return &DeniedSummary{
			Time: time.Date(2026, 11, 22, 11, 0, 0, 0, time.FixedZone("CET", 3600)), Region: "moscow",
			From: time.Date(2026, 11, 22, 9, 59, 50, 0, time.UTC), To: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
			Counts: []DeniedCount{
				{Action: "read", Reason: "no credential", Network: "2001:db8:1:2::/64", Count: 3},
				{Action: "delete", Reason: "bad credential", Network: "198.51.100.0/24", Count: 1},
				{Action: "read", Reason: "bad credential", Network: "198.51.100.0/24", Count: 20000},
				{Action: "export", Reason: "no credential", Network: UnknownNetwork, Count: 2},
				{Action: "read", Reason: "no credential", Network: "0.0.0.0/0", Count: 7},
				{Action: "read", Reason: "no credential", Network: "::/0", Count: 8},
				{Action: "read", Reason: "no credential", Network: "198.51.100.0/24", Count: 5},
				{Action: "process", Reason: "no credential", Network: "10.0.0.0/8", Count: 1},
				{Action: "relocate", Reason: "no credential", Network: "192.0.2.1/32", Count: 1},
			},
		}
	}},
	{"escapes-and-unicode", func() *DeniedSummary {
		t := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
		return &DeniedSummary{Time: t, Region: "zurich", From: t, To: t, Counts: []DeniedCount{
			{Action: "read", Reason: `token "vp1.\x" ü ☃ 😀 ` + "\u2028", Network: "192.0.2.0/24", Count: 1},
		}}
	}},
	{"limits", func() *DeniedSummary {
		end := time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
		return &DeniedSummary{Time: end, Region: "a" + strings.Repeat("z", 31), From: time.Unix(0, 0), To: end, Counts: []DeniedCount{
			{Action: "export", Reason: strings.Repeat("x", 256), Network: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", Count: 1<<63 - 1},
		}}
	}},
	{"epoch", func() *DeniedSummary {
		t := time.Unix(0, 0)
		return &DeniedSummary{Time: t, Region: "z", From: t, To: t, Counts: []DeniedCount{{Action: "read", Reason: "x", Network: UnknownNetwork, Count: 1}}}
	}},
}

// wantSummary is what ParseDeniedSummary reads from the encoding of s.
func wantSummary(s *DeniedSummary) *DeniedSummary {
	w := *s
	w.Time = w.Time.UTC().Truncate(time.Millisecond)
	w.From = w.From.UTC().Truncate(time.Millisecond)
	w.To = w.To.UTC().Truncate(time.Millisecond)
	w.Counts = slices.Clone(w.Counts)
	slices.SortFunc(w.Counts, compareCounts)
	return &w
}

// TestDeniedSummaryVectors checks that the summaries encode to the bytes
// in testdata/denied-summaries.jsonl and parse back to themselves. With
// -update it rewrites the file, always to the same bytes.
func TestDeniedSummaryVectors(t *testing.T) {
	names, sums := make([]string, len(summaryVectors)), make([]*DeniedSummary, len(summaryVectors))
	for i, v := range summaryVectors {
		names[i], sums[i] = v.name, v.summary()
	}
	for i, line := range golden(t, summariesFile, marshalAll(t, names, sums)) {
		v := summaryVectors[i]
		got, err := ParseDeniedSummary(line)
		if err != nil {
			t.Errorf("%s: ParseDeniedSummary: %v", v.name, err)
			continue
		}
		if want := wantSummary(v.summary()); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ParseDeniedSummary = %+v, want %+v", v.name, got, want)
		}
		checkKind(t, v.name, KindDeniedSummary, line)
	}
}

const summariesFile = "testdata/denied-summaries.jsonl"

func TestDeniedSummaryTotal(t *testing.T) {
	if n := summaryVectors[1].summary().Total(); n != 20028 {
		t.Errorf("Total = %d, want 20028", n)
	}
}

// invalidSummaries are changes to the first line of
// testdata/denied-summaries.jsonl that ParseDeniedSummary must reject,
// with a part of the error. They also seed FuzzParseDeniedSummary.
var invalidSummaries = []struct {
	name, old, new, want string
}{
	{"empty", "*", "", "unexpected end of input"},
	{"not an object", "*", "[]", "got an array"},
	{"truncated", `}]}`, `}]`, "unexpected end of input"},
	{"trailing data", `}]}`, `}]}{}`, "data after the summary"},
	{"trailing newline", `}]}`, "}]}\n", "not in canonical form"},
	{"white space", `"v":1,`, `"v": 1,`, "not in canonical form"},
	{"unknown key", `"counts":[`, `"extra":1,"counts":[`, `unknown key "extra"`},
	{"unknown count key", `"count":9431}`, `"count":9431,"port":1}`, `unknown key "counts[0].port"`},
	{"missing key", `,"to":"2026-11-22T10:00:09.877Z"`, ``, `key "counts" is where "to" belongs`},
	{"missing count key", `,"network":"203.0.113.0/24"`, ``, `key "counts[0].count" is where "counts[0].network" belongs`},
	{"duplicate key", `"v":1,`, `"v":1,"v":1,`, `key "v" appears twice`},
	{"wrong order", `"v":1,"kind":"denied-summary"`, `"kind":"denied-summary","v":1`, `key "kind" is where "v" belongs`},
	{"wrong version", `"v":1`, `"v":2`, "version 2 is not supported"},
	{"wrong kind", `"kind":"denied-summary"`, `"kind":"access"`, `kind "access" is not "denied-summary"`},
	{"time without millis", `10:00:10.000Z`, `10:00:10Z`, "time \"2026-11-22T10:00:10Z\" is not UTC with millisecond precision"},
	{"from with zone", `10:00:00.123Z`, `10:00:00.123+00:00`, "from \"2026-11-22T10:00:00.123+00:00\" is not UTC"},
	{"to before from", `"to":"2026-11-22T10:00:09.877Z"`, `"to":"2026-11-22T10:00:00.122Z"`, "is before from"},
	{"time before to", `"time":"2026-11-22T10:00:10.000Z"`, `"time":"2026-11-22T10:00:09.876Z"`, "is before to"},
	{"counts not an array", `"counts":[{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":9431}]`, `"counts":{}`, "counts: want an array of objects, got an object"},
	{"counts null", `"counts":[{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":9431}]`, `"counts":null`, "counts: want an array of objects, got null"},
	{"count not an object", `[{"action"`, `[1,{"action"`, "counts[0]: want an object, got a number"},
	{"no counts", `[{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":9431}]`, `[]`, "counts are empty"},
	{"counts unsorted", `"count":9431}]`, `"count":9431},{"action":"export","reason":"x","network":"unknown","count":1}]`, "counts are in ascending order"},
	{"counted twice", `"count":9431}]`, `"count":9431},{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":1}]`, "counted twice"},
	{"action denied", `"action":"read"`, `"action":"denied"`, `action "denied" is not one of read, export, delete, process, relocate`},
	{"empty reason", `"no credential"`, `""`, "reason is 0 bytes"},
	{"reason too long", `"no credential"`, `"` + strings.Repeat("x", 257) + `"`, "reason is 257 bytes"},
	{"reason control", `"no credential"`, `"no\u0000credential"`, "control character U+0000"},
	{"host bits", `"203.0.113.0/24"`, `"203.0.113.7/24"`, `network "203.0.113.7/24" is neither`},
	{"address alone", `"203.0.113.0/24"`, `"203.0.113.0"`, "is neither"},
	{"IPv6 not canonical", `"203.0.113.0/24"`, `"2001:DB8::/64"`, "is neither"},
	{"IPv6 zero run", `"203.0.113.0/24"`, `"2001:db8:0:0:0:0:0:0/64"`, "is neither"},
	{"zone", `"203.0.113.0/24"`, `"fe80::%eth0/64"`, "is neither"},
	{"count zero", `"count":9431`, `"count":0`, "count 0 is not positive"},
	{"count negative", `"count":9431`, `"count":-1`, "count -1 is not positive"},
	{"count float", `"count":9431`, `"count":9431.0`, "not a 64-bit integer"},
	{"count too large", `"count":9431`, `"count":9223372036854775808`, "not a 64-bit integer"},
	{"escaped letter", `"region":"zurich"`, `"region":"\u007aurich"`, "not in canonical form"},
	{"invalid UTF-8", `"zurich"`, "\"zur\xffich\"", "UTF-8"},
	{"too large", `"no credential"`, `"no credential","network":"unknown","count":1},{"action":"read","reason":"` + strings.Repeat("y", MaxSize) + `"`, "more than 65535"},
}

func TestParseDeniedSummaryRejects(t *testing.T) {
	valid := readLines(t, summariesFile)[0]
	for _, tc := range invalidSummaries {
		t.Run(tc.name, func(t *testing.T) {
			b := mutate(t, valid, tc.old, tc.new)
			s, err := ParseDeniedSummary(b)
			if err == nil {
				t.Fatalf("ParseDeniedSummary(%.200s) = %+v, want an error", b, s)
			}
			if s != nil {
				t.Errorf("ParseDeniedSummary returned a summary with the error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "parsing denied summary: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseDeniedSummary(%.200s) error = %q, want it to mention %q", b, err, tc.want)
			}
		})
	}
}

func TestDeniedSummaryMarshalRefuses(t *testing.T) {
	ok := summaryVectors[1].summary
	cases := map[string]func(s *DeniedSummary){
		"zero time":     func(s *DeniedSummary) { s.Time = time.Time{} },
		"zero from":     func(s *DeniedSummary) { s.From = time.Time{} },
		"before 1970":   func(s *DeniedSummary) { s.From = time.Unix(-1, 0) },
		"after 9999":    func(s *DeniedSummary) { s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"to < from":     func(s *DeniedSummary) { s.From = s.To.Add(time.Millisecond) },
		"time < to":     func(s *DeniedSummary) { s.To = s.Time.Add(time.Millisecond) },
		"no region":     func(s *DeniedSummary) { s.Region = "" },
		"no counts":     func(s *DeniedSummary) { s.Counts = nil },
		"duplicate":     func(s *DeniedSummary) { s.Counts = append(s.Counts, s.Counts[3]) },
		"bad action":    func(s *DeniedSummary) { s.Counts[0].Action = "peek" },
		"zero count":    func(s *DeniedSummary) { s.Counts[0].Count = 0 },
		"empty network": func(s *DeniedSummary) { s.Counts[0].Network = "" },
		"newline":       func(s *DeniedSummary) { s.Counts[0].Reason = "no\ncredential" },
		"too large": func(s *DeniedSummary) {
			for i := range 2000 {
				s.Counts = append(s.Counts, DeniedCount{Action: "read", Reason: "no credential", Network: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Count: 1})
			}
		},
	}
	for name, f := range cases {
		s := ok()
		f(s)
		if b, err := s.Marshal(); err == nil || !strings.HasPrefix(err.Error(), invalidDeniedSummary) {
			t.Errorf("%s: Marshal = %.100s, %v; want an invalid summary error", name, b, err)
		}
	}
	// Marshal sorts a copy: the summary is not changed.
	s := ok()
	before := slices.Clone(s.Counts)
	if _, err := s.Marshal(); err != nil || !slices.Equal(s.Counts, before) {
		t.Errorf("Marshal changed the counts or failed: %v", err)
	}
}

// FuzzParseDeniedSummary checks that ParseDeniedSummary never panics and
// accepts only canonical encodings of valid summaries: whatever it accepts
// must validate, marshal back to exactly the input and parse again to the
// same summary, and no other parser of the package accepts it. Seeds are
// the vectors, the invalid changes of the first, an access record and a
// commitment.
func FuzzParseDeniedSummary(f *testing.F) {
	lines := readLines(f, summariesFile)
	for _, l := range lines {
		f.Add(l)
	}
	for _, tc := range invalidSummaries {
		if tc.name != "too large" {
			f.Add(mutate(f, lines[0], tc.old, tc.new))
		}
	}
	records, err := readVectors()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(records[3])
	if c, err := os.ReadFile("testdata/commitments.jsonl"); err == nil {
		f.Add(bytes.SplitN(c, []byte("\n"), 2)[0])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonical(t, KindDeniedSummary, ParseDeniedSummary, b)
	})
}
