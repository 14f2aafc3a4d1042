package telemetry

import (
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a record's fields. Lengths count characters (Unicode code
// points), not bytes.
const (
	MaxDetectionLen = 256
	MaxURLLen       = 2048
	MaxPathLen      = 1024
	MaxProductLen   = 128
	// MaxFuture is how far ahead of the region's clock a record's time
	// may be: endpoint clocks drift, but not by days.
	MaxFuture = 24 * time.Hour
)

// Earliest is the earliest time a record may carry. Anything older is a
// broken endpoint clock, not a sighting.
var Earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// check applies the rules of a record to r, whose fields have been read,
// with latest the latest acceptable time. It returns the first offending
// field in declaration order and what is wrong with it, or an empty reason.
func (r *Record) check(latest time.Time) (field, reason string) {
	switch {
	case r.Time.Before(Earliest):
		return "time", "before " + Earliest.Format(time.RFC3339)
	case r.Time.After(latest):
		return "time", "more than " + MaxFuture.String() + " in the future"
	}
	switch r.Kind {
	case KindDetection, KindFile, KindURL:
	default:
		return "kind", `must be "detection", "file" or "url"`
	}
	if !isSHA256(r.SHA256) {
		return "sha256", "must be 64 lowercase hex digits"
	}
	if r.Size < 0 || r.Size > MaxSize {
		return "size", "must be an integer from 0 to " + strconv.Itoa(MaxSize)
	}
	if r.Kind == KindDetection {
		switch {
		case r.Detection == "":
			return "detection", "required when kind is detection"
		case tooLong(r.Detection, MaxDetectionLen):
			return "detection", "longer than " + strconv.Itoa(MaxDetectionLen) + " characters"
		case !printable(r.Detection):
			return "detection", "must hold only printable characters"
		}
	} else if r.Detection != "" {
		return "detection", "must be empty unless kind is detection"
	}
	if r.URL == "" {
		if r.Kind == KindURL {
			return "url", "required when kind is url"
		}
	} else if reason := checkURL(r.URL); reason != "" {
		return "url", reason
	}
	switch {
	case tooLong(r.Path, MaxPathLen):
		return "path", "longer than " + strconv.Itoa(MaxPathLen) + " characters"
	case containsNUL(r.Path):
		return "path", "must not contain NUL"
	}
	switch {
	case tooLong(r.Product, MaxProductLen):
		return "product", "longer than " + strconv.Itoa(MaxProductLen) + " characters"
	case !printable(r.Product):
		return "product", "must hold only printable characters"
	}
	return "", ""
}

// checkURL returns what is wrong with a non-empty URL, or "".
func checkURL(s string) string {
	if tooLong(s, MaxURLLen) {
		return "longer than " + strconv.Itoa(MaxURLLen) + " characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return "must not contain spaces; percent-encode them"
		}
	}
	if !printable(s) {
		return "must hold only printable characters"
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "must be an absolute http or https URL"
	}
	return ""
}

var hexDigit = func() (t [256]bool) {
	for _, c := range "0123456789abcdef" {
		t[c] = true
	}
	return t
}()

// isSHA256 reports whether s is 64 lowercase hex digits.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < 64; i++ {
		if !hexDigit[s[i]] {
			return false
		}
	}
	return true
}

// tooLong reports whether s has more than max characters.
func tooLong(s string, max int) bool {
	return len(s) > max && utf8.RuneCountInString(s) > max
}

// printable reports whether every character of s is printable as
// [unicode.IsPrint] defines it: letters, marks, numbers, punctuation,
// symbols and the ASCII space.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			for _, r := range s[i:] {
				if !unicode.IsPrint(r) {
					return false
				}
			}
			return true
		}
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func containsNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// parseTime parses an RFC 3339 time (section 5.6 date-time) with an
// uppercase T and Z, and at most nine digits of fractional seconds, into
// UTC. It accepts a subset of what time.Parse(time.RFC3339, s) accepts and
// gives the same instant; it exists because it is several times faster.
func parseTime(s string) (time.Time, bool) {
	// 2006-01-02T15:04:05[.999999999](Z|±07:00)
	if len(s) < len("2006-01-02T15:04:05Z") ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	ok := true
	num := func(s string, lo, hi int) int {
		v := 0
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			v = v*10 + int(c-'0')
		}
		if v < lo || v > hi {
			ok = false
		}
		return v
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	day := num(s[8:10], 1, 31)
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	sec := num(s[17:19], 0, 59)
	if !ok || day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	s = s[19:]
	nsec := 0
	if s[0] == '.' {
		n := 1
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		digits := n - 1
		if digits < 1 || digits > 9 {
			return time.Time{}, false
		}
		nsec = num(s[1:n], 0, 999999999)
		for range 9 - digits {
			nsec *= 10
		}
		s = s[n:]
	}
	offset := 0
	switch {
	case s == "Z":
	case len(s) == len("+07:00") && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		offset = (num(s[1:3], 0, 23)*60 + num(s[4:6], 0, 59)) * 60
		if !ok {
			return time.Time{}, false
		}
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return t, true
}

// daysIn returns the number of days in month m of year y (proleptic
// Gregorian).
func daysIn(m time.Month, y int) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
