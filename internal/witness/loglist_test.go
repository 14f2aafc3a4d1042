package witness

import (
	"bytes"
	"crypto/rand"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// formatLogList is the inverse of ParseLogList.
func formatLogList(logs []LogKey) []byte {
	var b bytes.Buffer
	for _, l := range logs {
		b.WriteString(l.VKey + "\n")
	}
	return b.Bytes()
}

// Fixed keys (note.GenerateKey over constant randomness), so that fuzz seeds
// are stable.
const (
	releaseVKey = "vitrine.test/logs/release+c0913fc8+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
	policyVKey  = "vitrine.test/logs/policy+d3d9fa1a+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
)

func TestParseLogList(t *testing.T) {
	for _, k := range []string{releaseVKey, policyVKey} {
		if _, err := note.NewVerifier(k); err != nil {
			t.Fatalf("test key %q: %v", k, err)
		}
	}
	release := LogKey{Origin: "vitrine.test/logs/release", VKey: releaseVKey}
	policy := LogKey{Origin: "vitrine.test/logs/policy", VKey: policyVKey}
	tests := []struct {
		name    string
		in      string
		want    []LogKey
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "comments and blanks", in: "# logs\n\n   \n# end\n", want: nil},
		{name: "two logs", in: releaseVKey + "\n" + policyVKey + "\n", want: []LogKey{release, policy}},
		{name: "no final newline", in: releaseVKey, want: []LogKey{release}},
		{name: "spaces, CRLF and trailing comment", in: "  " + releaseVKey + "  # the release log\r\n\t" + policyVKey + "\r\n", want: []LogKey{release, policy}},
		{name: "two keys on a line", in: releaseVKey + " " + policyVKey + "\n", wantErr: "line 1: want one verifier key, found 2 fields"},
		{name: "malformed key", in: "# logs\n" + releaseVKey + "\nvitrine.test/logs/x+00000000+AAAA\n", wantErr: "line 3:"},
		{name: "wrong hash", in: strings.Replace(releaseVKey, "+c0913fc8+", "+c0913fc9+", 1), wantErr: "line 1:"},
		{name: "duplicate origin", in: releaseVKey + "\n\n" + releaseVKey + "\n", wantErr: "line 3: origin \"vitrine.test/logs/release\" is already listed on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLogList([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLogList error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLogList: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseLogList = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestParseLogListGenerated checks freshly generated keys, whose base64
// may hold any character.
func TestParseLogListGenerated(t *testing.T) {
	var want []LogKey
	for _, o := range []string{"a.test/1", "a.test/2", "a.test/3", "a.test/4"} {
		_, vkey, err := note.GenerateKey(rand.Reader, o)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, LogKey{Origin: o, VKey: vkey})
	}
	got, err := ParseLogList(formatLogList(want))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLogList(formatLogList(keys)) = %v, %v; want %v", got, err, want)
	}
}

// FuzzParseLogList checks that ParseLogList does not crash, that what it
// accepts is a list of valid keys named after their origins, and that the
// list round-trips exactly through formatLogList.
func FuzzParseLogList(f *testing.F) {
	f.Add([]byte(releaseVKey + "\n" + policyVKey + "\n"))
	f.Add([]byte("# logs\n\n  " + releaseVKey + " # release\r\n"))
	f.Add([]byte(releaseVKey + "\n" + releaseVKey + "\n"))
	f.Add([]byte("vitrine.test/logs/x+00000000+AAAA\n"))
	f.Add([]byte("#\n#\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		logs, err := ParseLogList(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "parsing log list: line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			return
		}
		for _, l := range logs {
			v, err := note.NewVerifier(l.VKey)
			if err != nil || v.Name() != l.Origin {
				t.Fatalf("accepted %+v: verifier %v, %v", l, v, err)
			}
		}
		again, err := ParseLogList(formatLogList(logs))
		if err != nil {
			t.Fatalf("reparsing: %v", err)
		}
		if len(logs) != len(again) || (len(logs) > 0 && !reflect.DeepEqual(logs, again)) {
			t.Fatalf("round trip = %v, want %v", again, logs)
		}
	})
}
