// Package supervisor is the supervisor as its own party: one process that
// runs the witness that cosigns its member vendors' logs, the custody of
// their regions' keys, their endpoints' pseudonymisation keys and the
// monitor that reviews their logs, with keys no vendor holds
// (docs/design/supervisor.md).
package supervisor

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/residency"
)

// MembersHeader is the first line of a members file.
const MembersHeader = "members/v0"

// Member is a vendor the supervisor serves: an entry of the members file,
// in the spirit of the witness network's log list:
//
//	member acme.example
//	discovery https://vitrine.acme.example
//	token-sha256 <64 hex digits>
//	vkey acme.example/logs/policy+1234abcd+AAAA…
//	vkey acme.example/logs/access-zurich+…
//	contact security@acme.example
//
// The lines come in this order; vkey repeats, once per log, and contact
// is optional. `vitrine up --supervisor` writes its platform's entry.
type Member struct {
	// Name is the vendor's deployment name, the prefix of its log
	// origins: lower-case letters, digits, dots and dashes.
	Name string
	// Discovery is the base URL of the vendor's platform, whose
	// discovery document is at /.well-known/vitrine.json.
	Discovery string
	// TokenSHA256 is the SHA-256 of the bearer token the vendor's
	// platform presents for custody and pseudonyms; the token itself
	// never leaves the vendor.
	TokenSHA256 [sha256.Size]byte
	// Logs are the verifier keys of the vendor's logs, each named by its
	// origin, Name + "/logs/" + log name.
	Logs []string
	// Contact reaches the vendor's operators (free text, optional).
	Contact string
}

// LogName returns the log name of a verifier key in m.Logs (its origin
// without the member's prefix), or "" if the key names another origin.
func (m *Member) LogName(vkey string) string {
	name, _, _ := strings.Cut(vkey, "+")
	log, ok := strings.CutPrefix(name, m.Name+"/logs/")
	if !ok {
		return ""
	}
	return log
}

// TokenMatches reports, in constant time, whether token is the member's.
func (m *Member) TokenMatches(token string) bool {
	h := sha256.Sum256([]byte(token))
	return token != "" && subtle.ConstantTimeCompare(h[:], m.TokenSHA256[:]) == 1
}

// Entry is m as a members file writes it, ending in a newline.
func (m *Member) Entry() string {
	var b strings.Builder
	fmt.Fprintf(&b, "member %s\ndiscovery %s\ntoken-sha256 %x\n", m.Name, m.Discovery, m.TokenSHA256)
	for _, k := range m.Logs {
		fmt.Fprintf(&b, "vkey %s\n", k)
	}
	if m.Contact != "" {
		fmt.Fprintf(&b, "contact %s\n", m.Contact)
	}
	return b.String()
}

// ValidName reports whether name can name a member: 1 to 63 of a-z, 0-9,
// '.' and '-', starting with a letter or digit. It goes into URL paths
// and directory names.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 63 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return !strings.Contains(name, "..")
}

// maxMembersFile bounds a members file; it is read whole.
const maxMembersFile = 4 << 20

// ParseMembers parses a members file. Blank lines and lines starting with
// '#' are ignored; the first other line is MembersHeader. An error names
// the line and what is wrong: a member named twice, a log claimed by two
// members, a key that is not an Ed25519 signed-note verifier key or names
// an origin outside its member, lines out of order.
func ParseMembers(b []byte) ([]Member, error) {
	if len(b) > maxMembersFile {
		return nil, fmt.Errorf("members file: %d bytes, more than the %d it may have", len(b), maxMembersFile)
	}
	var (
		members     []Member
		header      bool
		names       = map[string]int{}
		origins     = map[string]int{}
		discoveries = map[string]string{} // discoveryKey to member
		// expect is the keyword the next line may have; vkey also
		// allows the next member or contact.
		expect = "member"
	)
	fail := func(n int, format string, args ...any) ([]Member, error) {
		return nil, fmt.Errorf("members file: line %d: %s", n, fmt.Sprintf(format, args...))
	}
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if !header {
			if line != MembersHeader {
				return fail(n, "want the header %q first", MembersHeader)
			}
			header = true
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		if key != "contact" && strings.ContainsAny(value, " \t") || value == "" {
			return fail(n, "want %q and one value", key)
		}
		allowed := key == expect || expect == "vkey+" && (key == "vkey" || key == "contact" || key == "member") ||
			expect == "end" && key == "member"
		if !allowed {
			want := expect
			switch expect {
			case "vkey+":
				want = "vkey, contact or member"
			case "end":
				want = "member"
			}
			return fail(n, "found %q, want %s", truncate(key, 32), want)
		}
		var m *Member
		if len(members) > 0 {
			m = &members[len(members)-1]
		}
		if key == "member" && m != nil {
			if err := m.checkAccessLog(); err != nil {
				return fail(n, "%v", err)
			}
		}
		switch key {
		case "member":
			if !ValidName(value) {
				return fail(n, "member name %q is not 1 to 63 of a-z, 0-9, '.' and '-'", truncate(value, 64))
			}
			if first, ok := names[value]; ok {
				return fail(n, "member %s is already listed on line %d", value, first)
			}
			names[value] = n
			members = append(members, Member{Name: value})
			expect = "discovery"
		case "discovery":
			u, err := url.Parse(value)
			if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return fail(n, "discovery %q is not an http or https base URL", truncate(value, 64))
			}
			m.Discovery = strings.TrimRight(value, "/")
			// Two members at one platform would share its monitoring
			// (and one's keys would be expected of the other's).
			key := discoveryKey(u)
			if first, ok := discoveries[key]; ok {
				return fail(n, "discovery %s is already member %s's", m.Discovery, first)
			}
			discoveries[key] = m.Name
			expect = "token-sha256"
		case "token-sha256":
			h, err := hex.DecodeString(value)
			if err != nil || len(h) != sha256.Size || value != strings.ToLower(value) {
				return fail(n, "token-sha256 is not 64 lower-case hex digits")
			}
			copy(m.TokenSHA256[:], h)
			expect = "vkey"
		case "vkey":
			v, err := note.NewVerifier(value)
			if err != nil {
				return fail(n, "vkey: %v", err)
			}
			if m.LogName(value) == "" || v.Name() != m.Name+"/logs/"+m.LogName(value) {
				return fail(n, "vkey names %q, not a log of %s (%s/logs/…)", truncate(v.Name(), 64), m.Name, m.Name)
			}
			if first, ok := origins[v.Name()]; ok {
				return fail(n, "log %s is already listed on line %d", v.Name(), first)
			}
			// Custody holds a key for each access log's region.
			if region, ok := strings.CutPrefix(m.LogName(value), "access-"); ok && !residency.ValidRegionName(region) {
				return fail(n, "log %s: %q is not a region name (a-z, 0-9 and '-', at most 32, starting with a letter)", v.Name(), truncate(region, 40))
			}
			origins[v.Name()] = n
			m.Logs = append(m.Logs, value)
			expect = "vkey+"
		case "contact":
			m.Contact = strings.TrimSpace(value)
			expect = "end"
		}
	}
	if !header {
		return nil, fmt.Errorf("members file: want the header %q first", MembersHeader)
	}
	if expect != "member" && expect != "vkey+" && expect != "end" {
		return nil, fmt.Errorf("members file: the last member, %s, ends before its %s line", members[len(members)-1].Name, expect)
	}
	if len(members) > 0 {
		if err := members[len(members)-1].checkAccessLog(); err != nil {
			return nil, fmt.Errorf("members file: %w", err)
		}
	}
	return members, nil
}

// checkAccessLog returns an error if m names no access log: custody would
// hold no region's key, and the member's data could not be sealed.
func (m *Member) checkAccessLog() error {
	for _, k := range m.Logs {
		if strings.HasPrefix(m.LogName(k), "access-") {
			return nil
		}
	}
	return fmt.Errorf("member %s names no access log (%s/logs/access-<region>)", m.Name, m.Name)
}

// discoveryKey is a discovery URL as the same platform's other spellings
// give it: scheme and host in lower case, no trailing slash.
func discoveryKey(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.Path, "/")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
