package access

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Parse reads one access record, strictly: it accepts b only if b is
// exactly the encoding [Record.Marshal] gives the record it reads, so a
// parsed record is valid and has one spelling. Unknown, missing, duplicate
// or misordered keys, wrong types, an invalid record and any other
// encoding of a valid one are errors that say what is wrong.
func Parse(b []byte) (*Record, error) {
	r, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("parsing access record: %w", err)
	}
	return r, nil
}

func parse(b []byte) (*Record, error) {
	if r := parseCanonical(b); r != nil {
		return r, nil
	}
	return parseTokens(b)
}

// parseTokens reads b token by token: the reader that sees key order and
// duplicates, and says what is wrong.
func parseTokens(b []byte) (*Record, error) {
	r := new(Record)
	if err := parseObject(b, "record", func(p *parser) []field { return r.fields(p) }); err != nil {
		return nil, err
	}
	if err := checkSorted("subjects", r.Subjects); err != nil {
		return nil, err
	}
	if err := checkSorted("keys", r.Keys); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidRecord, err)
	}
	if err := canonical(b, r.encode()); err != nil {
		return nil, err
	}
	return r, nil
}

// parseCanonical is parse's fast path for what logs hold: an entry in its
// canonical encoding. It reads b in one pass, expecting every key in its
// place and strings escaped as the encoding escapes them, and returns the
// record only if the record passes every check and its canonical encoding
// is b, byte for byte. Canonical bytes are the encoding of exactly one
// record, which is the record the token-by-token reader reads from them;
// anything else (nil) goes to that reader, which says what is wrong.
func parseCanonical(b []byte) *Record {
	if len(b) > MaxSize || !utf8.Valid(b) {
		return nil
	}
	// The strings are cut from one copy of the entry: one allocation
	// rather than one per string.
	s := &scan{b: b, ok: true, text: string(b)}
	r := new(Record)
	s.lit(recordPrefix)
	t, ok := parseTime(s.str())
	if !ok {
		return nil
	}
	r.Time = t
	s.lit(`,"region":`)
	r.Region = s.str()
	s.lit(`,"principal":{"id":`)
	r.Principal.ID = s.str()
	s.lit(`,"role":`)
	r.Principal.Role = s.str()
	s.lit(`,"location":`)
	r.Principal.Location = s.str()
	s.lit(`},"action":`)
	r.Action = s.str()
	s.lit(`,"resource":{"dataset":`)
	r.Resource.Dataset = s.str()
	s.lit(`,"query":`)
	r.Resource.Query = s.str()
	s.lit(`,"count":`)
	r.Resource.Count = s.int()
	s.lit(`,"digest":`)
	r.Resource.Digest = s.str()
	s.lit(`},"justification":{"code":`)
	r.Justification.Code = s.str()
	s.lit(`,"detail":`)
	r.Justification.Detail = s.str()
	s.lit(`},"subjects":`)
	r.Subjects = s.strs()
	s.lit(`,"request":`)
	r.Request = s.str()
	s.lit(`,"outcome":`)
	r.Outcome = s.str()
	// The encoding leaves out empty keys and an empty reason.
	if s.peek(`,"keys":`) {
		s.lit(`,"keys":`)
		if r.Keys = s.strs(); len(r.Keys) == 0 {
			return nil
		}
	}
	if s.peek(`,"reason":`) {
		s.lit(`,"reason":`)
		if r.Reason = s.str(); r.Reason == "" {
			return nil
		}
	}
	s.lit("}")
	if !s.ok || s.i != len(b) {
		return nil
	}
	if checkSorted("subjects", r.Subjects) != nil || checkSorted("keys", r.Keys) != nil || r.check() != nil {
		return nil
	}
	// Read in the encoding's order and spelling, every string escaped as
	// it escapes them, the number and the time as it writes them: b is
	// r's encoding, byte for byte, without writing it again to compare
	// (FuzzParse checks that whatever this accepts is canonical).
	return r
}

// scan reads a canonical encoding: ok turns false at the first byte that
// is not where the encoding puts it, and every read after that is empty.
type scan struct {
	b    []byte
	i    int
	ok   bool
	text string // b as a string, whose substrings the strings are
}

// parseTime reads a time as the encoding writes it (timeLayout: UTC, to
// the millisecond, every field with its digits), and no other spelling of
// it: a field out of its range is refused, not carried into the next.
func parseTime(s string) (time.Time, bool) {
	if len(s) != len(timeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day, hour, minute, sec, ms := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2), num(20, 3)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 || ms < 0 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != day { // the 31st of a 30-day month, the 29th of February of a common year
		return time.Time{}, false
	}
	return t, true
}

func (s *scan) peek(l string) bool { return s.ok && bytes.HasPrefix(s.b[s.i:], []byte(l)) }

func (s *scan) lit(l string) {
	if s.peek(l) {
		s.i += len(l)
	} else {
		s.ok = false
	}
}

// str reads a string in which only '"' and '\' are escaped.
func (s *scan) str() string {
	if !s.peek(`"`) {
		s.ok = false
		return ""
	}
	s.i++
	start, escaped := s.i, false
	for ; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			if s.i+1 >= len(s.b) || (s.b[s.i+1] != '"' && s.b[s.i+1] != '\\') {
				s.ok = false
				return ""
			}
			escaped = true
			s.i++
		case '"':
			v := s.b[start:s.i]
			s.i++
			if !escaped {
				return s.text[start : s.i-1]
			}
			out := make([]byte, 0, len(v))
			for k := 0; k < len(v); k++ {
				if v[k] == '\\' {
					k++
				}
				out = append(out, v[k])
			}
			return string(out)
		}
	}
	s.ok = false
	return ""
}

// int reads a decimal integer as strconv writes it: no leading zeros,
// no "-0".
func (s *scan) int() int64 {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if !s.ok || err != nil || s.b[digits] == '0' && (s.i-digits > 1 || digits > start) {
		s.ok = false
		return 0
	}
	return n
}

// strs reads an array of strings ([] gives an empty, non-nil slice).
func (s *scan) strs() []string {
	s.lit("[")
	out := []string{}
	if s.peek("]") {
		s.i++
		return out
	}
	for s.ok {
		out = append(out, s.str())
		if s.peek("]") {
			s.i++
			return out
		}
		s.lit(",")
	}
	return nil
}

// parseObject reads b, one JSON object of at most MaxSize bytes of UTF-8
// and nothing after it, through the fields fields gives; what names the
// object in errors.
func parseObject(b []byte, what string, fields func(*parser) []field) error {
	if len(b) > MaxSize {
		return fmt.Errorf("the %s is %d bytes, more than %d", what, len(b), MaxSize)
	}
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	p := &parser{d: d}
	if err := p.object("", fields(p)); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("data after the %s", what)
	}
	return nil
}

// canonical reports where b differs from c, the canonical encoding of what
// b was read as: whatever the checks let through in another spelling
// (white space, escapes, number forms).
func canonical(b, c []byte) error {
	if bytes.Equal(c, b) {
		return nil
	}
	i := 0
	for i < len(b) && i < len(c) && b[i] == c[i] {
		i++
	}
	return fmt.Errorf("not in canonical form: at byte %d the canonical encoding has %s, not %s", i, excerpt(c, i), excerpt(b, i))
}

// fields lists the keys of a record in their order, with the readers that
// fill r.
func (r *Record) fields(p *parser) []field {
	return []field{
		p.versionField(),
		p.kindField(KindAccess),
		p.timeField("time", &r.Time),
		p.stringField("region", &r.Region),
		p.objectField("principal", []field{
			p.stringField("id", &r.Principal.ID),
			p.stringField("role", &r.Principal.Role),
			p.stringField("location", &r.Principal.Location),
		}),
		p.stringField("action", &r.Action),
		p.objectField("resource", []field{
			p.stringField("dataset", &r.Resource.Dataset),
			p.stringField("query", &r.Resource.Query),
			{"count", false, func(path string) (err error) {
				r.Resource.Count, err = p.int(path)
				return err
			}},
			p.stringField("digest", &r.Resource.Digest),
		}),
		p.objectField("justification", []field{
			p.stringField("code", &r.Justification.Code),
			p.stringField("detail", &r.Justification.Detail),
		}),
		{"subjects", false, func(path string) (err error) {
			r.Subjects, err = p.strings(path)
			if err == nil && r.Subjects == nil {
				r.Subjects = []string{}
			}
			return err
		}},
		p.stringField("request", &r.Request),
		p.stringField("outcome", &r.Outcome),
		{"keys", true, func(path string) (err error) {
			r.Keys, err = p.strings(path)
			if err == nil && len(r.Keys) == 0 {
				err = errors.New(`"keys" is present but empty; an empty list is left out`)
			}
			return err
		}},
		{"reason", true, func(path string) (err error) {
			r.Reason, err = p.string(path)
			if err == nil && r.Reason == "" {
				err = errors.New(`"reason" is present but empty; an empty reason is left out`)
			}
			return err
		}},
	}
}

// parser walks a JSON document token by token, so that it sees key order
// and duplicate keys, which encoding/json's Unmarshal hides.
type parser struct {
	d *json.Decoder
}

// field is one key of an object and the reader of its value, which gets
// the key's path for its error messages.
type field struct {
	key      string
	optional bool
	read     func(path string) error
}

// versionField reads "v", the format version, which must be 1.
func (p *parser) versionField() field {
	return field{"v", false, func(path string) error {
		n, err := p.int(path)
		if err == nil && n != 1 {
			err = fmt.Errorf("version %d is not supported; this package reads version 1", n)
		}
		return err
	}}
}

// kindField reads "kind", which must be kind: an entry of another kind is
// named as such, not taken for a malformed one.
func (p *parser) kindField(kind string) field {
	return field{"kind", false, func(path string) error {
		s, err := p.string(path)
		if err == nil && s != kind {
			err = fmt.Errorf("kind %q is not %q", s, kind)
		}
		return err
	}}
}

// timeField reads a time in UTC with exactly three fractional digits.
func (p *parser) timeField(key string, dst *time.Time) field {
	return field{key, false, func(path string) error {
		s, err := p.string(path)
		if err != nil {
			return err
		}
		t, err := time.Parse(timeLayout, s)
		if err != nil || t.Format(timeLayout) != s {
			return fmt.Errorf("%s %q is not UTC with millisecond precision, like %q", path, s, "2026-11-22T10:00:00.123Z")
		}
		*dst = t
		return nil
	}}
}

func (p *parser) stringField(key string, dst *string) field {
	return field{key, false, func(path string) (err error) {
		*dst, err = p.string(path)
		return err
	}}
}

func (p *parser) objectField(key string, fields []field) field {
	return field{key, false, func(path string) error { return p.object(path, fields) }}
}

func (p *parser) token() (json.Token, error) {
	t, err := p.d.Token()
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, errors.New("unexpected end of input")
	}
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return t, nil
}

// object reads an object whose keys must be fields' keys in their order.
// path is the object's own path, "" for the record.
func (p *parser) object(path string, fields []field) error {
	t, err := p.token()
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		return typeError(path, "an object", t)
	}
	seen := make(map[string]bool, len(fields))
	next := 0 // index in fields of the next key expected
	for {
		t, err := p.token()
		if err != nil {
			return err
		}
		if t == json.Delim('}') {
			for _, f := range fields[next:] {
				if !f.optional {
					return fmt.Errorf("key %q is missing", join(path, f.key))
				}
			}
			return nil
		}
		key := t.(string) // the decoder returns object keys as strings
		if seen[key] {
			return fmt.Errorf("key %q appears twice", join(path, key))
		}
		seen[key] = true
		i := slices.IndexFunc(fields, func(f field) bool { return f.key == key })
		if i < 0 {
			return fmt.Errorf("unknown key %q", join(path, key))
		}
		if i < next {
			return fmt.Errorf("key %q is out of order; keys must be in the order %s", join(path, key), keyOrder(fields))
		}
		for _, f := range fields[next:i] {
			if !f.optional {
				return fmt.Errorf("key %q is where %q belongs; keys must be in the order %s", join(path, key), join(path, f.key), keyOrder(fields))
			}
		}
		next = i + 1
		if err := fields[i].read(join(path, key)); err != nil {
			return err
		}
	}
}

func (p *parser) string(path string) (string, error) {
	t, err := p.token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", typeError(path, "a string", t)
	}
	return s, nil
}

func (p *parser) int(path string) (int64, error) {
	t, err := p.token()
	if err != nil {
		return 0, err
	}
	n, ok := t.(json.Number)
	if !ok {
		return 0, typeError(path, "a number", t)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s is not a 64-bit integer in plain decimal", path, n)
	}
	return i, nil
}

func (p *parser) strings(path string) ([]string, error) {
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	if t != json.Delim('[') {
		return nil, typeError(path, "an array of strings", t)
	}
	var ss []string
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		if t == json.Delim(']') {
			return ss, nil
		}
		s, ok := t.(string)
		if !ok {
			return nil, typeError(fmt.Sprintf("%s[%d]", path, len(ss)), "a string", t)
		}
		ss = append(ss, s)
	}
}

func typeError(path, want string, got json.Token) error {
	var g string
	switch t := got.(type) {
	case nil:
		g = "null"
	case bool:
		g = "a boolean"
	case json.Number:
		g = "a number"
	case string:
		g = "a string"
	case json.Delim:
		if t == '{' {
			g = "an object"
		} else {
			g = "an array"
		}
	}
	if path == "" {
		return fmt.Errorf("want the record as %s, got %s", want, g)
	}
	return fmt.Errorf("%s: want %s, got %s", path, want, g)
}

func checkSorted(key string, ss []string) error {
	for i := 1; i < len(ss); i++ {
		if ss[i-1] > ss[i] {
			return fmt.Errorf("%q is not in ascending order: %q comes before %q", key, ss[i-1], ss[i])
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyOrder(fields []field) string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return strings.Join(keys, ", ")
}

// excerpt quotes up to 16 bytes of b from i, for an error message.
func excerpt(b []byte, i int) string {
	if i >= len(b) {
		return "the end"
	}
	return strconv.Quote(string(b[i:min(len(b), i+16)]))
}
