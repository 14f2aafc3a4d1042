package access

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vitrine-dev/vitrine/residency"
)

// KindGrant is the kind of a [Grant] entry.
const KindGrant = "grant"

// The actions of a [Grant].
const (
	GrantAction  = "grant"  // the principal's credential takes effect
	RevokeAction = "revoke" // the principal's credential stops working
)

// Grant records that a principal's credential was granted or revoked. The
// platform appends one to the access log of every region the principal
// may act in before the grant or the revocation takes effect, and no
// granted access record of the principal enters the log after its
// revocation, so that a verifier reading one access log checks each
// access against the grants before it: an access record is covered when
// the last grant entry of its principal before it in the same log is a
// grant of the same role and location, made at or before the access's
// time, whose expiry (if any) is after that time.
//
// # Format
//
// A grant is one compact JSON object, UTF-8, with no whitespace and with
// its keys in exactly this order:
//
//	{"v":1,"kind":"grant","time":"2026-11-22T10:00:00.123Z","region":"zurich","action":"grant",
//	 "principal":{"id":"analyst:jdoe","role":"analyst","location":"CH"},
//	 "regions":["moscow","zurich"],"token":"sha256:…","expires":"2027-11-22T10:00:00.123Z"}
//
// (wrapped here for reading; a grant is a single line). The fields:
//
//   - v is the format version, 1; kind is "grant".
//   - time is when the grant or revocation was logged, before it took
//     effect, in UTC with exactly three fractional digits, from 1970 to
//     9999, as in a [Record]. A grant's time is also the principal's
//     creation time: no access under it is older.
//   - region is the region whose log holds the entry, a region name as in
//     a [Record]; it is one of regions.
//   - action is "grant" or "revoke".
//   - principal is the principal the credential belongs to, as access
//     records name it: id, role and home location (an ISO 3166-1 alpha-2
//     code), none of them empty.
//   - regions are every region the principal may act in, in ascending
//     order without duplicates. The same entry, but for region, is in the
//     access log of each of them.
//   - token identifies the credential without revealing it: "sha256:" and
//     the 64 lower-case hex digits of the SHA-256 of the bearer token's
//     bytes. A revocation names the token of the grant it ends.
//   - expires (omitted when the credential does not expire) is when the
//     credential stops working, in the format of time; in a grant it is
//     after time. A revocation repeats the expiry of the grant it ends.
//
// The encoding is canonical as a [Record]'s is: [ParseGrant] accepts
// exactly the bytes [Grant.Marshal] writes.
type Grant struct {
	Time      time.Time // encoded in UTC, truncated to the millisecond
	Region    string
	Action    string // GrantAction or RevokeAction
	Principal Principal
	Regions   []string  // encoded sorted
	Token     string    // "sha256:" and the hex SHA-256 of the token
	Expires   time.Time // zero: no expiry; encoded in UTC, truncated to the millisecond
}

const (
	grantPrefix  = `{"v":1,"kind":"grant","time":`
	invalidGrant = "invalid grant"
)

// Validate reports whether g is a grant [Grant.Marshal] can encode: the
// rules are in the type's documentation. The error says what is wrong.
func (g *Grant) Validate() error {
	_, err := g.Marshal()
	return err
}

// Marshal returns the canonical encoding of g, the bytes that go into the
// access log. It validates g first and never encodes an invalid grant.
// Regions are written in ascending order; g is not changed.
func (g *Grant) Marshal() ([]byte, error) {
	regions := slices.Clone(g.Regions)
	slices.Sort(regions)
	if err := g.check(regions); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidGrant, err)
	}
	b := g.encode(regions)
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: encoded grant is %d bytes, more than %d", invalidGrant, len(b), MaxSize)
	}
	return b, nil
}

// Covers reports whether g, the last grant entry of r's principal before
// r in the same log, covers the access r: g grants the credential to the
// principal r names, with its role and location, no later than r's time,
// and the credential had not expired at r's time. A denied record needs
// no cover and is never covered.
func (g *Grant) Covers(r *Record) bool {
	at := r.Time.Truncate(time.Millisecond)
	return g.Action == GrantAction && r.Outcome == granted &&
		g.Principal == r.Principal && g.Region == r.Region &&
		!at.Before(g.Time.Truncate(time.Millisecond)) &&
		(g.Expires.IsZero() || at.Before(g.Expires.Truncate(time.Millisecond)))
}

// encode writes g with regions, g's regions sorted, which check accepted.
func (g *Grant) encode(regions []string) []byte {
	b := make([]byte, 0, 384+40*len(regions))
	b = append(b, grantPrefix...)
	b = appendTime(b, g.Time)
	b = append(b, `,"region":`...)
	b = appendString(b, g.Region)
	b = append(b, `,"action":`...)
	b = appendString(b, g.Action)
	b = append(b, `,"principal":{"id":`...)
	b = appendString(b, g.Principal.ID)
	b = append(b, `,"role":`...)
	b = appendString(b, g.Principal.Role)
	b = append(b, `,"location":`...)
	b = appendString(b, g.Principal.Location)
	b = append(b, `},"regions":`...)
	b = appendSorted(b, regions)
	b = append(b, `,"token":`...)
	b = appendString(b, g.Token)
	if !g.Expires.IsZero() {
		b = append(b, `,"expires":`...)
		b = appendTime(b, g.Expires)
	}
	return append(b, '}')
}

// check applies every rule but the size limit to g with regions, g's
// regions sorted.
func (g *Grant) check(regions []string) error {
	if err := checkTime("time", g.Time); err != nil {
		return err
	}
	if !g.Expires.IsZero() {
		if err := checkTime("expires", g.Expires); err != nil {
			return err
		}
	}
	if !residency.ValidRegionName(g.Region) {
		return fmt.Errorf("region %q is not a region name (a lower-case letter followed by up to 31 lower-case letters, digits and hyphens)", g.Region)
	}
	if g.Action != GrantAction && g.Action != RevokeAction {
		return fmt.Errorf("action %q is not %q or %q", g.Action, GrantAction, RevokeAction)
	}
	p := g.Principal
	if err := checkTexts("principal id", p.ID, "principal role", p.Role, "principal location", p.Location); err != nil {
		return err
	}
	switch {
	case p.ID == "":
		return errors.New("principal id is empty")
	case p.Role == "":
		return fmt.Errorf("principal %q has no role", p.ID)
	case !residency.ValidCountry(p.Location):
		return fmt.Errorf("principal location %q is not an ISO 3166-1 alpha-2 country code", p.Location)
	}
	if len(regions) == 0 {
		return errors.New("regions are empty: a principal acts in at least one region")
	}
	for i, r := range regions {
		if !residency.ValidRegionName(r) {
			return fmt.Errorf("regions[%d] %q is not a region name", i, r)
		}
		if i > 0 && regions[i-1] == r {
			return fmt.Errorf("region %q is listed twice", r)
		}
	}
	if !slices.Contains(regions, g.Region) {
		return fmt.Errorf("region %q is not one of the regions %v: an entry goes only into the logs of the principal's regions", g.Region, regions)
	}
	if !validDigest(g.Token) {
		return fmt.Errorf("token %q is not %q and 64 lower-case hex digits", g.Token, digestPrefix)
	}
	if g.Action == GrantAction && !g.Expires.IsZero() &&
		!g.Expires.Truncate(time.Millisecond).After(g.Time.Truncate(time.Millisecond)) {
		return fmt.Errorf("expires %s is not after time %s: a grant that has expired grants nothing",
			g.Expires.UTC().Format(timeLayout), g.Time.UTC().Format(timeLayout))
	}
	return nil
}

// ParseGrant reads one grant, strictly, as [Parse] reads a record: it
// accepts b only if b is exactly the encoding [Grant.Marshal] gives the
// grant it reads. Anything else is an error that says what is wrong.
func ParseGrant(b []byte) (*Grant, error) {
	g, err := parseGrant(b)
	if err != nil {
		return nil, fmt.Errorf("parsing grant: %w", err)
	}
	return g, nil
}

func parseGrant(b []byte) (*Grant, error) {
	g := new(Grant)
	if err := parseObject(b, "grant", g.fields); err != nil {
		return nil, err
	}
	if err := checkSorted("regions", g.Regions); err != nil {
		return nil, err
	}
	if err := g.check(g.Regions); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidGrant, err)
	}
	if err := canonical(b, g.encode(g.Regions)); err != nil {
		return nil, err
	}
	return g, nil
}

// fields lists the keys of a grant in their order, with the readers that
// fill g.
func (g *Grant) fields(p *parser) []field {
	expires := p.timeField("expires", &g.Expires)
	expires.optional = true
	return []field{
		p.versionField(),
		p.kindField(KindGrant),
		p.timeField("time", &g.Time),
		p.stringField("region", &g.Region),
		p.stringField("action", &g.Action),
		p.objectField("principal", []field{
			p.stringField("id", &g.Principal.ID),
			p.stringField("role", &g.Principal.Role),
			p.stringField("location", &g.Principal.Location),
		}),
		{"regions", false, func(path string) (err error) {
			g.Regions, err = p.strings(path)
			if err == nil && g.Regions == nil {
				g.Regions = []string{}
			}
			return err
		}},
		p.stringField("token", &g.Token),
		expires,
	}
}
