package access

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// hexID returns prefix and 64 hex digits made of c.
func hexID(prefix string, c byte) string { return prefix + strings.Repeat(string(c), 64) }

// testRecord returns a granted read, the example record of docs/architecture.md
// ("Access records") without its keys.
func testRecord() *Record {
	return &Record{
		Time:          time.Date(2026, 11, 22, 10, 0, 0, 123_000_000, time.UTC),
		Region:        "zurich",
		Principal:     Principal{ID: "analyst:jdoe", Role: "analyst", Location: "CH"},
		Action:        "read",
		Resource:      Resource{Dataset: "telemetry", Query: "sha256=275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f", Count: 17, Digest: Digest([]int64{1, 2, 3})},
		Justification: Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1234"},
		Subjects:      []string{hexID(subjectPrefix, '1'), hexID(subjectPrefix, 'a')},
		Request:       "req-0001",
		Outcome:       "granted",
	}
}

// vectors are the valid records of testdata/valid.jsonl, one a line.
var vectors = []struct {
	name   string
	record func() *Record
}{
	{"design-example", testRecord},
	{"with-keys", func() *Record {
		r := testRecord()
		r.Action = "export"
		r.Keys = []string{hexID(digestPrefix, '0'), hexID(digestPrefix, 'f')}
		return r
	}},
	{"no-subjects", func() *Record {
		r := testRecord()
		r.Action, r.Subjects = "process", []string{}
		r.Principal = Principal{ID: "processor:verdicts", Role: "processor", Location: "CH"}
		r.Justification = Justification{Code: "AUTOMATED_PROCESSING", Detail: "hourly verdict aggregation"}
		return r
	}},
	{"denied-unauthenticated", func() *Record {
		return &Record{
			Time:     time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
			Region:   "moscow",
			Action:   "denied",
			Resource: Resource{Dataset: "telemetry", Digest: Digest(nil)},
			Subjects: []string{},
			Request:  "req-0002",
			Outcome:  "denied",
			Reason:   "no credential",
		}
	}},
	{"denied-justification", func() *Record {
		r := testRecord()
		r.Action, r.Outcome = "denied", "denied"
		r.Resource.Count, r.Resource.Digest = 0, Digest(nil)
		r.Justification = Justification{}
		r.Subjects = []string{}
		r.Reason = `unknown justification code "PLEASE"`
		return r
	}},
	{"escapes-and-unicode", func() *Record {
		r := testRecord()
		r.Action = "relocate"
		r.Resource.Query = `path="C:\Users\jdoe" ü ☃ 😀 ` + "\u2028"
		r.Justification = Justification{Code: "RELOCATION", Detail: "policy v7: CH → zurich"}
		return r
	}},
	{"limits", func() *Record {
		r := testRecord()
		r.Time = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
		r.Region = "a" + strings.Repeat("z", 31)
		r.Action = "delete"
		r.Resource.Count = 1<<63 - 1
		r.Justification = Justification{Code: "SUPERVISOR_REVIEW", Detail: strings.Repeat("x", 256)}
		return r
	}},
	{"epoch", func() *Record {
		r := testRecord()
		r.Time = time.Unix(0, 0)
		r.Resource.Count, r.Resource.Digest = 0, Digest(nil)
		return r
	}},
}

// TestVectors checks that the records encode to the bytes in
// testdata/valid.jsonl and parse back to themselves. With -update it
// rewrites the file, always to the same bytes.
func TestVectors(t *testing.T) {
	names, recs := make([]string, len(vectors)), make([]*Record, len(vectors))
	for i, v := range vectors {
		names[i], recs[i] = v.name, v.record()
	}
	lines := golden(t, "testdata/valid.jsonl", marshalAll(t, names, recs))
	for i, v := range vectors {
		got, err := Parse(lines[i])
		if err != nil {
			t.Errorf("%s: Parse: %v", v.name, err)
			continue
		}
		want := v.record()
		want.Time = want.Time.UTC()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Parse = %+v, want %+v", v.name, got, want)
		}
	}
}

// readVectors returns the lines of testdata/valid.jsonl.
func readVectors() ([][]byte, error) {
	b, err := os.ReadFile("testdata/valid.jsonl")
	if err != nil {
		return nil, err
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")), nil
}
