package tlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/tlog/internal/gen"
)

func witnessNames(p *tlog.Policy) []string {
	var names []string
	for _, w := range p.Witnesses {
		names = append(names, w.Name)
	}
	return names
}

func TestParsePolicyVectors(t *testing.T) {
	for _, c := range []struct {
		file      string
		witnesses []string
		quorum    string
	}{
		{"policy/none.txt", nil, "none"},
		{"policy/single.txt", []string{"a"}, "a"},
		{"policy/2of3.txt", []string{"a", "b", "c"}, "three"},
		{"policy/nested.txt", []string{"X1", "X2", "X3", "Y1", "Y2"}, "X-and-Y"},
	} {
		t.Run(c.file, func(t *testing.T) {
			p := parsePolicyFile(t, c.file)
			if got := witnessNames(p); !reflect.DeepEqual(got, c.witnesses) {
				t.Errorf("got witnesses %q, want %q", got, c.witnesses)
			}
			if got := p.Quorum(); got != c.quorum {
				t.Errorf("got quorum %q, want %q", got, c.quorum)
			}
			l, ok := p.Log(gen.Origin)
			if !ok || len(p.Logs) != 1 || l.URL != "https://log.example/vitrine-test-log/" || l.Verifier.Name() != gen.Origin {
				t.Errorf("got logs %+v", p.Logs)
			}
			if _, ok := p.Log("example.com/other"); ok {
				t.Error("Log found an origin that is not in the policy")
			}
			if got := len(p.WitnessVerifiers()); got != len(c.witnesses) {
				t.Errorf("got %d witness verifiers, want %d", got, len(c.witnesses))
			}
		})
	}
}

func TestPolicyMarshal(t *testing.T) {
	k := testKeys(t)
	p := parsePolicyFile(t, "policy/nested.txt")
	want := "log " + k.Log.VKey + " https://log.example/vitrine-test-log/\n" +
		"witness X1 " + k.A.VKey + "\n" +
		"witness X2 " + k.B.VKey + "\n" +
		"witness X3 " + k.C.VKey + "\n" +
		"witness Y1 " + k.D.VKey + "\n" +
		"witness Y2 " + k.E.VKey + " https://witness-e.example/\n" +
		"group X-witnesses 2 X1 X2 X3\n" +
		"group Y-witnesses any Y1 Y2\n" +
		"group X-and-Y all X-witnesses Y-witnesses\n" +
		"quorum X-and-Y\n"
	if got := string(p.Marshal()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	for _, file := range []string{"policy/none.txt", "policy/single.txt", "policy/2of3.txt", "policy/nested.txt"} {
		m := parsePolicyFile(t, file).Marshal()
		again := parsePolicyText(t, string(m))
		if got := again.Marshal(); !bytes.Equal(got, m) {
			t.Errorf("%s: Marshal is not a fixed point:\n%s\nthen\n%s", file, m, got)
		}
	}
	var zero tlog.Policy
	if _, err := tlog.ParsePolicy(zero.Marshal()); err == nil {
		t.Error("Marshal of the zero Policy parses; it must not turn into quorum none")
	}
}

func TestParsePolicyValid(t *testing.T) {
	k := testKeys(t)
	var many strings.Builder
	for i := range 32 {
		l, err := gen.NewLog(fmt.Sprintf("log%d.example", i), fmt.Sprintf("many log %d", i))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&many, "log %s\n", l.VKey)
		fmt.Fprintf(&many, "witness w%d %s\n", i, gen.NewWitness(fmt.Sprintf("w%d.example", i), fmt.Sprintf("many %d", i), 0).VKey)
		fmt.Fprintf(&many, "group g%d any w%d\n", i, i)
	}
	many.WriteString("group all32 all g0 g1 g2 g3 g4 g5 g6 g7 g8 g9 g10 g11 g12 g13 g14 g15 g16 g17 g18 g19 g20 g21 g22 g23 g24 g25 g26 g27 g28 g29 g30 g31\nquorum all32\n")

	for _, c := range []struct {
		name, text string
		witnesses  []string
		quorum     string
	}{
		{"quorum is a witness", "witness a " + k.A.VKey + "\nquorum a\n", []string{"a"}, "a"},
		{"no final newline", "witness a " + k.A.VKey + "\nquorum a", []string{"a"}, "a"},
		{"no logs, quorum none", "quorum none\n", nil, "none"},
		{"whitespace and comments", " \t# c\n\t\n  witness\t a  " + k.A.VKey + " \t\n#quorum b\nquorum a\t\n", []string{"a"}, "a"},
		{"definitions after the quorum", "witness a " + k.A.VKey + "\nquorum a\nwitness b " + k.B.VKey + "\n", []string{"a", "b"}, "a"},
		{"names are opaque octets", "witness K " + k.A.VKey + "\nwitness \u212a " + k.B.VKey + "\nwitness \xff#x " + k.C.VKey + "\ngroup g all K \u212a \xff#x\nquorum g\n", []string{"K", "\u212a", "\xff#x"}, "g"},
		{"URL with non-ASCII host", "witness a " + k.A.VKey + " https://bücher.example/w\nquorum a\n", []string{"a"}, "a"},
		{"32 logs, witnesses and groups", many.String(), nil, "all32"},
		{"1000 definitions, groups 998 deep", chainPolicy(k.A.VKey, 1000), []string{"a"}, "g998"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := parsePolicyText(t, c.text)
			if got := witnessNames(p); c.witnesses != nil && !reflect.DeepEqual(got, c.witnesses) {
				t.Errorf("got witnesses %q, want %q", got, c.witnesses)
			}
			if got := p.Quorum(); got != c.quorum {
				t.Errorf("got quorum %q, want %q", got, c.quorum)
			}
			m := p.Marshal()
			if got := parsePolicyText(t, string(m)).Marshal(); !bytes.Equal(got, m) {
				t.Errorf("Marshal is not a fixed point:\n%s\nthen\n%s", m, got)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	k := testKeys(t)
	a, b := k.A.VKey, k.B.VKey
	sameLogKey, err := gen.NewLog("renamed.example", "log")
	if err != nil {
		t.Fatal(err)
	}
	sameWitnessKey := gen.NewWitness("renamed.example", "witness a", 0).VKey
	badID := strings.Replace(a, "+f3a78c65+", "+f3a78c66+", 1)
	if badID == a {
		t.Fatal("test key changed; update badID")
	}

	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty", "", "tlog-policy: no quorum line"},
		{"only comments", "# quorum none\n", "tlog-policy: no quorum line"},
		{"unknown keyword", "witnes a " + a + "\nquorum none\n", `line 1: unknown keyword "witnes"`},
		{"keyword case", "Quorum none\n", `line 1: unknown keyword "Quorum"`},
		{"log without key", "log\nquorum none\n", "line 1: want \"log <vkey> [<url>]\""},
		{"log with extra field", "log " + k.Log.VKey + " https://a.example/ x\nquorum none\n", "line 1: want \"log"},
		{"log key garbage", "log nonsense\nquorum none\n", "line 1: log key \"nonsense\": not a vkey"},
		{"log key is a cosigner key", "log " + a + "\nquorum none\n", "line 1: log key " + fmt.Sprintf("%q", a) + " has signature type 0x04"},
		{"log key ID wrong", "log " + strings.Replace(k.Log.VKey, "+705cf7b3+", "+705cf7b4+", 1) + "\nquorum none\n", "line 1: log key"},
		{"duplicate log", "log " + k.Log.VKey + "\nlog " + k.Log.VKey + "\nquorum none\n", "line 2: log key"},
		{"duplicate log key, other name", "log " + k.Log.VKey + "\nlog " + sameLogKey.VKey + "\nquorum none\n", "same public key as log"},
		{"log relative URL", "log " + k.Log.VKey + " log.example/x\nquorum none\n", "line 1: log URL \"log.example/x\" is not an absolute URL"},
		{"trailing comment", "# a\nlog " + k.Log.VKey + " # the log\nquorum none\n", "line 2: want \"log <vkey> [<url>]\", got 5 fields"},
		{"trailing comment as URL", "witness a " + a + " #log\nquorum none\n", "line 1: witness \"a\" URL \"#log\" starts with #"},
		{"witness without key", "witness a\nquorum none\n", `line 1: want "witness <name> <vkey> [<url>]", got 2 fields`},
		{"witness Ed25519 note key", "witness a " + k.Log.VKey + "\nquorum a\n", "line 1: witness \"a\" key has signature type 0x01"},
		{"witness key ID wrong", "witness a " + badID + "\nquorum a\n", `line 1: witness "a" key ID "f3a78c66" does not match its key (want f3a78c65)`},
		{"witness key garbage", "witness a b+c+d\nquorum a\n", `line 1: witness "a" key: malformed public key`},
		{"witness name is a keyword", "witness all " + a + "\nquorum none\n", `line 1: witness name "all" is a keyword`},
		{"witness none", "witness none " + a + "\nquorum none\n", `line 1: witness name "none" is a keyword`},
		{"witness defined twice", "witness a " + a + "\nwitness a " + b + "\nquorum a\n", `line 2: witness name "a" is already defined`},
		{"duplicate witness key", "witness a " + a + "\nwitness b " + a + "\nquorum a\n", `line 2: witness "b" has the same public key as witness "a"`},
		{"duplicate witness key, other name", "witness a " + a + "\nwitness b " + sameWitnessKey + "\nquorum a\n", `line 2: witness "b" has the same public key as witness "a"`},
		{"group name is a witness", "witness a " + a + "\ngroup a any a\nquorum a\n", `line 2: group name "a" is already defined`},
		{"group without members", "witness a " + a + "\ngroup g any\nquorum g\n", "line 2: want \"group <name> <k|any|all> <member>...\" with at least one member"},
		{"group unknown member", "witness X1 " + a + "\n\ngroup g 1 X1 X3\nquorum g\n", `tlog-policy line 3: unknown witness or group "X3" in group "g"`},
		{"group member defined later", "group g any a\nwitness a " + a + "\nquorum g\n", `line 1: unknown witness or group "a" in group "g"`},
		{"group member twice", "witness a " + a + "\ngroup g 1 a a\nquorum g\n", `line 2: "a" is listed twice in group "g"`},
		{"member of two groups", "witness a " + a + "\nwitness b " + b + "\ngroup g1 any a b\ngroup g2 any a\nquorum g1\n", `line 4: "a" is already a member of group "g1"`},
		{"group member none", "witness a " + a + "\ngroup g any a none\nquorum g\n", `line 2: "none" cannot be a member of group "g"`},
		{"group of itself", "witness a " + a + "\ngroup g any g\nquorum g\n", `line 2: unknown witness or group "g" in group "g"`},
		{"threshold 0", "witness a " + a + "\ngroup g 0 a\nquorum g\n", `line 2: threshold "0" of group "g" is not any, all or a number from 1 to 1`},
		{"threshold above n", "witness a " + a + "\nwitness b " + b + "\ngroup g 3 a b\nquorum g\n", `threshold "3" of group "g"`},
		{"threshold leading zero", "witness a " + a + "\ngroup g 01 a\nquorum g\n", `threshold "01"`},
		{"threshold sign", "witness a " + a + "\ngroup g +1 a\nquorum g\n", `threshold "+1"`},
		{"threshold word", "witness a " + a + "\ngroup g one a\nquorum g\n", `threshold "one"`},
		{"threshold huge", "witness a " + a + "\ngroup g 18446744073709551617 a\nquorum g\n", `threshold "18446744073709551617"`},
		{"quorum unknown", "witness a " + a + "\nquorum b\n", `line 2: unknown witness or group "b" in quorum`},
		{"quorum before its definition", "quorum a\nwitness a " + a + "\n", `line 1: unknown witness or group "a" in quorum`},
		{"two quorums", "witness a " + a + "\nquorum a\n\nquorum none\n", "line 4: second quorum line (the first is line 2)"},
		{"quorum without name", "quorum\n", `line 1: want "quorum <name>", got 1 fields`},
		{"quorum with two names", "witness a " + a + "\nwitness b " + b + "\nquorum a b\n", `line 3: want "quorum <name>", got 3 fields`},
		{"carriage return", "witness a " + a + "\r\nquorum a\r\n", "line 1: carriage return"},
		{"NUL", "quorum none\x00\n", "line 1: control character 0x00"},
		{"DEL in comment", "# \x7f\nquorum none\n", "line 1: control character 0x7f"},
		{"vertical tab", "witness a\v" + a + "\nquorum none\n", "line 1: control character 0x0b"},
		{"form feed", "\fquorum none\n", "line 1: control character 0x0c"},
		{"too large", "quorum none\n" + strings.Repeat("#", 1<<20), "tlog-policy: file is 1048588 bytes, more than the limit of 1048576"},
		{"too many definitions", chainPolicy(a, 1001), "line 1001: more than 1000 definitions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tlog.ParsePolicy([]byte(tc.text))
			if err == nil {
				t.Fatalf("ParsePolicy succeeded: %s", p.Marshal())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %q, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, tlog.ErrMalformed) {
				t.Errorf("error %v does not match ErrMalformed", err)
			}
		})
	}
}

// chainPolicy returns a policy of n definition lines: a witness, a chain of
// n-2 groups each holding the previous one, and the quorum.
func chainPolicy(vkey string, n int) string {
	var s strings.Builder
	s.WriteString("witness a " + vkey + "\ngroup g1 any a\n")
	for i := 2; i <= n-2; i++ {
		fmt.Fprintf(&s, "group g%d any g%d\n", i, i-1)
	}
	fmt.Fprintf(&s, "quorum g%d\n", n-2)
	return s.String()
}

func TestSatisfied(t *testing.T) {
	nested := parsePolicyFile(t, "policy/nested.txt")
	twoOfThree := parsePolicyFile(t, "policy/2of3.txt")
	none := parsePolicyFile(t, "policy/none.txt")
	single := parsePolicyFile(t, "policy/single.txt")
	for _, c := range []struct {
		name     string
		policy   *tlog.Policy
		cosigned string
		want     bool
	}{
		{"none, nobody", none, "", true},
		{"single, nobody", single, "", false},
		{"single, a", single, "a", true},
		{"2of3, a", twoOfThree, "a", false},
		{"2of3, a c", twoOfThree, "a c", true},
		{"2of3, b c", twoOfThree, "b c", true},
		{"2of3, all", twoOfThree, "a b c", true},
		{"nested, nobody", nested, "", false},
		{"nested, two X and one Y", nested, "X1 X2 Y1", true},
		{"nested, two X and other Y", nested, "X2 X3 Y2", true},
		{"nested, all X", nested, "X1 X2 X3", false},
		{"nested, all Y and one X", nested, "X3 Y1 Y2", false},
		{"nested, everyone", nested, "X1 X2 X3 Y1 Y2", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			calls := make(map[string]int)
			got := c.policy.Satisfied(func(w tlog.PolicyWitness) bool {
				calls[w.Name]++
				return strings.Contains(" "+c.cosigned+" ", " "+w.Name+" ")
			})
			if got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
			for name, n := range calls {
				if n > 1 {
					t.Errorf("cosigned called %d times for %q", n, name)
				}
			}
		})
	}
	var zero tlog.Policy
	if zero.Satisfied(func(tlog.PolicyWitness) bool { return true }) {
		t.Error("zero Policy is satisfied")
	}
	var nilPolicy *tlog.Policy
	if nilPolicy.Satisfied(nil) {
		t.Error("nil Policy is satisfied")
	}
	if single.Satisfied(nil) {
		t.Error("single-witness policy satisfied by a nil cosigned func")
	}
}

func TestSingleWitnessPolicy(t *testing.T) {
	k := testKeys(t)
	text, err := tlog.SingleWitnessPolicy("supervisor", k.A.VKey, "https://supervisor.example/witness")
	if err != nil {
		t.Fatal(err)
	}
	want := "witness supervisor " + k.A.VKey + " https://supervisor.example/witness\nquorum supervisor\n"
	if string(text) != want {
		t.Errorf("got %q, want %q", text, want)
	}
	if got := parsePolicyText(t, string(text)).Quorum(); got != "supervisor" {
		t.Errorf("got quorum %q, want supervisor", got)
	}
	if text, err := tlog.SingleWitnessPolicy("w", k.A.VKey, ""); err != nil || string(text) != "witness w "+k.A.VKey+"\nquorum w\n" {
		t.Errorf("without URL: got %q, %v", text, err)
	}
	for _, c := range []struct{ name, witness, vkey, url string }{
		{"log key", "w", k.Log.VKey, ""},
		{"keyword name", "none", k.A.VKey, ""},
		{"name with newline", "w\nquorum none\n#", k.A.VKey, ""},
		{"URL with space", "w", k.A.VKey, "https://a.example/ x"},
		{"relative URL", "w", k.A.VKey, "a.example"},
		{"empty name", "", k.A.VKey, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if text, err := tlog.SingleWitnessPolicy(c.witness, c.vkey, c.url); err == nil {
				t.Errorf("got %q, want an error", text)
			}
		})
	}
}
