package monitor

import (
	"fmt"
	"strings"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/residency"
)

// TestGuards: a rule skipped by a guard is one whose condition CEL finds
// false on that entry, never true and never an error, over conditions
// that put the guarded field on either side, next to conjuncts that fail,
// inside || and !, on fields that are not strings; and the default rules
// get the guards that spare an ordinary read most of them.
func TestGuards(t *testing.T) {
	conds := []string{
		`kind == 'access' && entry.action == 'export'`,
		`'export' == entry.action && entry.outcome == 'granted'`,
		`entry.action in ['read', 'export'] && kind == 'access'`,
		`entry.action == 'export' && entry.nothing > 1`,
		`entry.nothing > 1 && entry.action == 'export'`,
		`entry.justification.code == 'THIRD_PARTY_DATA_REQUEST'`,
		`entry.principal.role == 'analyst' || entry.action == 'delete'`,
		`!(entry.action == 'delete')`,
		`has(entry.reason) && entry.reason == 'role'`,
		`entry.reason == 'role'`,
		`entry.resource.count == 'x' || true`,
		`entry.v == 'x' || kind == 'access'`,
		`kind == 'grant' || kind == 'access'`,
		`log == 'access-moscow' && platform == 'https://vendor.example'`,
		`entry.subjects == 'x' || true`,
		`entry.principal == 'x' || true`,
	}
	rules := make([]Rule, len(conds))
	for i, c := range conds {
		rules[i] = Rule{Name: "r" + string(rune('a'+i)), Severity: "info", Description: c, When: c}
	}
	rs, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	var events []*Event
	for _, action := range []string{"read", "export", "delete", "denied"} {
		for _, code := range []string{"CUSTOMER_INITIATED_SUPPORT", "THIRD_PARTY_DATA_REQUEST"} {
			r := newRecord(func(r *access.Record) {
				r.Action, r.Justification.Code = action, code
				if action == "denied" {
					r.Outcome, r.Reason = "denied", "role"
					r.Resource.Count, r.Resource.Digest = 0, access.Digest(nil)
				}
			})
			ev := event(t, r)
			entry, _ := r.Marshal()
			pe, err := parseEntry("access-zurich", entry, nil)
			if err != nil {
				t.Fatal(err)
			}
			view := *ev
			view.Entry = pe.obj
			events = append(events, ev, &view)
		}
	}
	events = append(events, &Event{Platform: "https://vendor.example", Log: "policy", Kind: "policy", Entry: map[string]any{"version": 2.0}, Home: HomeMap(residency.Default())})
	skipped := 0
	for _, c := range rs.rules {
		for _, ev := range events {
			excluded := false
			for _, g := range c.guards {
				excluded = excluded || g.excludes(ev)
			}
			if !excluded {
				continue
			}
			skipped++
			v, _, err := c.when.Eval(map[string]any{"entry": ev.Entry, "kind": ev.Kind, "log": ev.Log, "platform": ev.Platform, "index": ev.Index, "time": ev.Time, "home": ev.Home})
			if err != nil || v != types.False {
				t.Errorf("%s on a %s entry (%T): skipped, but CEL gives %v, %v", c.rule.When, ev.Kind, ev.Entry, v, err)
			}
		}
	}
	if skipped == 0 {
		t.Fatal("no rule was ever skipped")
	}
	for _, c := range rs.rules {
		if strings.Contains(c.rule.When, "||") || strings.HasPrefix(c.rule.When, "!") {
			if len(c.guards) != 0 {
				t.Errorf("%s: guards %+v from a condition that is not a conjunction", c.rule.When, c.guards)
			}
		}
	}

	def, err := Compile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	read := event(t, newRecord(nil))
	var evaluated []string
	for _, c := range def.rules {
		excluded := false
		for _, g := range c.guards {
			excluded = excluded || g.excludes(read)
		}
		if !excluded {
			evaluated = append(evaluated, c.rule.Name)
		}
	}
	if got := strings.Join(evaluated, " "); got != "cross-border-access burst" {
		t.Errorf("the default rules evaluated on an ordinary read: %s, want cross-border-access and burst", got)
	}
}

// TestStringAt: the view's unboxed reading of a string field gives what
// FindStringKey finds there, for every field, and nothing where that finds
// no string.
func TestStringAt(t *testing.T) {
	r := newRecord(func(r *access.Record) { r.Action, r.Outcome, r.Reason = "denied", "denied", "role" })
	r.Resource.Count, r.Resource.Digest = 0, access.Digest(nil)
	entry, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pe, err := parseEntry("access-zurich", entry, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := pe.obj.(*recordView)
	paths := [][]string{{"nothing"}, {"principal", "nothing"}, {"a", "b", "c"}}
	for k := range v.whole().Value().(map[string]any) {
		paths = append(paths, []string{k})
		if o, ok := v.FindStringKey(k); ok {
			if ov, ok := o.(*objView); ok {
				for f := range ov.whole().Value().(map[string]any) {
					paths = append(paths, []string{k, f})
				}
			}
		}
	}
	for _, p := range paths {
		var found any = v
		ok := true
		for _, f := range p {
			fk, isView := found.(interface{ FindStringKey(string) (any, bool) })
			if !isView {
				ok = false
				break
			}
			if found, ok = fk.FindStringKey(f); !ok {
				break
			}
		}
		want, isStr := found.(string)
		got, gotOK := v.stringAt(p)
		if gotOK != (ok && isStr) || got != want {
			t.Errorf("stringAt(%v) = %q, %v; FindStringKey finds %#v, %v", p, got, gotOK, found, ok)
		}
	}
	if len(paths) < 20 {
		t.Errorf("only %d paths checked", len(paths))
	}
}

// TestGuardsSpareMeteredRules: a rule whose cost is counted as it runs
// gets no guards, since running over the limit aborts it (a rule-failed
// alert) where a guard would skip it silently: on a read with 300
// subjects, a cubic rule guarded by action == 'export' fails as it does
// unguarded.
func TestGuardsSpareMeteredRules(t *testing.T) {
	rules := []Rule{{Name: "cubic-export", Severity: "info",
		When: "entry.subjects.all(a, entry.subjects.all(b, entry.subjects.all(c, a != c || b != c || true))) && entry.action == 'export'"}}
	guarded, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := Compile(rules)
	plain.rules[0].guards = nil
	var subjects []string
	for i := range 300 {
		subjects = append(subjects, fmt.Sprintf("hmac-sha256:%064x", i))
	}
	b, err := newRecord(func(r *access.Record) { r.Subjects = subjects }).Marshal() // a read
	if err != nil {
		t.Fatal(err)
	}
	pe, err := parseEntry("access-zurich", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &Event{Log: "access-zurich", Kind: pe.kind, Entry: pe.obj, Time: pe.at}
	_, gerrs := guarded.Eval(ev)
	_, perrs := plain.Eval(ev)
	if len(perrs) == 0 || len(gerrs) != len(perrs) {
		t.Errorf("guarded: %v; evaluated: %v", gerrs, perrs)
	}
}
