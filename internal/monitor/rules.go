// Package monitor is the supervisor's monitor: it follows every log of the
// platforms it supervises through package client, checks each proven
// entry against rules and raises alerts grounded in the log.
//
// This file holds the rules: conditions over one parsed entry and its
// context, written in CEL (github.com/google/cel-go, cel.dev/cel-go), the
// expression language of Kubernetes admission policies, optionally with a
// threshold over a time window grouped by a value.
package monitor

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"

	"github.com/vitrine-dev/vitrine/residency"
)

//go:embed default_rules.json
var defaultRules []byte

// DefaultRules returns the rule set that ships, on in `vitrine up`; see
// default_rules.json.
func DefaultRules() []Rule {
	rs, err := ParseRules(defaultRules)
	if err != nil {
		panic("monitor: the default rules do not parse: " + err.Error())
	}
	return rs
}

// Severities, from least to most urgent.
var Severities = []string{"info", "notice", "warning", "critical"}

// A Rule is one condition the monitor checks on every entry it proves.
type Rule struct {
	// Name identifies the rule in alerts: lower-case letters, digits and
	// hyphens.
	Name string `json:"name"`
	// Severity is one of Severities.
	Severity string `json:"severity"`
	// Description says what the rule catches and why it matters.
	Description string `json:"description"`
	// When is a CEL expression of type bool over the variables described
	// in [Event]: entry, kind, log, platform, index, time and home.
	When string `json:"when"`
	// Threshold, when set, raises the alert only when more than Count
	// entries matched When within Window, counted per value of GroupBy.
	Threshold *Threshold `json:"threshold,omitempty"`
}

// A Threshold turns a rule into a count over a sliding window of the
// entries' own times.
type Threshold struct {
	// Count is how many matches a window may hold before the alert.
	Count int `json:"count"`
	// Window is a Go duration ("1h").
	Window string `json:"window"`
	// GroupBy is a CEL expression of type string: matches are counted per
	// value (e.g. entry.principal.id).
	GroupBy string `json:"group_by"`
	// Sum, when set, is a CEL expression of a number: the window holds the
	// sum of its values over the matches (the records exported, say)
	// rather than how many they are, and Count bounds that sum.
	Sum string `json:"sum,omitempty"`
}

// An Event is one proven entry and its context, as rules see it.
type Event struct {
	Platform string // the platform's URL
	Log      string // the log's name in the discovery document
	Index    uint64
	// Kind is the entry's kind: the "kind" of an access-log entry
	// ("access", "grant", "commitment", "denied-summary"), or "release",
	// "policy" or "review" for the entries of those logs.
	Kind string
	// Entry is the entry's JSON object, after its public parser accepted
	// it: a map[string]any, or a value CEL reads as that map (an access
	// record's recordView).
	Entry any
	// Time is the entry's own time (zero if it has none).
	Time time.Time
	// Home is the residency policy in force at the entry, as the region
	// that serves each country (see [HomeMap]); empty while the monitor
	// has not read the policy log.
	Home map[string]string
}

// HomeMap returns, for every ISO 3166-1 country, the region that p has
// serve it: what rules see as home.
func HomeMap(p *residency.Policy) map[string]string {
	m := map[string]string{}
	for _, c := range residency.AllCountries() {
		if r, err := p.RegionFor(c); err == nil {
			m[c] = r
		}
	}
	return m
}

// A Match is a rule that an event met.
type Match struct {
	Rule     *Rule
	Count    int    // matches in the window, for a threshold rule
	GroupKey string // the group's value, for a threshold rule
}

// Rules are compiled rules, ready to evaluate. Eval keeps the windows of
// threshold rules; Rules is not safe for concurrent use.
type Rules struct {
	rules []*compiled
}

type compiled struct {
	rule *Rule
	when cel.Program
	// guards skip the condition where it cannot hold (see guard).
	guards  []guard
	groupBy cel.Program
	sum     cel.Program
	window  time.Duration
	// hits are the matches in the window, per group.
	hits  map[string][]hit
	evals int
}

// hit is a match in a threshold's window: its entry's time and what it
// adds (1, or its Sum).
type hit struct {
	T time.Time
	W float64
}

// UnmarshalJSON reads a hit as Windows writes it: [unix nanoseconds,
// weight].
func (h *hit) UnmarshalJSON(b []byte) error {
	var v [2]json.Number
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	ns, err := v[0].Int64()
	if err != nil {
		return err
	}
	w, err := v[1].Float64()
	if err != nil {
		return err
	}
	h.T, h.W = time.Unix(0, ns).UTC(), w
	return nil
}

// MaxRules bounds a rules file; MaxExpression bounds each expression.
const (
	MaxRules      = 1000
	MaxExpression = 4096
	maxCost       = 1_000_000 // CEL's cost units per evaluation
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// env is the CEL environment every rule compiles in, made once (making
// one takes milliseconds; an Env is safe for concurrent use).
var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("entry", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("kind", cel.StringType),
		cel.Variable("log", cel.StringType),
		cel.Variable("platform", cel.StringType),
		cel.Variable("index", cel.UintType),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("home", cel.MapType(cel.StringType, cel.StringType)),
		// JSON numbers are doubles: let rules compare them with ints
		// (entry.resource.count > 1000).
		cel.CrossTypeNumericComparisons(true),
	)
})

// ParseRules reads a rules file: a JSON object {"rules":[…]} of [Rule]s.
// Unknown fields are errors, so that a misspelt one is not ignored.
func ParseRules(b []byte) ([]Rule, error) {
	var f struct {
		Rules []Rule `json:"rules"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("rules file: data after the JSON object")
	}
	if len(f.Rules) > MaxRules {
		return nil, fmt.Errorf("rules file: %d rules, at most %d", len(f.Rules), MaxRules)
	}
	return f.Rules, nil
}

// Compile checks and compiles rules. An error names the rule and says
// what is wrong with it: a bad name or severity, a name used twice, an
// expression that does not compile or is not of the right type, a bad
// threshold.
func Compile(rules []Rule) (*Rules, error) {
	e, err := env()
	if err != nil {
		return nil, err
	}
	out := &Rules{}
	seen := map[string]bool{}
	for i := range rules {
		r := rules[i]
		where := fmt.Sprintf("rule %d (%q)", i+1, r.Name)
		switch {
		case !validName.MatchString(r.Name):
			return nil, fmt.Errorf("%s: the name must be 1 to 64 lower-case letters, digits and hyphens", where)
		case seen[r.Name]:
			return nil, fmt.Errorf("%s: the name is used twice", where)
		case !slices.Contains(Severities, r.Severity):
			return nil, fmt.Errorf("%s: severity %q is not one of %s", where, r.Severity, strings.Join(Severities, ", "))
		case strings.TrimSpace(r.When) == "":
			return nil, fmt.Errorf("%s: no condition (when)", where)
		}
		seen[r.Name] = true
		c := &compiled{rule: &r}
		var ast *cel.Ast
		var metered bool
		if c.when, ast, metered, err = compileExpr(e, r.When, cel.BoolType); err != nil {
			return nil, fmt.Errorf("%s: when: %w", where, err)
		}
		// A rule that may run over the cost limit is always evaluated:
		// running over aborts the evaluation (a rule-failed alert) where
		// a guard would have skipped it.
		if !metered {
			c.guards = guards(ast)
		}
		if t := r.Threshold; t != nil {
			if t.Count < 1 {
				return nil, fmt.Errorf("%s: threshold count %d: want at least 1", where, t.Count)
			}
			if c.window, err = time.ParseDuration(t.Window); err != nil || c.window <= 0 {
				return nil, fmt.Errorf("%s: threshold window %q: want a positive Go duration such as 1h", where, t.Window)
			}
			if c.groupBy, err = program(e, t.GroupBy, cel.StringType); err != nil {
				return nil, fmt.Errorf("%s: threshold group_by: %w", where, err)
			}
			if t.Sum != "" {
				if c.sum, err = program(e, t.Sum, cel.DynType); err != nil {
					return nil, fmt.Errorf("%s: threshold sum: %w", where, err)
				}
			}
			c.hits = map[string][]hit{}
		}
		out.rules = append(out.rules, c)
	}
	return out, nil
}

// program compiles expr, which must have type want (or dyn, checked when
// evaluated).
func program(e *cel.Env, expr string, want *cel.Type) (cel.Program, error) {
	p, _, _, err := compileExpr(e, expr, want)
	return p, err
}

// compileExpr is program, also returning the checked expression and
// whether its cost is counted as it runs (its estimate is unbounded).
func compileExpr(e *cel.Env, expr string, want *cel.Type) (cel.Program, *cel.Ast, bool, error) {
	if len(expr) > MaxExpression {
		return nil, nil, false, fmt.Errorf("the expression has %d bytes, at most %d", len(expr), MaxExpression)
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, false, iss.Err()
	}
	if t := ast.OutputType(); !t.IsExactType(want) && !t.IsExactType(cel.DynType) {
		return nil, nil, false, fmt.Errorf("the expression is of type %s, not %s", t, want)
	}
	// An expression whose worst case over any entry stays within the
	// limit runs without counting its cost as it goes (a third of its
	// time); any other is stopped at the limit while it runs.
	opts := []cel.ProgramOption{cel.CostLimit(maxCost)}
	if est, err := e.EstimateCost(ast, sizes{}); err == nil && est.Max <= maxCost {
		opts = nil
	}
	p, err := e.Program(ast, opts...)
	return p, ast, opts != nil, err
}

// maxEntry bounds what a rule's variables can hold: an entry of a C2SP
// tlog-tiles log is at most 65,535 bytes (its length is two bytes in an
// entry bundle), and what is made from one (its JSON object, its strings,
// its lists) is no larger than the entry. The residency map (home) has
// one key per country.
const maxEntry = 1 << 16

// sizes tells CEL's cost estimate how large the variables can be.
type sizes struct{}

func (sizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) > 0 {
		return &cost.SizeEstimate{Min: 0, Max: maxEntry}
	}
	return nil
}

func (sizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// EvalError is the error of one rule on one entry.
type EvalError struct {
	Rule string
	Err  error
}

func (e *EvalError) Error() string { return e.Err.Error() }
func (e *EvalError) Unwrap() error { return e.Err }

// Len returns how many rules there are.
func (rs *Rules) Len() int { return len(rs.rules) }

// Eval returns the rules ev meets. A rule whose expression fails on ev (a
// field it reads is absent, a type it did not expect) is not a match; its
// error is returned beside the matches, naming the rule, so that the
// monitor reports it instead of losing it.
func (rs *Rules) Eval(ev *Event) ([]Match, []error) {
	p := rs.prepare(ev)
	return rs.settle(ev, p), p.errs
}

// prepared is what prepare found of one event: the rules it met, each
// with its group and weight for a threshold rule, and the rules' errors.
type prepared struct {
	hits []preHit
	errs []error
}

type preHit struct {
	c   *compiled
	key string
	w   float64
}

// prepare evaluates every rule's expressions on ev. It changes nothing
// and is safe for concurrent use: the monitor prepares a batch of
// entries on every core, then settles them in order.
func (rs *Rules) prepare(ev *Event) prepared {
	var vars map[string]any // made for the first rule not skipped
	var p prepared
	fail := func(c *compiled, format string, args ...any) {
		p.errs = append(p.errs, &EvalError{Rule: c.rule.Name, Err: fmt.Errorf("rule %s on %s entry %d: "+format, append([]any{c.rule.Name, ev.Log, ev.Index}, args...)...)})
	}
	for _, c := range rs.rules {
		if slices.ContainsFunc(c.guards, func(g guard) bool { return g.excludes(ev) }) {
			continue
		}
		if vars == nil {
			vars = map[string]any{
				"entry":    ev.Entry,
				"kind":     ev.Kind,
				"log":      ev.Log,
				"platform": ev.Platform,
				"index":    ev.Index,
				"time":     ev.Time,
				"home":     ev.Home,
			}
			if ev.Home == nil {
				vars["home"] = map[string]string{}
			}
		}
		v, _, err := c.when.Eval(vars)
		if err != nil {
			fail(c, "%w", err)
			continue
		}
		met, ok := v.(types.Bool)
		if !ok {
			fail(c, "the condition gave %s, not a bool", v.Type())
			continue
		}
		if !met {
			continue
		}
		if c.groupBy == nil {
			p.hits = append(p.hits, preHit{c: c})
			continue
		}
		g, _, err := c.groupBy.Eval(vars)
		if err != nil {
			fail(c, "group_by: %w", err)
			continue
		}
		key, ok := g.Value().(string)
		if !ok {
			fail(c, "group_by gave %s, not a string", g.Type())
			continue
		}
		w := 1.0
		if c.sum != nil {
			v, _, err := c.sum.Eval(vars)
			if err == nil {
				var ok bool
				if w, ok = number(v.Value()); !ok || w < 0 {
					err = fmt.Errorf("gave %v, not a non-negative number", v)
				}
			}
			if err != nil {
				fail(c, "sum: %w", err)
				continue
			}
		}
		p.hits = append(p.hits, preHit{c: c, key: key, w: w})
	}
	return p
}

// settle counts what prepare found of ev into the threshold windows and
// returns the matches. Events must be settled in the order they are
// read; settle is not safe for concurrent use.
func (rs *Rules) settle(ev *Event, p prepared) []Match {
	var ms []Match
	for _, h := range p.hits {
		if h.c.groupBy == nil {
			ms = append(ms, Match{Rule: h.c.rule})
			continue
		}
		// Groups are per platform: two vendors' "analyst:alice" are two
		// people.
		if m, fired := h.c.count(ev.Platform+" "+h.key, hit{ev.Time, h.w}); fired {
			m.GroupKey = h.key
			ms = append(ms, m)
		}
	}
	return ms
}

// count adds a match at t to key's window and reports whether the window
// now holds more than the threshold allows. After it fires the window
// starts again, so that a burst raises one alert per Count matches, not
// one per match.
func (c *compiled) count(key string, h hit) (Match, bool) {
	// Matches older than the window before h go, wherever they are: logs
	// are read one after another, so times need not come in order.
	from := h.T.Add(-c.window)
	hits := slices.DeleteFunc(c.hits[key], func(x hit) bool { return !x.T.After(from) })
	hits = append(hits, h)
	total := 0.0
	for _, x := range hits {
		total += x.W
	}
	if total > float64(c.rule.Threshold.Count) {
		delete(c.hits, key)
		return Match{Rule: c.rule, Count: int(total), GroupKey: key}, true
	}
	c.hits[key] = hits
	// Groups whose window emptied go, now and then, so that the map does
	// not grow with every principal ever seen, nor cost a scan per entry.
	if c.evals++; len(c.hits) > 4096 && c.evals%4096 == 0 {
		for k, hs := range c.hits {
			if !slices.ContainsFunc(hs, func(x hit) bool { return x.T.After(from) }) {
				delete(c.hits, k)
			}
		}
	}
	return Match{}, false
}

// number returns a CEL value's number.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

// Windows returns the threshold rules' windows, to be saved with the
// state they count up to (see SetWindows): a JSON object of rules, each an
// object of groups, each a list of hits [unix nanoseconds, weight]. It is
// written by hand: it is saved with every chunk, and can hold many hits.
func (rs *Rules) Windows() ([]byte, error) {
	b := []byte{'{'}
	first := true
	for _, c := range rs.rules {
		if len(c.hits) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		name, err := json.Marshal(c.rule.Name)
		if err != nil {
			return nil, err
		}
		b = append(append(b, name...), ':', '{')
		i := 0
		for key, hs := range c.hits {
			if i++; i > 1 {
				b = append(b, ',')
			}
			k, err := json.Marshal(key)
			if err != nil {
				return nil, err
			}
			b = append(append(b, k...), ':', '[')
			for j, h := range hs {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '[')
				b = strconv.AppendInt(b, h.T.UnixNano(), 10)
				b = append(b, ',')
				b = strconv.AppendFloat(b, h.W, 'g', -1, 64)
				b = append(b, ']')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

// SetWindows puts back windows that Windows returned: after a restart, or
// to forget what a failed pass counted. Windows of rules that are no
// longer there are dropped; nil empties every window.
func (rs *Rules) SetWindows(b []byte) error {
	w := map[string]map[string][]hit{}
	if b != nil {
		if err := json.Unmarshal(b, &w); err != nil {
			return fmt.Errorf("the saved threshold windows: %w", err)
		}
	}
	for _, c := range rs.rules {
		if c.hits != nil {
			c.hits = w[c.rule.Name]
			if c.hits == nil {
				c.hits = map[string][]hit{}
			}
		}
	}
	return nil
}
