package supervisor

import (
	"crypto/rand"
	"crypto/sha256"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// testMember is a member with freshly made log keys.
func testMember(t testing.TB, name, discovery string) (Member, string) {
	t.Helper()
	token := "token of " + name
	m := Member{Name: name, Discovery: discovery, TokenSHA256: sha256.Sum256([]byte(token))}
	for _, log := range []string{"policy", "release", "access-zurich", "access-moscow"} {
		_, vkey, err := note.GenerateKey(rand.Reader, name+"/logs/"+log)
		if err != nil {
			t.Fatal(err)
		}
		m.Logs = append(m.Logs, vkey)
	}
	return m, token
}

func TestParseMembers(t *testing.T) {
	a, tokenA := testMember(t, "acme.example", "https://vitrine.acme.example")
	b, _ := testMember(t, "bolt.example", "http://127.0.0.1:8080")
	b.Contact = "ops (at) bolt.example"
	file := "# the supervisor's members\n" + MembersHeader + "\n\n# acme\n" + a.Entry() + "\n" + b.Entry()
	got, err := ParseMembers([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Member{a, b}) {
		t.Fatalf("parsed %+v\nwant %+v", got, []Member{a, b})
	}
	if !got[0].TokenMatches(tokenA) || got[0].TokenMatches("another") || got[0].TokenMatches("") || got[1].TokenMatches(tokenA) {
		t.Error("TokenMatches takes the wrong tokens")
	}
	if got[0].LogName(a.Logs[2]) != "access-zurich" || got[1].LogName(a.Logs[2]) != "" {
		t.Error("LogName")
	}
	// Trailing slashes go: the entry writes back as it parses.
	slashes, err := ParseMembers([]byte(MembersHeader + "\n" + strings.Replace(a.Entry(), a.Discovery, a.Discovery+"//", 1)))
	if err != nil || slashes[0].Discovery != a.Discovery {
		t.Errorf("a discovery URL with slashes: %v, %+v", err, slashes)
	}

	_, strangerKey, _ := note.GenerateKey(rand.Reader, "bolt.example/logs/policy")
	_, badRegion, _ := note.GenerateKey(rand.Reader, "acme.example/logs/access-Zurich")
	entryA := a.Entry()
	for _, tc := range []struct{ name, file, want string }{
		{"no header", a.Entry(), "line 1: want the header"},
		{"empty", "", "want the header"},
		{"another header", "members/v1\n", `line 1: want the header "members/v0"`},
		{"a member twice", MembersHeader + "\n" + entryA + entryA, "member acme.example is already listed on line 2"},
		{"a log of another member", MembersHeader + "\n" + strings.Replace(entryA, a.Logs[0], strangerKey, 1), `vkey names "bolt.example/logs/policy", not a log of acme.example`},
		{"a log twice", MembersHeader + "\n" + strings.Replace(entryA, a.Logs[1], a.Logs[0], 1), "log acme.example/logs/policy is already listed on line 5"},
		{"a bad key", MembersHeader + "\n" + strings.Replace(entryA, a.Logs[0], "acme.example/logs/policy+0000+AAAA", 1), "line 5: vkey:"},
		{"a bad name", MembersHeader + "\nmember ../etc\n", `line 2: member name "../etc"`},
		{"an upper-case name", MembersHeader + "\nmember Acme\n", `member name "Acme"`},
		{"a bad discovery", MembersHeader + "\n" + strings.Replace(entryA, "https://vitrine.acme.example", "ftp://x", 1), `discovery "ftp://x"`},
		{"a discovery with a query", MembersHeader + "\n" + strings.Replace(entryA, "https://vitrine.acme.example", "https://x/?a=b", 1), "is not an http or https base URL"},
		{"a short token hash", MembersHeader + "\nmember x\ndiscovery https://x\ntoken-sha256 abcd\n", "line 4: token-sha256 is not 64"},
		{"out of order", MembersHeader + "\nmember x\ntoken-sha256 " + strings.Repeat("a", 64) + "\n", `line 3: found "token-sha256", want discovery`},
		{"no keys", MembersHeader + "\nmember x\ndiscovery https://x\ntoken-sha256 " + strings.Repeat("a", 64) + "\nmember y\n", `line 5: found "member", want vkey`},
		{"cut short", MembersHeader + "\nmember x\ndiscovery https://x\n", "the last member, x, ends before its token-sha256 line"},
		{"two values", MembersHeader + "\nmember x y\n", `line 2: want "member" and one value`},
		{"an unknown keyword", MembersHeader + "\n" + entryA + "qpd 24\n", `found "qpd", want vkey, contact or member`},
		{"no access log", MembersHeader + "\n" + strings.Join(strings.SplitAfter(entryA, "\n")[:5], ""), "member acme.example names no access log"},
		{"no access log, then another member", MembersHeader + "\n" + strings.Join(strings.SplitAfter(entryA, "\n")[:5], "") + b.Entry(), "line 7: member acme.example names no access log"},
		{"a bad region", MembersHeader + "\n" + strings.Replace(entryA, a.Logs[2], badRegion, 1), `"Zurich" is not a region name`},
		{"one platform twice", MembersHeader + "\n" + entryA + strings.Replace(b.Entry(), "http://127.0.0.1:8080", "HTTPS://Vitrine.acme.example//", 1), "discovery HTTPS://Vitrine.acme.example is already member acme.example's"},
		{"a line after contact", MembersHeader + "\n" + entryA + "contact me\nvkey " + a.Logs[0] + "\n", `found "vkey", want member`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMembers([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// FuzzParseMembers: whatever the file, parsing returns members or an
// error, never panics, and what it returns writes back to a file that
// parses to the same members.
func FuzzParseMembers(f *testing.F) {
	a, _ := testMember(f, "acme.example", "https://vitrine.acme.example")
	f.Add(MembersHeader + "\n" + a.Entry())
	f.Add(MembersHeader + "\n# none\n")
	f.Add(MembersHeader + "\nmember x\ndiscovery https://x\ntoken-sha256 " + strings.Repeat("0", 64) + "\nvkey " + a.Logs[0] + "\ncontact a b c\n")
	f.Fuzz(func(t *testing.T, file string) {
		members, err := ParseMembers([]byte(file))
		if err != nil {
			return
		}
		out := MembersHeader + "\n"
		for _, m := range members {
			if !ValidName(m.Name) || len(m.Logs) == 0 {
				t.Fatalf("parsed a member without a valid name or logs: %+v", m)
			}
			out += m.Entry()
		}
		again, err := ParseMembers([]byte(out))
		if err != nil {
			t.Fatalf("the members written back do not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, members) {
			t.Fatalf("written back and parsed: %+v, want %+v", again, members)
		}
	})
}
