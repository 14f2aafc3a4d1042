package monitor

import (
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/vitrine-dev/vitrine/access"
)

// recordView is an access record as the rules read it, without building
// its JSON object for every entry: CEL's selections (entry.principal.id)
// find each field by name (FindStringKey, which CEL's interpreter asks
// first). Anything else CEL does with the whole object (has() of a field
// the record lacks, equality, iteration, size) goes to the object
// recordObject builds, made then and kept: either way the rules see what
// encoding/json would decode of the entry (TestRecordView).
type recordView struct {
	r       *access.Record
	time    string
	lazyMap // the whole object, once needed
	// The record's objects.
	principal, resource, justification objView
}

func newRecordView(r *access.Record, entry []byte) *recordView {
	v := &recordView{r: r, time: entryTime(r, entry)}
	v.principal = objView{r: r, which: principalObj}
	v.resource = objView{r: r, which: resourceObj}
	v.justification = objView{r: r, which: justificationObj}
	v.src, v.principal.src, v.resource.src, v.justification.src = v, &v.principal, &v.resource, &v.justification
	return v
}

// FindStringKey returns the field named k, as encoding/json would decode
// it: strings, float64 numbers, lists of strings, objects as views.
func (v *recordView) FindStringKey(k string) (any, bool) {
	r := v.r
	switch k {
	case "v":
		return 1.0, true
	case "kind":
		return access.KindAccess, true
	case "time":
		return v.time, true
	case "region":
		return r.Region, true
	case "principal":
		return &v.principal, true
	case "action":
		return r.Action, true
	case "resource":
		return &v.resource, true
	case "justification":
		return &v.justification, true
	case "subjects":
		return r.Subjects, true
	case "request":
		return r.Request, true
	case "outcome":
		return r.Outcome, true
	case "keys":
		return r.Keys, len(r.Keys) > 0
	case "reason":
		return r.Reason, r.Reason != ""
	}
	return nil, false
}

// stringAt returns the string at path, as FindStringKey would find it,
// without boxing it in an interface.
func (v *recordView) stringAt(path []string) (string, bool) {
	r := v.r
	switch len(path) {
	case 1:
		switch path[0] {
		case "kind":
			return access.KindAccess, true
		case "time":
			return v.time, true
		case "region":
			return r.Region, true
		case "action":
			return r.Action, true
		case "request":
			return r.Request, true
		case "outcome":
			return r.Outcome, true
		case "reason":
			return r.Reason, r.Reason != ""
		}
	case 2:
		switch path[0] + "." + path[1] {
		case "principal.id":
			return r.Principal.ID, true
		case "principal.role":
			return r.Principal.Role, true
		case "principal.location":
			return r.Principal.Location, true
		case "resource.dataset":
			return r.Resource.Dataset, true
		case "resource.query":
			return r.Resource.Query, true
		case "resource.digest":
			return r.Resource.Digest, true
		case "justification.code":
			return r.Justification.Code, true
		case "justification.detail":
			return r.Justification.Detail, true
		}
	}
	return "", false
}

func (v *recordView) object() any { return recordObject(v.r, v.time) }

const (
	principalObj = iota
	resourceObj
	justificationObj
)

// objView is one of a record's objects, its fields found by name.
type objView struct {
	r     *access.Record
	which int
	lazyMap
}

func (o *objView) FindStringKey(k string) (any, bool) {
	r := o.r
	switch o.which {
	case principalObj:
		switch k {
		case "id":
			return r.Principal.ID, true
		case "role":
			return r.Principal.Role, true
		case "location":
			return r.Principal.Location, true
		}
	case resourceObj:
		switch k {
		case "dataset":
			return r.Resource.Dataset, true
		case "query":
			return r.Resource.Query, true
		case "count":
			return float64(r.Resource.Count), true
		case "digest":
			return r.Resource.Digest, true
		}
	case justificationObj:
		switch k {
		case "code":
			return r.Justification.Code, true
		case "detail":
			return r.Justification.Detail, true
		}
	}
	return nil, false
}

// objFields are the fields of each of a record's objects.
var objFields = [][]string{
	principalObj:     {"id", "role", "location"},
	resourceObj:      {"dataset", "query", "count", "digest"},
	justificationObj: {"code", "detail"},
}

func (o *objView) object() any {
	m := make(map[string]any, len(objFields[o.which]))
	for _, k := range objFields[o.which] {
		m[k], _ = o.FindStringKey(k)
	}
	return m
}

// lazyMap makes a view a CEL map value, through the whole object its
// src makes, once it is needed.
type lazyMap struct {
	src interface{ object() any }
	obj ref.Val
}

func (m *lazyMap) whole() ref.Val {
	if m.obj == nil {
		m.obj = types.DefaultTypeAdapter.NativeToValue(m.src.object())
	}
	return m.obj
}

func (m *lazyMap) mapper() traits.Mapper                       { return m.whole().(traits.Mapper) }
func (m *lazyMap) ConvertToNative(t reflect.Type) (any, error) { return m.whole().ConvertToNative(t) }
func (m *lazyMap) ConvertToType(t ref.Type) ref.Val            { return m.whole().ConvertToType(t) }
func (m *lazyMap) Equal(other ref.Val) ref.Val                 { return m.whole().Equal(other) }
func (m *lazyMap) Type() ref.Type                              { return types.MapType }
func (m *lazyMap) Value() any                                  { return m.whole().Value() }
func (m *lazyMap) Contains(k ref.Val) ref.Val                  { return m.mapper().Contains(k) }
func (m *lazyMap) Get(k ref.Val) ref.Val                       { return m.mapper().Get(k) }
func (m *lazyMap) Iterator() traits.Iterator                   { return m.mapper().Iterator() }
func (m *lazyMap) Size() ref.Val                               { return m.mapper().Size() }
func (m *lazyMap) Find(k ref.Val) (ref.Val, bool)              { return m.mapper().Find(k) }
