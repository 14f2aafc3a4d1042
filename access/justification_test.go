package access

import (
	"strings"
	"testing"
)

func TestParseJustification(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Justification
	}{
		{"CUSTOMER_INITIATED_SUPPORT; case 1234", Justification{"CUSTOMER_INITIATED_SUPPORT", "case 1234"}},
		{"  SUPERVISOR_REVIEW;   weekly review \t", Justification{"SUPERVISOR_REVIEW", "weekly review"}},
		{"RELOCATION; policy v7: CH → zurich", Justification{"RELOCATION", "policy v7: CH → zurich"}},
		{"AUTOMATED_PROCESSING; a;b;c", Justification{"AUTOMATED_PROCESSING", "a;b;c"}},
		{"VENDOR_INITIATED_REVIEW; " + strings.Repeat("é", 128), Justification{"VENDOR_INITIATED_REVIEW", strings.Repeat("é", 128)}},
		{"THIRD_PARTY_DATA_REQUEST; x", Justification{"THIRD_PARTY_DATA_REQUEST", "x"}},
	} {
		got, err := ParseJustification(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseJustification(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, code := range Codes {
		if _, err := ParseJustification(code + "; detail"); err != nil {
			t.Errorf("code %s: %v", code, err)
		}
	}
}

func TestParseJustificationRejects(t *testing.T) {
	allCodes := strings.Join(Codes, ", ")
	for _, tc := range []struct{ in, want string }{
		{"", "the code is missing; want \"<CODE>; <detail>\" with a code from " + allCodes},
		{"; case 1234", "the code is missing"},
		{"because; case 1234", `unknown code "because"; want one of ` + allCodes},
		{"customer_initiated_support; x", "unknown code"},
		{"CUSTOMER_INITIATED_SUPPORT ; x", `unknown code "CUSTOMER_INITIATED_SUPPORT "`},
		{"CUSTOMER_INITIATED_SUPPORT", `no detail after the code`},
		{"CUSTOMER_INITIATED_SUPPORT;case 1234", `want "; " (semicolon and space)`},
		{"CUSTOMER_INITIATED_SUPPORT; ", "the detail is empty"},
		{"CUSTOMER_INITIATED_SUPPORT;", "the detail is empty"},
		{"CUSTOMER_INITIATED_SUPPORT;  ", "the detail is empty"},
		{"CUSTOMER_INITIATED_SUPPORT; " + strings.Repeat("x", 257), "257 bytes, more than 256"},
		{"CUSTOMER_INITIATED_SUPPORT; " + strings.Repeat("é", 129), "258 bytes"},
		{"CUSTOMER_INITIATED_SUPPORT; a\x00b", "U+0000, which is not a printable character"},
		{"CUSTOMER_INITIATED_SUPPORT; a\tb", "U+0009"},
		{"CUSTOMER_INITIATED_SUPPORT; a\u0085b", "U+0085"},
		{"CUSTOMER_INITIATED_SUPPORT; a\u202eb", "U+202E"},
		{"CUSTOMER_INITIATED_SUPPORT; a\u00a0b", "U+00A0"},
		{"CUSTOMER_INITIATED_SUPPORT; \xffb", "not valid UTF-8"},
	} {
		got, err := ParseJustification(tc.in)
		if err == nil {
			t.Errorf("ParseJustification(%q) = %+v, want an error containing %q", tc.in, got, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "parsing justification: ") {
			t.Errorf("ParseJustification(%q) = %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestCodesCopy(t *testing.T) {
	saved := Codes[0]
	Codes[0] = "PLEASE"
	defer func() { Codes[0] = saved }()
	if _, err := ParseJustification("PLEASE; x"); err == nil {
		t.Error("changing Codes changed what ParseJustification accepts")
	}
}
