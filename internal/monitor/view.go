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
	r    *access.Record
	time string
	obj  ref.Val // the whole object, once needed
	// The record's objects.
	principal, resource, justification objView
}

func newRecordView(r *access.Record, entry []byte) *recordView {
	v := &recordView{r: r, time: entryTime(r, entry)}
	v.principal = objView{r: r, which: principalObj}
	v.resource = objView{r: r, which: resourceObj}
	v.justification = objView{r: r, which: justificationObj}
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

func (v *recordView) whole() ref.Val {
	if v.obj == nil {
		v.obj = types.DefaultTypeAdapter.NativeToValue(recordObject(v.r, v.time))
	}
	return v.obj
}

const (
	principalObj = iota
	resourceObj
	justificationObj
)

// objView is one of a record's objects, its fields found by name.
type objView struct {
	r     *access.Record
	which int
	obj   ref.Val
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

func (o *objView) whole() ref.Val {
	if o.obj == nil {
		all := recordObject(o.r, "")
		o.obj = types.DefaultTypeAdapter.NativeToValue(all[[]string{"principal", "resource", "justification"}[o.which]])
	}
	return o.obj
}

// The rest makes both views CEL map values, through the whole object.

type wholer interface{ whole() ref.Val }

func mapper(w wholer) traits.Mapper { return w.whole().(traits.Mapper) }

func (v *recordView) ConvertToNative(t reflect.Type) (any, error) {
	return v.whole().ConvertToNative(t)
}
func (v *recordView) ConvertToType(t ref.Type) ref.Val { return v.whole().ConvertToType(t) }
func (v *recordView) Equal(other ref.Val) ref.Val      { return v.whole().Equal(other) }
func (v *recordView) Type() ref.Type                   { return types.MapType }
func (v *recordView) Value() any                       { return v.whole().Value() }
func (v *recordView) Contains(k ref.Val) ref.Val       { return mapper(v).Contains(k) }
func (v *recordView) Get(k ref.Val) ref.Val            { return mapper(v).Get(k) }
func (v *recordView) Iterator() traits.Iterator        { return mapper(v).Iterator() }
func (v *recordView) Size() ref.Val                    { return mapper(v).Size() }
func (v *recordView) Find(k ref.Val) (ref.Val, bool)   { return mapper(v).Find(k) }

func (o *objView) ConvertToNative(t reflect.Type) (any, error) { return o.whole().ConvertToNative(t) }
func (o *objView) ConvertToType(t ref.Type) ref.Val            { return o.whole().ConvertToType(t) }
func (o *objView) Equal(other ref.Val) ref.Val                 { return o.whole().Equal(other) }
func (o *objView) Type() ref.Type                              { return types.MapType }
func (o *objView) Value() any                                  { return o.whole().Value() }
func (o *objView) Contains(k ref.Val) ref.Val                  { return mapper(o).Contains(k) }
func (o *objView) Get(k ref.Val) ref.Val                       { return mapper(o).Get(k) }
func (o *objView) Iterator() traits.Iterator                   { return mapper(o).Iterator() }
func (o *objView) Size() ref.Val                               { return mapper(o).Size() }
func (o *objView) Find(k ref.Val) (ref.Val, bool)              { return mapper(o).Find(k) }
