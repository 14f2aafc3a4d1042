package access

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateRejects(t *testing.T) {
	denied := func(r *Record) {
		r.Action, r.Outcome = "denied", "denied"
		r.Resource.Count, r.Resource.Digest = 0, Digest(nil)
	}
	for _, tc := range []struct {
		name   string
		change func(*Record)
		want   string
	}{
		{"zero time", func(r *Record) { r.Time = time.Time{} }, "time is zero"},
		{"time before 1970", func(r *Record) { r.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }, "not in the years 1970 to 9999"},
		{"time after 9999", func(r *Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "not in the years"},
		{"empty region", func(r *Record) { r.Region = "" }, "region is empty"},
		{"bad region", func(r *Record) { r.Region = "Zurich" }, `region "Zurich" is not a region name`},
		{"unknown action", func(r *Record) { r.Action = "peek" }, `action "peek" is not one of read, export, delete, process, relocate, denied`},
		{"unknown outcome", func(r *Record) { r.Outcome = "ok" }, `outcome "ok" is not`},
		{"denied outcome for read", func(r *Record) { r.Outcome = "denied" }, `outcome "denied" does not go with action "read"`},
		{"granted outcome for denied", func(r *Record) { denied(r); r.Outcome = "granted" }, `outcome "granted" does not go with action "denied"`},
		{"no principal for granted", func(r *Record) { r.Principal = Principal{} }, "principal id is empty; only a denied attempt"},
		{"role without id", func(r *Record) { denied(r); r.Principal.ID = "" }, "role or location but no id"},
		{"no role", func(r *Record) { r.Principal.Role = "" }, "has no role"},
		{"bad location", func(r *Record) { r.Principal.Location = "XX" }, `principal location "XX" is not an ISO 3166-1`},
		{"control in id", func(r *Record) { r.Principal.ID = "analyst:j\ndoe" }, "principal id"},
		{"C1 control in query", func(r *Record) { r.Resource.Query = "a\u0085b" }, "control character U+0085"},
		{"DEL in dataset", func(r *Record) { r.Resource.Dataset = "tele\x7f" }, "control character U+007F"},
		{"invalid UTF-8", func(r *Record) { r.Resource.Query = "\xff" }, "not valid UTF-8"},
		{"empty dataset", func(r *Record) { r.Resource.Dataset = "" }, "resource dataset is empty"},
		{"negative count", func(r *Record) { r.Resource.Count = -1 }, "negative"},
		{"bad digest", func(r *Record) { r.Resource.Digest = "sha256:ABC" }, "resource digest"},
		{"upper-case digest", func(r *Record) { r.Resource.Digest = hexID(digestPrefix, 'A') }, "resource digest"},
		{"empty digest", func(r *Record) { r.Resource.Digest = "" }, "resource digest"},
		{"denied with count", func(r *Record) { denied(r); r.Resource.Count = 1 }, "a denied attempt releases nothing"},
		{"denied with digest", func(r *Record) { denied(r); r.Resource.Digest = Digest([]int64{1}) }, "a denied attempt releases nothing"},
		{"no justification", func(r *Record) { r.Justification = Justification{} }, "justification is missing"},
		{"detail without code", func(r *Record) { denied(r); r.Justification.Code = "" }, "detail but no code"},
		{"unknown code", func(r *Record) { r.Justification.Code = "BECAUSE" }, `justification code "BECAUSE" is not one of CUSTOMER_INITIATED_SUPPORT,`},
		{"empty detail", func(r *Record) { r.Justification.Detail = "" }, "justification detail is empty"},
		{"long detail", func(r *Record) { r.Justification.Detail = strings.Repeat("x", 257) }, "257 bytes, more than 256"},
		{"untrimmed detail", func(r *Record) { r.Justification.Detail = " case" }, "white space"},
		{"tab in detail", func(r *Record) { r.Justification.Detail = "a\tb" }, "control character U+0009"},
		{"bad subject", func(r *Record) { r.Subjects = []string{"ep_aaaa"} }, `subject "ep_aaaa" is not "hmac-sha256:"`},
		{"clear subject", func(r *Record) { r.Subjects = []string{hexID(digestPrefix, 'a')} }, "subject"},
		{"duplicate subject", func(r *Record) { r.Subjects = []string{r.Subjects[0], r.Subjects[1], r.Subjects[0]} }, "listed twice"},
		{"empty request", func(r *Record) { r.Request = "" }, "request id is empty"},
		{"bad key", func(r *Record) { r.Keys = []string{"sha256:00"} }, `key "sha256:00"`},
		{"duplicate key", func(r *Record) { r.Keys = []string{hexID(digestPrefix, '1'), hexID(digestPrefix, '1')} }, "listed twice"},
		{"denied with keys", func(r *Record) { denied(r); r.Keys = []string{hexID(digestPrefix, '1')} }, "unwraps no data keys"},
		{"granted with reason", func(r *Record) { r.Reason = "why not" }, "only a denied attempt has one"},
		{"control in reason", func(r *Record) { denied(r); r.Reason = "a\x00" }, "reason"},
		{"too large", func(r *Record) {
			r.Subjects = nil
			for i := range 1000 {
				r.Subjects = append(r.Subjects, subjectPrefix+strings.Repeat("0", 60)+string("0123456789abcdef"[i/256%16])+string("0123456789abcdef"[i/16%16])+string("0123456789abcdef"[i%16])+"0")
			}
		}, "more than 65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testRecord()
			if err := r.Validate(); err != nil {
				t.Fatalf("base record: %v", err)
			}
			tc.change(r)
			err := r.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "invalid access record: ") {
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.want)
			}
			if b, err := r.Marshal(); err == nil || b != nil {
				t.Errorf("Marshal() = %q, %v; want no bytes and an error", b, err)
			}
		})
	}
}

func TestMarshalSortsWithoutChanging(t *testing.T) {
	r := testRecord()
	r.Subjects = []string{hexID(subjectPrefix, 'f'), hexID(subjectPrefix, '0'), hexID(subjectPrefix, '7')}
	r.Keys = []string{hexID(digestPrefix, '9'), hexID(digestPrefix, '2')}
	before := slices.Clone(r.Subjects)
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Subjects, before) {
		t.Errorf("Marshal changed Subjects to %v", r.Subjects)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{before[1], before[2], before[0]}; !slices.Equal(got.Subjects, want) {
		t.Errorf("subjects = %v, want %v", got.Subjects, want)
	}
	if want := []string{r.Keys[1], r.Keys[0]}; !slices.Equal(got.Keys, want) {
		t.Errorf("keys = %v, want %v", got.Keys, want)
	}
}

func TestMarshalTime(t *testing.T) {
	r := testRecord()
	zone := time.FixedZone("UTC+3", 3*3600)
	r.Time = time.Date(2026, 11, 22, 13, 0, 0, 123_999_999, zone)
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"time":"2026-11-22T10:00:00.123Z"`)) {
		t.Errorf("Marshal() = %s, want the time in UTC truncated to the millisecond", b)
	}
}

func TestMarshalNilSubjects(t *testing.T) {
	r := testRecord()
	r.Subjects = nil
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"subjects":[]`)) {
		t.Errorf("Marshal() = %s, want \"subjects\":[]", b)
	}
}
