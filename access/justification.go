package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Codes lists the justification codes, in the order docs/architecture.md
// ("Access records") gives them.
// Changing the slice does not change what this package accepts.
var Codes = []string{
	"CUSTOMER_INITIATED_SUPPORT",
	"CUSTOMER_INITIATED_ACCESS",
	"VENDOR_INITIATED_SERVICE",
	"VENDOR_INITIATED_REVIEW",
	"THIRD_PARTY_DATA_REQUEST",
	"RESPONSE_TO_PRODUCTION_ALERT",
	"AUTOMATED_PROCESSING",
	"RELOCATION",
	"SUPERVISOR_REVIEW",
}

// codes is the package's own copy of Codes, which callers can modify.
var codes = slices.Clone(Codes)

// ParseJustification reads the value of a [Header] header:
//
//	<CODE>; <detail>
//
// where CODE is one of [Codes] and detail is 1 to 256 bytes of printable
// UTF-8 (no control or other non-printing characters; the space is the
// only white space allowed inside it). White space around the value and
// around the detail is removed. The error says what is wrong; for a
// missing or unknown code it lists the codes.
func ParseJustification(header string) (Justification, error) {
	h := strings.TrimSpace(header)
	code, detail, found := strings.Cut(h, ";")
	if code == "" {
		return Justification{}, fmt.Errorf("parsing justification: the code is missing; want %q with a code from %s", "<CODE>; <detail>", strings.Join(codes, ", "))
	}
	if !slices.Contains(codes, code) {
		return Justification{}, fmt.Errorf("parsing justification: unknown code %q; want one of %s", truncate(code, 64), strings.Join(codes, ", "))
	}
	if !found {
		return Justification{}, fmt.Errorf("parsing justification: no detail after the code; want %q", code+"; <detail>")
	}
	if strings.TrimSpace(detail) == "" {
		return Justification{}, errors.New("parsing justification: the detail is empty; say briefly why you need the data")
	}
	if !strings.HasPrefix(detail, " ") {
		return Justification{}, fmt.Errorf("parsing justification: want %q (semicolon and space) after the code", "; ")
	}
	detail = strings.TrimSpace(detail)
	if err := checkHeaderDetail(detail); err != nil {
		return Justification{}, fmt.Errorf("parsing justification: %w", err)
	}
	return Justification{Code: code, Detail: detail}, nil
}

// checkHeaderDetail is stricter than checkDetail: what comes from a client
// must also be printable, so that no format character (a bidirectional
// override, say) can make a detail read differently from what it is.
func checkHeaderDetail(d string) error {
	switch {
	case d == "":
		return errors.New("the detail is empty; say briefly why you need the data")
	case len(d) > maxDetail:
		return fmt.Errorf("the detail is %d bytes, more than %d", len(d), maxDetail)
	case !utf8.ValidString(d):
		return errors.New("the detail is not valid UTF-8")
	}
	for _, c := range d {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("the detail contains %U, which is not a printable character", c)
		}
	}
	return checkDetail(d)
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
