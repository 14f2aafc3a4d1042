// Package principal keeps the people and programs that may ask a region for
// data: each has a role, a home location and the regions it may act in, and
// authenticates with a bearer token.
//
// # Identity
//
// A principal's id is "<role>:<name>", such as "analyst:jdoe", where the
// name is a lower-case letter or digit followed by up to 63 lower-case
// letters, digits, dots, underscores and hyphens. Its location is the ISO
// 3166-1 alpha-2 code of the country it works from; access records carry
// it, so that a supervisor sees from where data was reached.
//
// # Tokens
//
// [Registry.Create] returns the principal's token once:
//
//	vp1.<base64url, unpadded, of 32 random bytes>
//
// The registry keeps only the SHA-256 of each token, and a token
// authenticates exactly one principal.
//
// # Expiry and revocation
//
// A principal may have an expiry, after which its token is refused with
// [ErrExpired]; [Registry.Revoke] ends it at once. Both hold for every
// request the registry authenticates from then on, in the process that
// holds it, without a restart.
//
// # Grants in the access logs
//
// A registry opened [WithLog] records each creation and revocation as an
// [access.Grant] in the access log of every region the principal may act
// in, before it takes effect: a creation or revocation that the logs do
// not take fails and changes nothing. [Registry.Admit] guards the
// gateways' appends, so that no granted access record of a principal
// enters a log after its revocation or expiry: a verifier checks every
// access against the grants before it in the same log.
//
// # Storage
//
// A [Registry] lives in one JSON file (mode 0600) that is replaced
// atomically and synced on every change, so a change that returned is
// durable. The file holds no secret: losing it loses the principals, not
// their credentials.
package principal

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/residency"
)

// Role is what a principal does, and bounds what it may ask for.
type Role string

// The roles of docs/architecture.md ("Roles").
const (
	Operator   Role = "operator"   // runs the vendor's services
	Analyst    Role = "analyst"    // an employee reading data with a justification
	Processor  Role = "processor"  // automated processing
	Supervisor Role = "supervisor" // the independent supervisor
	Auditor    Role = "auditor"    // reviews source and logs in the Center
	Endpoint   Role = "endpoint"   // a customer machine
)

var roles = []Role{Operator, Analyst, Processor, Supervisor, Auditor, Endpoint}

// Principal is one identity in a [Registry].
type Principal struct {
	ID       string    // "<role>:<name>"
	Role     Role      // the role in ID
	Location string    // home location, an ISO 3166-1 alpha-2 country code
	Regions  []string  // the regions the principal may act in, at least one
	Created  time.Time // set by Registry.Create, to the millisecond: the time of its grant
	// Expires is when the principal's token stops working; zero means
	// never. Registry.Create keeps it to the millisecond.
	Expires time.Time
}

// DefaultLifetime is how long a principal created over HTTP without an
// expiry stays valid: a credential nobody renews ends within a year.
const DefaultLifetime = 365 * 24 * time.Hour

// MayActIn reports whether p may act in region.
func (p *Principal) MayActIn(region string) bool {
	return slices.Contains(p.Regions, region)
}

// Errors of a [Registry], wrapped with %w; test with errors.Is.
var (
	// ErrInvalid means a principal is not well formed; the message says
	// what is wrong.
	ErrInvalid = fault.New(fault.ErrInvalid, "invalid principal")
	// ErrExists means the id is taken.
	ErrExists = fault.New(fault.ErrConflict, "principal already exists")
	// ErrNoCredential means a request carries no credential at all.
	ErrNoCredential = errors.New("no credential")
	// ErrBadCredential means a request carries a credential that is
	// malformed or belongs to no principal (a revoked principal's token
	// belongs to none).
	ErrBadCredential = errors.New("bad credential")
	// ErrExpired means a request carries the token of a principal whose
	// expiry has passed. Such an error matches ErrBadCredential too.
	ErrExpired = errors.New("credential expired")
	// ErrNotFound means no principal has the id.
	ErrNotFound = fault.New(fault.ErrNotFound, "no such principal")
	// ErrLogUnavailable means the access log of a region did not take the
	// grant or revocation, which therefore did not take effect.
	ErrLogUnavailable = fault.New(fault.ErrUnavailable, "access log unavailable")
)

// maxName is the longest name after "<role>:".
const maxName = 64

// validate checks p. known tells which regions exist.
func validate(p *Principal, known func(string) bool) error {
	if !slices.Contains(roles, p.Role) {
		return invalid("role %q is not one of %s", p.Role, roleList())
	}
	role, name, ok := strings.Cut(p.ID, ":")
	if !ok || Role(role) != p.Role {
		return invalid("id %q must be %q followed by a name", p.ID, string(p.Role)+":")
	}
	if !validName(name) {
		return invalid("id %q: the name after %q must be a lower-case letter or digit followed by up to %d lower-case letters, digits, '.', '_' and '-'",
			p.ID, role+":", maxName-1)
	}
	if !residency.ValidCountry(p.Location) {
		return invalid("location %q is not an ISO 3166-1 alpha-2 country code (such as \"CH\")", p.Location)
	}
	if len(p.Regions) == 0 {
		return invalid("no regions: a principal must be allowed to act in at least one region")
	}
	for i, r := range p.Regions {
		if !known(r) {
			return invalid("region %q is not a known region", r)
		}
		if slices.Contains(p.Regions[:i], r) {
			return invalid("region %q is listed twice", r)
		}
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func validName(n string) bool {
	if n == "" || len(n) > maxName {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func roleList() string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// expired reports whether p's credential has expired at t.
func (p *Principal) expired(t time.Time) bool {
	return !p.Expires.IsZero() && !t.Before(p.Expires)
}

// clone returns a copy of p that shares no memory with it.
func (p *Principal) clone() *Principal {
	c := *p
	c.Regions = slices.Clone(p.Regions)
	return &c
}
