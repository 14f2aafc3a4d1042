package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/residency"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// record is a granted access record of zurich's log, as the gateway
// writes it, changed by edit.
func record(t *testing.T, edit func(r *access.Record)) *Event {
	t.Helper()
	return event(t, newRecord(edit))
}

// newRecord is a read by an analyst of zurich, as edit changes it.
func newRecord(edit func(r *access.Record)) *access.Record {
	r := &access.Record{
		Time:          t0,
		Region:        "zurich",
		Principal:     access.Principal{ID: "analyst:jdoe", Role: "analyst", Location: "CH"},
		Action:        "read",
		Resource:      access.Resource{Dataset: "telemetry", Query: "sha256=ab", Count: 3, Digest: access.Digest([]int64{1, 2, 3})},
		Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1"},
		Subjects:      []string{},
		Request:       "req-1",
		Outcome:       "granted",
	}
	if edit != nil {
		edit(r)
	}
	return r
}

func event(t *testing.T, r *access.Record) *Event {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := access.Parse(b); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &Event{Platform: "https://vendor.example", Log: "access-zurich", Kind: "access", Entry: m, Time: r.Time, Home: HomeMap(residency.Default())}
}

func defaults(t *testing.T) *Rules {
	t.Helper()
	rs, err := Compile(DefaultRules())
	if err != nil {
		t.Fatalf("the default rules: %v", err)
	}
	return rs
}

func names(ms []Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Rule.Name)
	}
	return out
}

func TestDefaultRules(t *testing.T) {
	for _, c := range []struct {
		name string
		ev   *Event
		want string // the rules that fire, comma-separated
	}{
		{"a plain read", record(t, nil), ""},
		{"a third party's request", record(t, func(r *access.Record) { r.Justification.Code = "THIRD_PARTY_DATA_REQUEST" }), "third-party-request"},
		{"an export of 1,001 records", record(t, func(r *access.Record) { r.Action, r.Resource.Count = "export", 1001 }), "bulk-export"},
		{"an export of 1,000 records", record(t, func(r *access.Record) { r.Action, r.Resource.Count = "export", 1000 }), ""},
		{"a read of 5,000 records", record(t, func(r *access.Record) { r.Resource.Count = 5000 }), ""},
		{"a read from the US of zurich's data (zurich serves North America)", record(t, func(r *access.Record) { r.Principal.Location = "US" }), ""},
		{"a read from China of zurich's data", record(t, func(r *access.Record) { r.Principal.Location = "CN" }), "cross-border-access"},
		{"a read from Russia of zurich's data", record(t, func(r *access.Record) { r.Principal.Location = "RU" }), "cross-border-access"},
		{"a read from Brazil of moscow's data (the default region)", record(t, func(r *access.Record) { r.Region, r.Principal.Location = "moscow", "BR" }), ""},
		{"a denied attempt from the US", record(t, func(r *access.Record) {
			r.Principal.Location, r.Action, r.Outcome, r.Reason = "US", "denied", "denied", "role"
			r.Resource.Count, r.Resource.Digest = 0, access.Digest(nil)
		}), ""},
		{"a delete", record(t, func(r *access.Record) { r.Principal.Role, r.Action = "operator", "delete" }), "delete-outside-relocation"},
		{"a relocation", record(t, func(r *access.Record) { r.Principal.Role, r.Action = "operator", "relocate" }), ""},
		{"a relocation's delete at the source", record(t, func(r *access.Record) {
			r.Principal.Role, r.Action, r.Justification.Code = "operator", "delete", "RELOCATION"
			r.Resource.Query = "relocation job=r1 country=DE from=zurich to=moscow policy=2 batches=1-4"
		}), ""},
		{"a gateway delete that claims to be a relocation", record(t, func(r *access.Record) {
			r.Principal.Role, r.Action, r.Justification.Code = "operator", "delete", "RELOCATION"
		}), "delete-outside-relocation"},
		{"the first policy", &Event{Log: "policy", Kind: "policy", Entry: map[string]any{"version": 1.0}}, ""},
		{"a new policy", &Event{Log: "policy", Kind: "policy", Entry: map[string]any{"version": 2.0}}, "policy-change"},
	} {
		ms, errs := defaults(t).Eval(c.ev)
		if len(errs) > 0 {
			t.Errorf("%s: %v", c.name, errs)
		}
		if got := strings.Join(names(ms), ","); got != c.want {
			t.Errorf("%s: %q fire, want %q", c.name, got, c.want)
		}
	}
}

// TestBurst: more than 100 reads by one principal within an hour raise
// one alert; another principal's reads and reads more than an hour apart
// do not count together.
func TestBurst(t *testing.T) {
	rs := defaults(t)
	read := func(who string, at time.Time) []Match {
		ms, errs := rs.Eval(record(t, func(r *access.Record) { r.Principal.ID, r.Time = who, at }))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return ms
	}
	for i := range 100 {
		if ms := read("analyst:a", t0.Add(time.Duration(i)*30*time.Second)); len(ms) != 0 {
			t.Fatalf("read %d: %v", i+1, names(ms))
		}
		if ms := read("analyst:b", t0.Add(time.Duration(i)*30*time.Second)); len(ms) != 0 {
			t.Fatalf("b's read %d: %v", i+1, names(ms))
		}
	}
	ms := read("analyst:a", t0.Add(50*time.Minute))
	if len(ms) != 1 || ms[0].Rule.Name != "burst" || ms[0].Count != 101 || ms[0].GroupKey != "analyst:a" {
		t.Fatalf("the 101st read within the hour: %+v, want one burst of 101 by analyst:a", ms)
	}
	if ms := read("analyst:a", t0.Add(51*time.Minute)); len(ms) != 0 {
		t.Errorf("the read after the alert: %v; the window starts again", names(ms))
	}
	// Two platforms' analyst:c are two people; times out of order (one
	// log read after another) still count by time.
	for i := range 60 {
		ev := record(t, func(r *access.Record) {
			r.Principal.ID, r.Time = "analyst:c", t0.Add(5*time.Hour+time.Duration(i)*time.Second)
		})
		ev.Platform = "https://other.example"
		if ms, _ := rs.Eval(ev); len(ms) != 0 {
			t.Fatalf("the other platform's c, read %d: %v", i+1, names(ms))
		}
		if ms := read("analyst:c", t0.Add(5*time.Hour+time.Duration(i)*time.Second)); len(ms) != 0 {
			t.Fatalf("c's read %d: %v", i+1, names(ms))
		}
	}
	for i := range 60 {
		if ms := read("analyst:d", t0.Add(7*time.Hour+time.Duration(i)*time.Second)); len(ms) != 0 {
			t.Fatalf("d's read %d, later: %v", i+1, names(ms))
		}
		if ms := read("analyst:d", t0.Add(6*time.Hour+time.Duration(i)*time.Second)); len(ms) != 0 {
			t.Fatalf("d's read %d, an hour earlier: %v", i+1, names(ms))
		}
	}
	// b's 100 reads end at 49.5 minutes; two hours later they are gone.
	for i := range 100 {
		if ms := read("analyst:b", t0.Add(3*time.Hour+time.Duration(i)*time.Second)); len(ms) != 0 {
			t.Fatalf("b's read %d, hours later: %v", i+1, names(ms))
		}
	}
}

// TestBulkExportByPages: an export of 1,001 records in two pages (the
// gateway answers at most 1,000 records an access) is one bulk export;
// the windows, saved and put back as after a restart, go on counting.
func TestBulkExportByPages(t *testing.T) {
	rs := defaults(t)
	export := func(who string, n int64, at time.Time) []string {
		ms, errs := rs.Eval(record(t, func(r *access.Record) { r.Principal.ID, r.Action, r.Resource.Count, r.Time = who, "export", n, at }))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return names(ms)
	}
	if got := export("analyst:a", 1000, t0); got != nil {
		t.Fatalf("the first page: %v", got)
	}
	if got := export("analyst:b", 1000, t0); got != nil {
		t.Fatalf("another principal's page: %v", got)
	}
	saved, err := rs.Windows()
	if err != nil {
		t.Fatal(err)
	}
	if got := export("analyst:a", 1, t0.Add(time.Minute)); strings.Join(got, ",") != "bulk-export" {
		t.Fatalf("the second page: %v, want bulk-export", got)
	}
	// A restarted monitor (new rules, the saved windows) counts the same.
	rs = defaults(t)
	if err := rs.SetWindows(saved); err != nil {
		t.Fatal(err)
	}
	if got := export("analyst:a", 1, t0.Add(time.Minute)); strings.Join(got, ",") != "bulk-export" {
		t.Fatalf("the second page after a restart: %v, want bulk-export", got)
	}
	// Without them it would not: what SetWindows puts back matters.
	if err := rs.SetWindows(nil); err != nil {
		t.Fatal(err)
	}
	if got := export("analyst:b", 1, t0.Add(time.Minute)); got != nil {
		t.Fatalf("b's second page with emptied windows: %v", got)
	}
	if got := export("analyst:a", 1000, t0.Add(2*time.Hour)); got != nil {
		t.Fatalf("a page two hours later: %v", got)
	}
	if err := rs.SetWindows([]byte("{")); err == nil {
		t.Error("garbled windows were accepted")
	}
}

func TestCompileErrorsNameTheRule(t *testing.T) {
	good := Rule{Name: "x", Severity: "info", When: "kind == 'access'"}
	for _, c := range []struct {
		edit func(r *Rule)
		want string
	}{
		{func(r *Rule) { r.Name = "Bad Name" }, `rule 2 ("Bad Name"): the name`},
		{func(r *Rule) { r.Name = "x" }, `rule 2 ("x"): the name is used twice`},
		{func(r *Rule) { r.Severity = "urgent" }, `rule 2 ("y"): severity "urgent"`},
		{func(r *Rule) { r.When = "" }, `rule 2 ("y"): no condition`},
		{func(r *Rule) { r.When = "kind == " }, `rule 2 ("y"): when: ERROR`},
		{func(r *Rule) { r.When = "kind" }, `rule 2 ("y"): when: the expression is of type string, not bool`},
		{func(r *Rule) { r.When = "nosuchvar == 1" }, `rule 2 ("y"): when: ERROR`},
		{func(r *Rule) { r.Threshold = &Threshold{Count: 0, Window: "1h", GroupBy: "log"} }, `rule 2 ("y"): threshold count 0`},
		{func(r *Rule) { r.Threshold = &Threshold{Count: 1, Window: "1h", GroupBy: "log", Sum: "entry."} }, `rule 2 ("y"): threshold sum`},
		{func(r *Rule) { r.Threshold = &Threshold{Count: 5, Window: "an hour", GroupBy: "log"} }, `rule 2 ("y"): threshold window "an hour"`},
		{func(r *Rule) { r.Threshold = &Threshold{Count: 5, Window: "1h", GroupBy: "index"} }, `rule 2 ("y"): threshold group_by: the expression is of type uint, not string`},
		{func(r *Rule) { r.When = strings.Repeat("true && ", 600) + "true" }, `rule 2 ("y"): when: the expression has`},
	} {
		bad := Rule{Name: "y", Severity: "warning", When: "true"}
		c.edit(&bad)
		_, err := Compile([]Rule{good, bad})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compile(%+v) = %v, want an error containing %q", bad, err, c.want)
		}
	}
}

// TestEvalErrorIsReported: a rule that reads a field an entry lacks is an
// error naming the rule and the entry, not a silent non-match.
func TestEvalErrorIsReported(t *testing.T) {
	rs, err := Compile([]Rule{{Name: "needs-reason", Severity: "info", When: "entry.reason == 'x'"}, {Name: "all", Severity: "info", When: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := record(t, nil)
	ev.Index = 7
	ms, errs := rs.Eval(ev)
	if len(ms) != 1 || ms[0].Rule.Name != "all" {
		t.Errorf("matches %v, want all", names(ms))
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "rule needs-reason on access-zurich entry 7") {
		t.Errorf("errors %v, want one naming needs-reason and entry 7", errs)
	}
}

func TestParseRules(t *testing.T) {
	if _, err := ParseRules([]byte(`{"rules":[{"name":"x","severity":"info","when":"true","whem":"x"}]}`)); err == nil || !strings.Contains(err.Error(), "whem") {
		t.Errorf("a misspelt field: %v", err)
	}
	if _, err := ParseRules([]byte(`{"rules":[]} {}`)); err == nil {
		t.Error("data after the object was taken")
	}
	rs, err := ParseRules(defaultRules)
	if err != nil || len(rs) != 6 {
		t.Errorf("the default rules: %d, %v", len(rs), err)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(defaultRules)
	f.Add([]byte(`{"rules":[{"name":"b","severity":"info","when":"entry.x > 1","threshold":{"count":1,"window":"1s","group_by":"log"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rules, err := ParseRules(b)
		if err != nil {
			return
		}
		rs, err := Compile(rules)
		if err != nil {
			return
		}
		// Whatever compiled evaluates without a panic, within its cost
		// limit, on an entry of each kind.
		rs.Eval(&Event{Kind: "access", Log: "access-zurich", Entry: map[string]any{"action": "read", "x": 2.0}, Time: t0})
		rs.Eval(&Event{Kind: "policy", Log: "policy", Entry: map[string]any{}})
	})
}

// TestRecordView: what rules see of an access record, read from the
// parsed record (recordView), is what encoding/json decodes from its
// entry: field by field, as a whole, and in every way a rule can use it
// (each expression gives the same on both).
func TestRecordView(t *testing.T) {
	e, err := env()
	if err != nil {
		t.Fatal(err)
	}
	exprs := []string{
		`entry.principal.id`, `entry.principal.location in ["CH", "DE"]`, `entry.resource.count > 2`,
		`entry.resource.count`, `entry.justification.code == "THIRD_PARTY_DATA_REQUEST"`, `entry.justification`,
		`entry.time`, `entry.v`, `entry.kind`, `entry.subjects`, `size(entry.subjects)`, `entry.subjects.exists(s, s.startsWith("hmac"))`,
		`has(entry.keys)`, `has(entry.reason)`, `has(entry.principal.id)`, `has(entry.principal.nickname)`, `has(entry.nothing)`,
		`"reason" in entry`, `"principal" in entry`, `"id" in entry.principal`, `size(entry)`, `size(entry.resource)`,
		`entry.principal == {"id": "analyst:jdoe", "role": "analyst", "location": "CH"}`, `entry.resource == entry.resource`,
		`entry == entry`, `entry.map(k, k).size()`, `entry.principal.map(k, k)`, `entry["action"] + "/" + entry["outcome"]`,
		`entry.resource["count"] * 2.0`, `entry.keys`, `entry.reason`, `entry.nothing`, `entry.principal.nickname`,
		`string(entry.request)`, `entry.region == "zurich" && entry.action == "read"`, `dyn(entry).principal.role`,
	}
	for i, edit := range []func(r *access.Record){
		nil,
		func(r *access.Record) {
			r.Keys = []string{"sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("b", 64)}
		},
		func(r *access.Record) {
			r.Action, r.Outcome, r.Reason = "denied", "denied", "role"
			r.Resource.Count, r.Resource.Digest = 0, access.Digest(nil)
		},
		func(r *access.Record) {
			r.Subjects = []string{"hmac-sha256:" + strings.Repeat("c", 64)}
			r.Resource.Count = 1 << 40
		},
		func(r *access.Record) { r.Justification.Detail = "ünïcode \"quoted\" <b>" },
	} {
		r := newRecord(edit)
		entry, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ev := event(t, r) // the entry, decoded by encoding/json
		pe, err := parseEntry("access-zurich", entry, nil)
		if err != nil {
			t.Fatal(err)
		}
		view, ok := pe.obj.(*recordView)
		if pe.record == nil || !ok || !pe.at.Equal(ev.Time) {
			t.Fatalf("record %d: parsed as %#v", i, pe)
		}
		if got := view.whole().Value(); !reflect.DeepEqual(got, ev.Entry) {
			t.Errorf("record %d: the whole object\n%#v\nthe entry decodes to\n%#v", i, got, ev.Entry)
		}
		for _, x := range exprs {
			ast, iss := e.Compile(x)
			if iss.Err() != nil {
				t.Fatalf("%s: %v", x, iss.Err())
			}
			prg, err := e.Program(ast)
			if err != nil {
				t.Fatal(err)
			}
			want, _, werr := prg.Eval(map[string]any{"entry": ev.Entry})
			// A fresh view for each, so that no expression profits from
			// another's whole object.
			pe, _ := parseEntry("access-zurich", entry, nil)
			got, _, gerr := prg.Eval(map[string]any{"entry": pe.obj})
			switch {
			case (werr == nil) != (gerr == nil):
				t.Errorf("record %d, %s: on the view %v (%v), on the decoded entry %v (%v)", i, x, got, gerr, want, werr)
			case werr == nil && want.Equal(got) != types.True && !reflect.DeepEqual(native(t, want), native(t, got)):
				t.Errorf("record %d, %s: on the view %v, on the decoded entry %v", i, x, got, want)
			}
		}
	}
}

// native is a CEL value as JSON-like Go values, for comparing lists of
// keys and the like whose order CEL does not fix.
func native(t *testing.T, v ref.Val) any {
	t.Helper()
	out, err := v.ConvertToNative(reflect.TypeFor[any]())
	if err != nil {
		return v.Value()
	}
	if l, ok := out.([]any); ok {
		s := make([]string, len(l))
		for i, x := range l {
			s[i] = fmt.Sprint(x)
		}
		slices.Sort(s)
		return s
	}
	return out
}

// TestCostLimit: a rule whose worst case the estimate cannot bound is
// stopped at the cost limit as it runs, reported as its error, while
// rules the estimate bounds run unmetered.
func TestCostLimit(t *testing.T) {
	rs, err := Compile([]Rule{{Name: "cubic", Severity: "info",
		When: "entry.subjects.all(a, entry.subjects.all(b, entry.subjects.all(c, a != c || b != c || true)))"}})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []any
	for i := range 300 {
		subjects = append(subjects, fmt.Sprint(i))
	}
	_, errs := rs.Eval(&Event{Log: "access-zurich", Kind: "access", Entry: map[string]any{"subjects": subjects}})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "cost") {
		t.Errorf("300³ iterations: %v, want the cost limit", errs)
	}
	ms, errs := rs.Eval(&Event{Log: "access-zurich", Kind: "access", Entry: map[string]any{"subjects": subjects[:3]}})
	if len(errs) != 0 || len(ms) != 1 {
		t.Errorf("3³ iterations: %v, %v", ms, errs)
	}
}

// TestParseReviewEntry: an entry of the review log is a review, which
// rules see as kind "review" with its time; one that is not a canonical
// review is malformed.
func TestParseReviewEntry(t *testing.T) {
	entry := []byte(`{"v":1,"kind":"review","release":{"name":"tool","version":"1.2.3","index":7,"entry":"sha256:` + strings.Repeat("ab", 32) + `"},"files":[],"verdict":"approved","notes":"","auditor":"auditor:alice","time":"2026-12-07T11:00:00Z"}`)
	pe, err := parseEntry("review", entry, nil)
	if err != nil || pe.kind != "review" || pe.at.IsZero() {
		t.Fatalf("a review: %+v, %v", pe, err)
	}
	if _, err := parseEntry("review", bytes.Replace(entry, []byte(`"files":[],`), nil, 1), nil); err == nil {
		t.Error("a review without its files parsed")
	}
}
