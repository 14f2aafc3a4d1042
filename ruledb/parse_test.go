package ruledb

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestLoadSample(t *testing.T) {
	srcs := loadSample(t)
	if got, want := len(srcs), 3; got != want {
		t.Fatalf("loaded %d files, want %d", got, want)
	}
	md5, _ := hex.DecodeString("44d88612fea8a8f36de82e1278abb02f")
	sha, _ := hex.DecodeString("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")
	want := []Signature{
		{Kind: KindMD5, Name: "Vitrine.Test.EICAR-MD5", Hash: md5, Size: 68},
		{Kind: KindSHA256, Name: "Vitrine.Test.EICAR-SHA256", Hash: sha, Size: 68},
		{Kind: KindSHA256, Name: "Vitrine.Test.EICAR-SHA256-AnySize", Hash: sha, Size: UnknownSize, MinFLevel: 73},
		{Kind: KindBody, Name: "Vitrine.Test.EICAR-Body", Offset: 0, Pattern: hex.EncodeToString([]byte(eicar))},
		{Kind: KindBody, Name: "Vitrine.Test.PE-Stub", Target: 1, Offset: 0, Pattern: "4d5a9000{56}50450000"},
	}
	all := sourceSigs(srcs)
	for _, w := range want {
		found := false
		for _, s := range all {
			if reflect.DeepEqual(s, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("sample lacks %+v", w)
		}
	}
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		kind Kind
		line string
		want Signature
	}{
		{KindBody, "A:0:*:DEADbeef", Signature{Kind: KindBody, Name: "A", Offset: AnyOffset, Pattern: "deadbeef"}},
		{KindBody, "A:7:12:dead{-4}beef*cafe{3-}0102{00005}0304:51:255", Signature{Kind: KindBody, Name: "A", Target: 7, Offset: 12, Pattern: "dead{-4}beef*cafe{3-}0102{5}0304", MinFLevel: 51, MaxFLevel: 255}},
		{KindBody, "A:14:0:de?d(aa|BBcc)ad!(01|02)eeff{1-2}a?0102", Signature{Kind: KindBody, Name: "A", Target: 14, Pattern: "de?d(aa|bbcc)ad!(01|02)eeff{1-2}a?0102"}},
		{KindBody, "A:0:*:01{2}0203:17", Signature{Kind: KindBody, Name: "A", Offset: AnyOffset, Pattern: "01{2}0203", MinFLevel: 17}},
		{KindMD5, "44D88612FEA8A8F36DE82E1278ABB02F:*:E:73", Signature{Kind: KindMD5, Name: "E", Hash: mustHex("44d88612fea8a8f36de82e1278abb02f"), Size: UnknownSize, MinFLevel: 73}},
		{KindMD5, "44d88612fea8a8f36de82e1278abb02f:0:E:0:9", Signature{Kind: KindMD5, Name: "E", Hash: mustHex("44d88612fea8a8f36de82e1278abb02f"), MaxFLevel: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseLine(tt.kind, tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			back, err := parseLine(tt.kind, got.String())
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("String() = %q parses to %+v, %v", got.String(), back, err)
			}
		})
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseErrors(t *testing.T) {
	const good = "Ok:0:*:010203\n"
	tests := []struct {
		file, text string
		line       int
		want       string
	}{
		{"a.ndb", good + "\nBad:0:*\n", 3, "3 fields"},
		{"a.ndb", "Bad:0:*:0g01\n", 1, `unexpected "0g"`},
		{"a.ndb", good + "Bad:15:*:010203\n", 2, "target 15 out of range"},
		{"a.ndb", "Bad:0:EOF-10:010203\n", 1, "offset"},
		{"a.ndb", "Bad:0:*:*0102\n", 1, "gap at position 0"},
		{"a.ndb", "Bad:0:*:0102*\n", 1, "ends with a gap"},
		{"a.ndb", "Bad:0:*:0102*{2}0304\n", 1, "gap at position 5"},
		{"a.ndb", "Bad:0:*:01{5-3}02\n", 1, "upper bound"},
		{"a.ndb", "Bad:0:*:0102{3\n", 1, "unclosed {"},
		{"a.ndb", "Bad:0:*:0102(aa)\n", 1, "at least two"},
		{"a.ndb", "Bad:0:*:0102!(aa|bbcc)\n", 1, "equal length"},
		{"a.ndb", "Bad:0:*:01??02\n", 1, "lacks two fixed bytes in a row"},
		{"a.ndb", "Bad:0:*:0102*03\n", 1, "lacks two fixed bytes in a row"},
		{"a.ndb", "Bad:0:*:0102{1-3}03\n", 1, "lacks two fixed bytes in a row"},
		{"a.ndb", "Bad:0:*:01(02|03)04\n", 1, "lacks two fixed bytes in a row"},
		{"a.ndb", "Bad:0:*:0102[1-2]03\n", 1, `unexpected "[1"`},
		{"a.ndb", ":0:*:010203\n", 1, "empty name"},
		{"a.ndb", "Bad name:0:*:010203\n", 1, "not allowed"},
		{"a.ndb", "Bad:0:*:010203:10:5\n", 1, "max functionality level"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68\n", 1, "2 fields"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb0:68:E\n", 1, "want 32 hex digits"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb0zz:68:E\n", 1, "not hex"},
		{"a.hsb", "44d88612fea8a8f36de82e1278abb02f:68:E\n", 1, "want 64 hex digits"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:-1:E\n", 1, "size"},
		{"a.hdb", "44d88612fea8a8f36de82e1278abb02f:68:E:x\n", 1, "min functionality level"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Parse(tt.file, strings.NewReader(tt.text))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if pe.File != tt.file || pe.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want %s:%d and %q", err, tt.file, tt.line, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.file+":") {
				t.Errorf("err = %q does not start with file:line", err)
			}
		})
	}
	long := good + "# comment\n" + strings.Repeat("0", maxLine+1)
	if _, err := Parse("a.ndb", strings.NewReader(long)); err == nil || !strings.HasPrefix(err.Error(), "a.ndb:3: ") {
		t.Errorf("overlong line: err = %v, want a.ndb:3", err)
	}
	if _, err := Parse("a.ldb", strings.NewReader(good)); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Parse(a.ldb) = %v, want ErrUnknownFormat", err)
	}
}
