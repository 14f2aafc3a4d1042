package access

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/residency"
)

// DeniedSummary counts attempts that the gateway refused for want of a
// valid credential and did not log one by one. The gateway logs such
// attempts individually, as denied [Record]s, up to a small rate per
// source network; beyond it, it counts them and appends these summaries,
// so that the access log still accounts for every attempt without letting
// anyone grow it at will. An attempt is either in one denied record or
// counted in one summary, never both.
//
// # Format
//
// A summary is one compact JSON object, UTF-8, with no whitespace and with
// its keys in exactly this order:
//
//	{"v":1,"kind":"denied-summary","time":"2026-11-22T10:00:10.000Z","region":"zurich",
//	 "from":"2026-11-22T10:00:00.123Z","to":"2026-11-22T10:00:09.877Z",
//	 "counts":[{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":9431}]}
//
// (wrapped here for reading; a summary is a single line). The fields:
//
//   - v is the format version, 1; kind is "denied-summary".
//   - time is when the summary was made, and from and to bound when the
//     attempts it counts were made: each at or after from and at or
//     before to. All three are in UTC with exactly three fractional
//     digits, from 1970 to 9999, as in a [Record] (the attempts' times
//     truncated to the millisecond), and from ≤ to ≤ time. The windows of
//     summaries may overlap: a summary the log could not take at once is
//     written later, and several summaries may share a window when their
//     counts do not fit one entry.
//   - region is the region whose log holds the summary and whose data the
//     attempts asked for, a region name as in a [Record].
//   - counts, one or more, in ascending order of action, then reason,
//     then network (comparing bytes), with no two alike in all three:
//   - action is what was attempted: read, export, delete, process or
//     relocate (never "denied"). A denied record of the same attempt
//     would have the reason "<action>: <reason>".
//   - reason says why the attempts were denied: 1 to 256 bytes of text,
//     such as "no credential" or "bad credential".
//   - network is where the attempts came from: an IP prefix with no bits
//     set beyond its length, written as Go's netip.Prefix.String writes it
//     (IPv4 dotted decimal, IPv6 as RFC 5952 recommends, "/" and the
//     length in decimal), such as "203.0.113.0/24" or "2001:db8:1::/64";
//     or "unknown" when the source address could not be read. A prefix of
//     length 0 ("0.0.0.0/0", "::/0") counts attempts from many networks
//     that the gateway did not track apart.
//   - count is how many attempts, at least 1.
//
// The encoding is canonical as a [Record]'s is: strings are escaped the
// same way, numbers are plain decimal integers, and
// [ParseDeniedSummary] accepts exactly the bytes [DeniedSummary.Marshal]
// writes. A summary is at most [MaxSize] bytes; a gateway with more
// counts than fit writes several summaries.
type DeniedSummary struct {
	Time     time.Time // encoded in UTC, truncated to the millisecond
	Region   string
	From, To time.Time // encoded in UTC, truncated to the millisecond
	Counts   []DeniedCount
}

// DeniedCount is how many attempts at one action, denied for one reason,
// came from one network.
type DeniedCount struct {
	Action  string // read, export, delete, process or relocate
	Reason  string // 1 to 256 bytes of text
	Network string // an IP prefix, or "unknown"
	Count   int64  // at least 1
}

// UnknownNetwork is the network of attempts whose source address could
// not be read.
const UnknownNetwork = "unknown"

// attempted lists the actions a summary counts attempts at: those of a
// record but "denied".
var attempted = slices.DeleteFunc(slices.Clone(actions), func(a string) bool { return a == denied })

const (
	deniedSummaryPrefix  = `{"v":1,"kind":"denied-summary","time":`
	invalidDeniedSummary = "invalid denied summary"
	maxReason            = 256
)

// Validate reports whether s is a summary [DeniedSummary.Marshal] can
// encode: the rules are in the type's documentation. The error says what
// is wrong.
func (s *DeniedSummary) Validate() error {
	_, err := s.Marshal()
	return err
}

// Marshal returns the canonical encoding of s, the bytes that go into the
// access log. It validates s first and never encodes an invalid summary.
// Counts are written in ascending order; s is not changed. A summary whose
// encoding would be larger than [MaxSize] is an error: its counts go into
// several summaries.
func (s *DeniedSummary) Marshal() ([]byte, error) {
	counts := slices.Clone(s.Counts)
	slices.SortFunc(counts, compareCounts)
	if err := s.check(counts); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidDeniedSummary, err)
	}
	b := s.encode(counts)
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s: encoded summary is %d bytes, more than %d (split its counts into several summaries)", invalidDeniedSummary, len(b), MaxSize)
	}
	return b, nil
}

// Total returns the number of attempts s counts.
func (s *DeniedSummary) Total() int64 {
	var n int64
	for _, c := range s.Counts {
		n += c.Count
	}
	return n
}

func compareCounts(a, b DeniedCount) int {
	return cmp.Or(strings.Compare(a.Action, b.Action), strings.Compare(a.Reason, b.Reason), strings.Compare(a.Network, b.Network))
}

// encode writes s with counts, s's counts sorted, which check accepted.
func (s *DeniedSummary) encode(counts []DeniedCount) []byte {
	b := make([]byte, 0, 192+96*len(counts))
	b = append(b, deniedSummaryPrefix...)
	b = appendTime(b, s.Time)
	b = append(b, `,"region":`...)
	b = appendString(b, s.Region)
	b = append(b, `,"from":`...)
	b = appendTime(b, s.From)
	b = append(b, `,"to":`...)
	b = appendTime(b, s.To)
	b = append(b, `,"counts":[`...)
	for i, c := range counts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"action":`...)
		b = appendString(b, c.Action)
		b = append(b, `,"reason":`...)
		b = appendString(b, c.Reason)
		b = append(b, `,"network":`...)
		b = appendString(b, c.Network)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, c.Count, 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().Truncate(time.Millisecond).AppendFormat(b, timeLayout)
	return append(b, '"')
}

// check applies every rule but the size limit to s with counts, s's
// counts sorted.
func (s *DeniedSummary) check(counts []DeniedCount) error {
	for _, err := range []error{checkTime("time", s.Time), checkTime("from", s.From), checkTime("to", s.To)} {
		if err != nil {
			return err
		}
	}
	from, to, at := s.From.Truncate(time.Millisecond), s.To.Truncate(time.Millisecond), s.Time.Truncate(time.Millisecond)
	if to.Before(from) {
		return fmt.Errorf("to %s is before from %s", to.UTC().Format(timeLayout), from.UTC().Format(timeLayout))
	}
	if at.Before(to) {
		return fmt.Errorf("time %s is before to %s: a summary counts attempts made before it", at.UTC().Format(timeLayout), to.UTC().Format(timeLayout))
	}
	if !residency.ValidRegionName(s.Region) {
		return fmt.Errorf("region %q is not a region name (a lower-case letter followed by up to 31 lower-case letters, digits and hyphens)", s.Region)
	}
	if len(counts) == 0 {
		return errors.New("counts are empty: a summary counts at least one attempt")
	}
	for i, c := range counts {
		if err := c.check(); err != nil {
			return fmt.Errorf("counts[%d]: %w", i, err)
		}
		if i > 0 && compareCounts(counts[i-1], c) == 0 {
			return fmt.Errorf("counts[%d]: action %q, reason %q and network %q are counted twice", i, c.Action, c.Reason, c.Network)
		}
	}
	return nil
}

func (c *DeniedCount) check() error {
	if !slices.Contains(attempted, c.Action) {
		return fmt.Errorf("action %q is not one of %s", c.Action, strings.Join(attempted, ", "))
	}
	if err := checkText("reason", c.Reason); err != nil {
		return err
	}
	if c.Reason == "" || len(c.Reason) > maxReason {
		return fmt.Errorf("reason is %d bytes, not 1 to %d", len(c.Reason), maxReason)
	}
	if !ValidNetwork(c.Network) {
		return fmt.Errorf("network %q is neither an IP prefix without host bits, as netip.Prefix.String writes it, nor %q", c.Network, UnknownNetwork)
	}
	if c.Count < 1 {
		return fmt.Errorf("count %d is not positive", c.Count)
	}
	return nil
}

// ValidNetwork reports whether s is the network of a [DeniedCount]: an IP
// prefix with no bits set beyond its length, in the form
// netip.Prefix.String writes, or [UnknownNetwork].
func ValidNetwork(s string) bool {
	if s == UnknownNetwork {
		return true
	}
	p, err := netip.ParsePrefix(s)
	return err == nil && p == p.Masked() && p.String() == s
}

// ParseDeniedSummary reads one denied summary, strictly, as [Parse] reads
// a record: it accepts b only if b is exactly the encoding
// [DeniedSummary.Marshal] gives the summary it reads. Anything else is an
// error that says what is wrong.
func ParseDeniedSummary(b []byte) (*DeniedSummary, error) {
	s, err := parseDeniedSummary(b)
	if err != nil {
		return nil, fmt.Errorf("parsing denied summary: %w", err)
	}
	return s, nil
}

func parseDeniedSummary(b []byte) (*DeniedSummary, error) {
	s := new(DeniedSummary)
	if err := parseObject(b, "summary", s.fields); err != nil {
		return nil, err
	}
	for i := 1; i < len(s.Counts); i++ {
		if compareCounts(s.Counts[i-1], s.Counts[i]) > 0 {
			return nil, fmt.Errorf("counts[%d] comes after counts[%d]: counts are in ascending order of action, reason and network", i-1, i)
		}
	}
	if err := s.check(s.Counts); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidDeniedSummary, err)
	}
	if err := canonical(b, s.encode(s.Counts)); err != nil {
		return nil, err
	}
	return s, nil
}

// fields lists the keys of a summary in their order, with the readers that
// fill s.
func (s *DeniedSummary) fields(p *parser) []field {
	return []field{
		p.versionField(),
		p.kindField(KindDeniedSummary),
		p.timeField("time", &s.Time),
		p.stringField("region", &s.Region),
		p.timeField("from", &s.From),
		p.timeField("to", &s.To),
		{"counts", false, func(path string) error {
			t, err := p.token()
			if err != nil {
				return err
			}
			if t != json.Delim('[') {
				return typeError(path, "an array of objects", t)
			}
			s.Counts = []DeniedCount{}
			for p.d.More() {
				var c DeniedCount
				if err := p.object(fmt.Sprintf("%s[%d]", path, len(s.Counts)), []field{
					p.stringField("action", &c.Action),
					p.stringField("reason", &c.Reason),
					p.stringField("network", &c.Network),
					{"count", false, func(path string) (err error) {
						c.Count, err = p.int(path)
						return err
					}},
				}); err != nil {
					return err
				}
				s.Counts = append(s.Counts, c)
			}
			_, err = p.token() // the closing bracket: More saw no further element
			return err
		}},
	}
}
