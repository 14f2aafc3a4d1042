package residency

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// MaxPolicySize is the largest policy document [ParsePolicy] reads. A
// policy listing every country once takes about 2 KiB.
const MaxPolicySize = 1 << 20

// A ParseError is a policy document that is not valid JSON, does not have
// the policy's shape, or breaks one of the policy's rules. It names the
// offending token's position.
type ParseError struct {
	// Line and Column are 1-based; Column counts characters, not bytes.
	Line, Column int
	// Offset is the byte offset of the offending token in the document.
	Offset int64
	// Msg says what is wrong.
	Msg string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("residency policy line %d column %d: %s", e.Line, e.Column, e.Msg)
}

// LineOf returns the 1-based line of doc on which the byte at offset lies.
// An offset past the end counts as the end; a negative one as the start.
func LineOf(doc []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(doc)))
	return 1 + bytes.Count(doc[:offset], []byte{'\n'})
}

// columnOf returns the 1-based column, in characters, of offset in doc.
func columnOf(doc []byte, offset int64) int {
	offset = min(max(offset, 0), int64(len(doc)))
	start := bytes.LastIndexByte(doc[:offset], '\n') + 1
	return 1 + utf8.RuneCount(doc[start:offset])
}

// positions are the offsets in doc of the tokens of a parsed policy, so
// that validation can name them.
type positions struct {
	doc     []byte
	start   int64 // the policy's opening brace
	version int64
	def     int64
	regions int64 // the regions array's opening bracket
	region  []regionPositions
}

type regionPositions struct {
	start     int64
	name      int64
	url       int64
	countries []int64
}

func (ps *positions) errorAt(off int64, msg string) error {
	return &ParseError{Line: LineOf(ps.doc, off), Column: columnOf(ps.doc, off), Offset: off, Msg: msg}
}

// ParsePolicy reads a policy from a JSON document of the form
//
//	{"version": 2, "default": "moscow", "regions": [
//	  {"name": "zurich", "url": "https://zurich.example.com", "countries": ["CH", "DE"]},
//	  {"name": "moscow", "url": "https://moscow.example.com", "countries": []}]}
//
// "version", "default" and "regions" are required, as is each region's
// "name"; "url" and "countries" may be left out. Unknown or repeated keys,
// values of the wrong type and anything after the object are errors, as
// is every rule [Policy.Validate] checks. Errors are *[ParseError]s that
// name the line and column of the offending token.
//
// The policy keeps the document's order of regions and countries;
// [Policy.Marshal] sorts them.
func ParsePolicy(doc []byte) (*Policy, error) {
	if len(doc) > MaxPolicySize {
		return nil, &ParseError{Line: 1, Column: 1, Msg: fmt.Sprintf("the document is larger than %d bytes", MaxPolicySize)}
	}
	return parse(doc, 0, true)
}

// ParsePolicyAt reads a policy whose JSON object starts at byte offset off
// of doc, such as the "residency" value of a config file, and stops at the
// object's end. It checks what [ParsePolicy] checks, and its errors name
// lines and columns of doc.
func ParsePolicyAt(doc []byte, off int64) (*Policy, error) {
	if off < 0 || off > int64(len(doc)) {
		return nil, fmt.Errorf("parsing residency policy: offset %d is outside the %d-byte document", off, len(doc))
	}
	return parse(doc, off, false)
}

func parse(doc []byte, off int64, whole bool) (*Policy, error) {
	pos := &positions{doc: doc}
	// A first pass checks the syntax: the Decoder reports syntax errors
	// inside a value relative to the value's start, so the token pass below
	// could not place them, but Decode of one value from the start places
	// them exactly.
	var raw json.RawMessage
	check := json.NewDecoder(bytes.NewReader(doc[off:]))
	if err := check.Decode(&raw); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			// Offset counts the bytes read, the offending one included.
			return nil, pos.errorAt(off+max(syn.Offset-1, 0), syn.Error())
		}
		return nil, pos.errorAt(int64(len(doc)), "unexpected end of the document")
	}
	if whole {
		end := off + check.InputOffset()
		if rest := bytes.TrimLeft(doc[end:], " \t\r\n"); len(rest) > 0 {
			return nil, pos.errorAt(int64(len(doc)-len(rest)), "unexpected data after the policy")
		}
	}

	d := json.NewDecoder(bytes.NewReader(doc[off:]))
	d.UseNumber()
	ps := &parser{doc: doc, base: off, dec: d, pos: pos}
	p, err := ps.policy()
	if err != nil {
		return nil, err
	}
	if err := validate(p, ps.pos); err != nil {
		return nil, err
	}
	return p, nil
}

// parser reads a policy token by token, recording where each token starts.
type parser struct {
	doc  []byte
	base int64 // offset in doc of the decoder's input
	dec  *json.Decoder
	pos  *positions
}

// next returns the next token and the offset in doc of its first byte. At
// the end of the input it returns io.EOF.
func (ps *parser) next() (json.Token, int64, error) {
	// InputOffset is the end of the previous token; the next one starts
	// after any whitespace and the comma or colon before it.
	at := ps.base + ps.dec.InputOffset()
	for at < int64(len(ps.doc)) {
		switch ps.doc[at] {
		case ' ', '\t', '\r', '\n', ',', ':':
			at++
			continue
		}
		break
	}
	tok, err := ps.dec.Token()
	switch {
	case err == io.EOF:
		return nil, at, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, at, ps.pos.errorAt(int64(len(ps.doc)), "unexpected end of the document")
	case err != nil:
		// parse checked the syntax already; this is a fallback.
		return nil, at, ps.pos.errorAt(at, err.Error())
	}
	return tok, at, nil
}

// describe names a token for error messages.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// token is next inside the policy, where the end of the input is an
// error.
func (ps *parser) token() (json.Token, int64, error) {
	tok, at, err := ps.next()
	if err == io.EOF {
		return nil, at, ps.pos.errorAt(int64(len(ps.doc)), "unexpected end of the document")
	}
	return tok, at, err
}

// items reads the tokens up to the closing delimiter end of an object or
// array whose opening one the caller has read, calling each with every
// key or element's first token.
func (ps *parser) items(end json.Delim, each func(tok json.Token, at int64) error) error {
	for {
		tok, at, err := ps.token()
		if err != nil {
			return err
		}
		if tok == end {
			return nil
		}
		if err := each(tok, at); err != nil {
			return err
		}
	}
}

// object reads an object whose opening brace the caller has read, calling
// field for each key with the offset of the key. Repeated keys are errors.
func (ps *parser) object(what string, field func(key string, at int64) error) error {
	keys := map[string]int64{}
	return ps.items('}', func(tok json.Token, at int64) error {
		key, ok := tok.(string)
		if !ok { // the decoder allows only strings here; be safe anyway
			return ps.pos.errorAt(at, fmt.Sprintf("unexpected %s in %s", describe(tok), what))
		}
		if first, ok := keys[key]; ok {
			return ps.pos.errorAt(at, fmt.Sprintf("key %q appears twice in %s (first on line %d)", key, what, LineOf(ps.doc, first)))
		}
		keys[key] = at
		return field(key, at)
	})
}

// value reads the next token, which must be of kind want ("a string", "a
// number", "an array", "an object"), as describe names it.
func (ps *parser) value(key, want string) (json.Token, int64, error) {
	tok, at, err := ps.token()
	if err != nil {
		return nil, at, err
	}
	if got := describe(tok); got != want {
		return nil, at, ps.pos.errorAt(at, fmt.Sprintf("%q must be %s, not %s", key, want, got))
	}
	return tok, at, nil
}

func (ps *parser) policy() (*Policy, error) {
	tok, at, err := ps.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, ps.pos.errorAt(at, fmt.Sprintf("a policy must be an object, not %s", describe(tok)))
	}
	ps.pos.start = at
	p := &Policy{}
	var sawVersion, sawDefault, sawRegions bool
	err = ps.object("the policy", func(key string, keyAt int64) error {
		switch key {
		case "version":
			sawVersion = true
			tok, at, err := ps.value(key, "a number")
			if err != nil {
				return err
			}
			ps.pos.version = at
			v, err := strconv.ParseUint(string(tok.(json.Number)), 10, 64)
			if err != nil {
				return ps.pos.errorAt(at, fmt.Sprintf("version %s is not a whole number from 1 to %d", tok, uint64(1<<64-1)))
			}
			p.Version = v
		case "default":
			sawDefault = true
			tok, at, err := ps.value(key, "a string")
			if err != nil {
				return err
			}
			ps.pos.def = at
			p.Default = tok.(string)
		case "regions":
			sawRegions = true
			_, at, err := ps.value(key, "an array")
			if err != nil {
				return err
			}
			ps.pos.regions = at
			return ps.regions(p)
		default:
			return ps.pos.errorAt(keyAt, fmt.Sprintf("unknown key %q (a policy has version, default and regions)", key))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, k := range []struct {
		saw  bool
		name string
	}{{sawVersion, "version"}, {sawDefault, "default"}, {sawRegions, "regions"}} {
		if !k.saw {
			return nil, ps.pos.errorAt(ps.pos.start, fmt.Sprintf("the policy has no %q", k.name))
		}
	}
	return p, nil
}

// regions reads the regions array after its opening bracket.
func (ps *parser) regions(p *Policy) error {
	return ps.items(']', func(tok json.Token, at int64) error {
		if tok != json.Delim('{') {
			return ps.pos.errorAt(at, fmt.Sprintf("a region must be an object, not %s", describe(tok)))
		}
		r, rp, err := ps.region(at)
		if err != nil {
			return err
		}
		p.Regions = append(p.Regions, r)
		ps.pos.region = append(ps.pos.region, rp)
		return nil
	})
}

// region reads one region after its opening brace, which is at start.
func (ps *parser) region(start int64) (Region, regionPositions, error) {
	var r Region
	rp := regionPositions{start: start, name: start, url: start}
	sawName := false
	err := ps.object("a region", func(key string, keyAt int64) error {
		switch key {
		case "name", "url":
			tok, at, err := ps.value(key, "a string")
			if err != nil {
				return err
			}
			if key == "name" {
				sawName = true
				r.Name, rp.name = tok.(string), at
			} else {
				r.URL, rp.url = tok.(string), at
			}
		case "countries":
			if _, _, err := ps.value(key, "an array"); err != nil {
				return err
			}
			return ps.items(']', func(tok json.Token, at int64) error {
				c, ok := tok.(string)
				if !ok {
					return ps.pos.errorAt(at, fmt.Sprintf("a country must be a string, not %s", describe(tok)))
				}
				r.Countries = append(r.Countries, c)
				rp.countries = append(rp.countries, at)
				return nil
			})
		default:
			return ps.pos.errorAt(keyAt, fmt.Sprintf("unknown key %q (a region has name, url and countries)", key))
		}
		return nil
	})
	if err != nil {
		return Region{}, rp, err
	}
	if !sawName {
		return Region{}, rp, ps.pos.errorAt(start, `the region has no "name"`)
	}
	return r, rp, nil
}
