package monitor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// FuzzParseAlertQuery: whatever the query string, the parse refuses it or
// gives a query within bounds, which the store answers or refuses as
// invalid, never as failing.
func FuzzParseAlertQuery(f *testing.F) {
	f.Add("rule=burst&after=12&limit=5&severity=warning&platform=https://vendor.example")
	f.Add("limit=1000&after=0")
	f.Add("severity=%00&rule=-")
	s, err := openStore(f.Context(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		q, err := parseAlertQuery(r)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > MaxAlerts || q.After < 0 {
			t.Fatalf("%q gave %+v", raw, q)
		}
		if _, err := s.alerts(t.Context(), q); err != nil && fault.Kind(err) != fault.ErrInvalid {
			t.Fatalf("%q: the store failed on %+v: %v", raw, q, err)
		}
	})
}

// FuzzParseAckBody: an acknowledgement body is refused, or gives a note
// that is non-empty, at most MaxNote bytes of UTF-8 of printable
// characters and line breaks, and that the body holds.
func FuzzParseAckBody(f *testing.F) {
	f.Add([]byte(`{"note":"Checked with the vendor.\nA drill."}`))
	f.Add([]byte(`{"note":"\u0007"}`))
	f.Add([]byte(`{"note":"x","by":"me"}`))
	f.Add([]byte(`{"note":"x"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		note, err := parseAckBody(b)
		if err != nil {
			return
		}
		if strings.TrimSpace(note) == "" || len(note) > MaxNote || !utf8.ValidString(note) {
			t.Fatalf("%q gave the note %q", b, note)
		}
		for _, c := range note {
			if !unicode.IsPrint(c) && c != '\n' {
				t.Fatalf("%q gave a note with %U", b, c)
			}
		}
		var back struct{ Note string }
		if json.Unmarshal(b, &back) != nil || back.Note != note {
			t.Fatalf("%q: the note %q is not what the body holds", b, note)
		}
	})
}

// FuzzParseAfter: an accesses cursor is refused, or read as a log and an
// index that write back as the same cursor.
func FuzzParseAfter(f *testing.F) {
	for _, s := range []string{"", "access-zurich:17", "access-zurich:017", ":1", "a:-1", "a:9223372036854775807", "a:b:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		log, idx, err := parseAfter(s)
		if err != nil {
			if fault.Kind(err) != fault.ErrInvalid {
				t.Fatalf("%q: an error of kind %v", s, fault.Kind(err))
			}
			return
		}
		if s == "" {
			if log != "" || idx != -1 {
				t.Fatalf("the empty cursor gave %q %d", log, idx)
			}
			return
		}
		if idx < 0 || fmt.Sprintf("%s:%d", log, idx) != s {
			t.Fatalf("%q gave %q %d", s, log, idx)
		}
	})
}
