package access

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/residency"
)

// MaxSize is the size in bytes of the largest record [Record.Marshal]
// writes and [Parse] reads. A C2SP tlog-tiles entry bundle prefixes each
// entry with a 16-bit length, so a larger record could not be logged.
const MaxSize = 65535

// Principal is who made an access, as the gateway authenticated it.
type Principal struct {
	ID       string
	Role     string
	Location string // ISO 3166-1 alpha-2 country code of the principal's home location
}

// Resource is what an access asked for and what it released.
type Resource struct {
	Dataset string
	Query   string
	Count   int64  // how many records were released
	Digest  string // [Digest] of the ids of the released records
}

// Justification is the reason a principal gave for an access.
type Justification struct {
	Code   string // one of [Codes]
	Detail string // 1 to 256 bytes
}

// Record is one access-log entry. The package documentation describes its
// encoding and the rules [Record.Validate] enforces.
type Record struct {
	Time          time.Time // encoded in UTC, truncated to the millisecond
	Region        string
	Principal     Principal
	Action        string // read, export, delete, process, relocate, denied
	Resource      Resource
	Justification Justification
	Subjects      []string // "hmac-sha256:<64 hex>" pseudonyms only; encoded sorted
	Request       string   // request id
	Outcome       string   // "granted", or "denied" exactly when Action is "denied"
	Keys          []string // data-key ids this access may unwrap ("sha256:<64 hex>"); encoded sorted, omitted when empty
	Reason        string   // why a denied access was denied, omitted when empty
}

// actions lists the actions a record can carry. A denied attempt has the
// action "denied" whatever was attempted; its reason can say what that
// was.
var actions = []string{"read", "export", "delete", "process", "relocate", denied}

// Actions lists the actions a record can carry, the last "denied" (a
// copy: changing it changes nothing a record accepts).
var Actions = slices.Clone(actions)

const (
	granted = "granted"
	denied  = "denied"

	timeLayout    = "2006-01-02T15:04:05.000Z"
	digestPrefix  = "sha256:"
	subjectPrefix = "hmac-sha256:"
	maxDetail     = 256
	minYear       = 1970
	maxYear       = 9999
	recordPrefix  = `{"v":1,"kind":"access","time":`
	invalidRecord = "invalid access record"
)

// emptyDigest is the digest of no ids, which every denied record carries.
var emptyDigest = Digest(nil)

// Validate reports whether r is a record [Record.Marshal] can encode: the
// rules are in the package documentation. The error says what is wrong.
func (r *Record) Validate() error {
	_, err := r.Marshal()
	return err
}

// Marshal returns the canonical encoding of r, the bytes that go into the
// access log. It validates r first and never encodes an invalid record.
// Subjects and keys are written in ascending order; r is not changed.
func (r *Record) Marshal() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidRecord, err)
	}
	b := r.encode()
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: encoded record is %d bytes, more than %d (too many subjects or keys for one entry?)", invalidRecord, len(b), MaxSize)
	}
	return b, nil
}

// encode writes r, which check accepted.
func (r *Record) encode() []byte {
	b := make([]byte, 0, 512+80*(len(r.Subjects)+len(r.Keys)))
	b = append(b, recordPrefix...)
	b = append(b, '"')
	b = r.Time.UTC().Truncate(time.Millisecond).AppendFormat(b, timeLayout)
	b = append(b, `","region":`...)
	b = appendString(b, r.Region)
	b = append(b, `,"principal":{"id":`...)
	b = appendString(b, r.Principal.ID)
	b = append(b, `,"role":`...)
	b = appendString(b, r.Principal.Role)
	b = append(b, `,"location":`...)
	b = appendString(b, r.Principal.Location)
	b = append(b, `},"action":`...)
	b = appendString(b, r.Action)
	b = append(b, `,"resource":{"dataset":`...)
	b = appendString(b, r.Resource.Dataset)
	b = append(b, `,"query":`...)
	b = appendString(b, r.Resource.Query)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, r.Resource.Count, 10)
	b = append(b, `,"digest":`...)
	b = appendString(b, r.Resource.Digest)
	b = append(b, `},"justification":{"code":`...)
	b = appendString(b, r.Justification.Code)
	b = append(b, `,"detail":`...)
	b = appendString(b, r.Justification.Detail)
	b = append(b, `},"subjects":`...)
	b = appendSorted(b, r.Subjects)
	b = append(b, `,"request":`...)
	b = appendString(b, r.Request)
	b = append(b, `,"outcome":`...)
	b = appendString(b, r.Outcome)
	if len(r.Keys) > 0 {
		b = append(b, `,"keys":`...)
		b = appendSorted(b, r.Keys)
	}
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, r.Reason)
	}
	return append(b, '}')
}

// appendString writes s, which has no control characters, as a JSON
// string in which only '"' and '\' are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// appendSorted writes ss, whose elements need no escaping, as a JSON array
// in ascending order.
// checkTime is the rule of every time an entry carries: set, and in the
// years minYear to maxYear, which the encoding writes with four digits.
func checkTime(name string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is zero", name)
	}
	if y := t.UTC().Year(); y < minYear || y > maxYear {
		return fmt.Errorf("%s %s is not in the years %d to %d", name, t.UTC().Format(time.RFC3339), minYear, maxYear)
	}
	return nil
}

func appendSorted(b []byte, ss []string) []byte {
	ss = slices.Clone(ss)
	slices.Sort(ss)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// check applies every rule but the size limit.
func (r *Record) check() error {
	if err := checkTime("time", r.Time); err != nil {
		return err
	}
	if r.Region == "" {
		return errors.New("region is empty")
	}
	if !residency.ValidRegionName(r.Region) {
		return fmt.Errorf("region %q is not a region name (a lower-case letter followed by up to 31 lower-case letters, digits and hyphens)", r.Region)
	}

	if !slices.Contains(actions, r.Action) {
		return fmt.Errorf("action %q is not one of %s", r.Action, strings.Join(actions, ", "))
	}
	isDenied := r.Action == denied
	if r.Outcome != granted && r.Outcome != denied {
		return fmt.Errorf("outcome %q is not %q or %q", r.Outcome, granted, denied)
	}
	if (r.Outcome == denied) != isDenied {
		return fmt.Errorf("outcome %q does not go with action %q: a denied attempt has action and outcome %q, every other action has outcome %q",
			r.Outcome, r.Action, denied, granted)
	}

	p := r.Principal
	if err := checkTexts("principal id", p.ID, "principal role", p.Role, "principal location", p.Location); err != nil {
		return err
	}
	if p.ID == "" {
		if !isDenied {
			return errors.New("principal id is empty; only a denied attempt may be unauthenticated")
		}
		if p.Role != "" || p.Location != "" {
			return errors.New("principal has a role or location but no id")
		}
	} else {
		if p.Role == "" {
			return fmt.Errorf("principal %q has no role", p.ID)
		}
		if !residency.ValidCountry(p.Location) {
			return fmt.Errorf("principal location %q is not an ISO 3166-1 alpha-2 country code", p.Location)
		}
	}

	res := r.Resource
	if err := checkTexts("resource dataset", res.Dataset, "resource query", res.Query); err != nil {
		return err
	}
	if res.Dataset == "" && !isDenied {
		return errors.New("resource dataset is empty")
	}
	if res.Count < 0 {
		return fmt.Errorf("resource count %d is negative", res.Count)
	}
	if !validDigest(res.Digest) {
		return fmt.Errorf("resource digest %q is not %q and 64 lower-case hex digits", res.Digest, digestPrefix)
	}
	if isDenied && (res.Count != 0 || res.Digest != emptyDigest) {
		return errors.New("a denied attempt releases nothing: its resource count must be 0 and its digest the digest of no ids")
	}

	j := r.Justification
	if j.Code == "" {
		if j.Detail != "" {
			return errors.New("justification has a detail but no code")
		}
		if !isDenied {
			return errors.New("justification is missing; only a denied attempt may lack one")
		}
	} else {
		if !slices.Contains(codes, j.Code) {
			return fmt.Errorf("justification code %q is not one of %s", j.Code, strings.Join(codes, ", "))
		}
		if err := checkDetail(j.Detail); err != nil {
			return err
		}
	}

	if err := checkIDs("subject", r.Subjects, subjectPrefix); err != nil {
		return err
	}
	if r.Request == "" {
		return errors.New("request id is empty")
	}
	if err := checkTexts("request id", r.Request, "reason", r.Reason); err != nil {
		return err
	}
	if err := checkIDs("key", r.Keys, digestPrefix); err != nil {
		return err
	}
	if isDenied && len(r.Keys) > 0 {
		return errors.New("a denied attempt unwraps no data keys, but keys are listed")
	}
	if !isDenied && r.Reason != "" {
		return errors.New("a reason is given, but only a denied attempt has one")
	}
	return nil
}

// checkTexts checks name, value pairs of free-text fields.
func checkTexts(pairs ...string) error {
	for i := 0; i < len(pairs); i += 2 {
		if err := checkText(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// checkText checks that s is valid UTF-8 without control characters. The
// rule does not depend on a Unicode version, so every verifier applies it
// alike.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", field, s)
	}
	for _, c := range s {
		if isControl(c) {
			return fmt.Errorf("%s %q contains the control character %U", field, s, c)
		}
	}
	return nil
}

func isControl(c rune) bool { return c < 0x20 || 0x7f <= c && c <= 0x9f }

// checkDetail checks a justification detail in a record: 1 to 256 bytes of
// text without surrounding white space.
func checkDetail(d string) error {
	if err := checkText("justification detail", d); err != nil {
		return err
	}
	switch {
	case d == "":
		return errors.New("justification detail is empty")
	case len(d) > maxDetail:
		return fmt.Errorf("justification detail is %d bytes, more than %d", len(d), maxDetail)
	case strings.TrimSpace(d) != d:
		return fmt.Errorf("justification detail %q starts or ends with white space", d)
	}
	return nil
}

// checkIDs checks that ids are prefix and 64 lower-case hex digits each,
// without duplicates.
func checkIDs(what string, ids []string, prefix string) error {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !validHexID(id, prefix) {
			return fmt.Errorf("%s %q is not %q and 64 lower-case hex digits", what, id, prefix)
		}
		if seen[id] {
			return fmt.Errorf("%s %q is listed twice", what, id)
		}
		seen[id] = true
	}
	return nil
}

func validDigest(s string) bool { return validHexID(s, digestPrefix) }

func validHexID(s, prefix string) bool {
	h, ok := strings.CutPrefix(s, prefix)
	if !ok || len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
