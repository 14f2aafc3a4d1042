package monitor

import (
	"slices"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// A guard is a conjunct of a rule's condition of the form `path == 'x'`
// or `path in ['x', 'y']`, where path is kind, log or platform, or a
// selection on entry (entry.action, entry.justification.code). When the
// event has a string at path that is not among the values, the conjunct is
// false, and so is the whole condition: CEL's && is false as soon as one
// side is false, whatever the other gives, errors included. The rule is
// then skipped without evaluating it, which is most rules on most entries
// (an ordinary read meets none of third-party-request, bulk-export,
// delete-outside-relocation and policy-change). A path the event lacks, or
// holds something else than a string at, guards nothing: CEL decides. A
// rule whose cost is counted as it runs gets no guards: running over the
// limit aborts its evaluation, which && does not absorb.
type guard struct {
	path   []string
	values []string
}

// guards returns the guards of a condition: the conjuncts of its top-level
// && chain that have a guard's form.
func guards(a *cel.Ast) []guard {
	var out []guard
	var walk func(e celast.Expr)
	walk = func(e celast.Expr) {
		if e.Kind() != celast.CallKind {
			return
		}
		call := e.AsCall()
		args := call.Args()
		switch call.FunctionName() {
		case operators.LogicalAnd:
			for _, a := range args {
				walk(a)
			}
		case operators.Equals:
			if len(args) != 2 {
				return
			}
			// Either side may be the constant.
			for i := range 2 {
				path, ok := selectPath(args[i])
				v, isStr := stringLiteral(args[1-i])
				if ok && isStr {
					out = append(out, guard{path: path, values: []string{v}})
					return
				}
			}
		case operators.In:
			if len(args) != 2 || args[1].Kind() != celast.ListKind {
				return
			}
			path, ok := selectPath(args[0])
			if !ok {
				return
			}
			var values []string
			for _, el := range args[1].AsList().Elements() {
				v, isStr := stringLiteral(el)
				if !isStr {
					return
				}
				values = append(values, v)
			}
			out = append(out, guard{path: path, values: values})
		}
	}
	walk(a.NativeRep().Expr())
	return out
}

// selectPath returns the path of kind, log, platform or a chain of field
// selections on entry (not has() tests).
func selectPath(e celast.Expr) ([]string, bool) {
	var rev []string
	for e.Kind() == celast.SelectKind {
		s := e.AsSelect()
		if s.IsTestOnly() {
			return nil, false
		}
		rev = append(rev, s.FieldName())
		e = s.Operand()
	}
	if e.Kind() != celast.IdentKind {
		return nil, false
	}
	switch id := e.AsIdent(); {
	case id == "entry":
	case len(rev) == 0 && (id == "kind" || id == "log" || id == "platform"):
	default:
		return nil, false
	}
	rev = append(rev, e.AsIdent())
	slices.Reverse(rev)
	return rev, true
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// excludes reports whether the event has a string at g's path that is not
// one of g's values: the condition is then false.
func (g *guard) excludes(ev *Event) bool {
	var v any
	switch g.path[0] {
	case "kind":
		v = ev.Kind
	case "log":
		v = ev.Log
	case "platform":
		v = ev.Platform
	default: // entry
		if sv, ok := ev.Entry.(*recordView); ok {
			s, ok := sv.stringAt(g.path[1:])
			return ok && !slices.Contains(g.values, s)
		}
		v = ev.Entry
		for _, f := range g.path[1:] {
			switch o := v.(type) {
			case map[string]any:
				var ok bool
				if v, ok = o[f]; !ok {
					return false
				}
			case interface{ FindStringKey(string) (any, bool) }:
				var ok bool
				if v, ok = o.FindStringKey(f); !ok {
					return false
				}
			default:
				return false
			}
		}
	}
	s, ok := v.(string)
	return ok && !slices.Contains(g.values, s)
}
