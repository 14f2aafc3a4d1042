package update

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
)

var testProof = string((&tlog.Proof{Index: 7, Hashes: [][]byte{bytes.Repeat([]byte{1}, 32)}, Checkpoint: []byte("example.com/log\n9\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAAAA==\n")}).Marshal())

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func artifact() *Custom {
	return &Custom{Release: "vitrine", Version: "0.1.0", LogIndex: 7, Proof: testProof, Provenance: "sha256:" + hex64}
}

func delta() *Custom {
	return &Custom{Release: "sample-ruledb", Version: "3", DeltaFrom: "2", Full: "sample-ruledb/3/sample", FullSHA256: hex64}
}

func TestMarshalExact(t *testing.T) {
	proof, _ := json.Marshal(testProof)
	for _, c := range []struct {
		c    *Custom
		want string
	}{
		{artifact(), `{"vitrine":{"release":"vitrine","version":"0.1.0","log_index":7,"proof":` + string(proof) + `,"provenance":"sha256:` + hex64 + `"}}`},
		{delta(), `{"vitrine":{"release":"sample-ruledb","version":"3","delta_from":"2","full":"sample-ruledb/3/sample","full_sha256":"` + hex64 + `"}}`},
	} {
		got, err := c.c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		back, err := ParseCustom(got)
		if err != nil {
			t.Fatal(err)
		}
		if *back != *c.c {
			t.Errorf("round trip: got %+v, want %+v", back, c.c)
		}
		// Insignificant whitespace (pretty-printed metadata) is accepted.
		var pretty bytes.Buffer
		json.Indent(&pretty, got, "", "  ")
		if _, err := ParseCustom(pretty.Bytes()); err != nil {
			t.Errorf("indented: %v", err)
		}
	}
}

func TestParseCustomRefuses(t *testing.T) {
	good, _ := artifact().Marshal()
	gd, _ := delta().Marshal()
	proof, _ := json.Marshal(testProof)
	for name, in := range map[string]string{
		"not json":           "nope",
		"no vitrine":         `{}`,
		"null vitrine":       `{"vitrine":null}`,
		"extra key":          strings.Replace(string(good), `"release"`, `"x":1,"release"`, 1),
		"extra top key":      strings.Replace(string(good), `{"vitrine"`, `{"x":1,"vitrine"`, 1),
		"key order":          `{"vitrine":{"version":"0.1.0","release":"vitrine","log_index":7,"proof":` + string(proof) + `,"provenance":"sha256:` + hex64 + `"}}`,
		"no log index":       strings.Replace(string(good), `"log_index":7,`, ``, 1),
		"other index":        strings.Replace(string(good), `"log_index":7,`, `"log_index":8,`, 1),
		"bad proof":          `{"vitrine":{"release":"vitrine","version":"0.1.0","log_index":7,"proof":"x","provenance":"sha256:` + hex64 + `"}}`,
		"bad provenance":     strings.Replace(string(good), `sha256:`+hex64, `sha256:`+strings.ToUpper(hex64), 1),
		"slash in release":   strings.Replace(string(gd), `"release":"sample-ruledb"`, `"release":"a/b"`, 1),
		"full of another":    strings.Replace(string(gd), `"full":"sample-ruledb/3/sample"`, `"full":"other/3/sample"`, 1),
		"delta with index":   strings.Replace(string(gd), `"delta_from"`, `"log_index":0,"delta_from"`, 1),
		"delta to itself":    strings.Replace(string(gd), `"delta_from":"2"`, `"delta_from":"3"`, 1),
		"trailing data":      string(good) + "{}",
		"escaped letter":     strings.Replace(string(gd), `"full_sha256"`, `"full_sha\u0032\u00356"`, 1),
		"unicode in version": strings.Replace(string(gd), `"version":"3"`, `"version":"é"`, 1),
	} {
		if c, err := ParseCustom([]byte(in)); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

func FuzzParseCustom(f *testing.F) {
	good, _ := artifact().Marshal()
	gd, _ := delta().Marshal()
	f.Add(good)
	f.Add(gd)
	f.Add([]byte(`{"vitrine":{}}`))
	f.Add([]byte(`{"vitrine":{"release":"a","version":"1","delta_from":"0","full":"a/1/x","full_sha256":"` + hex64 + `"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCustom(b)
		if err != nil {
			return
		}
		// Every accepted input is, compacted, exactly what Marshal writes.
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("accepted %q but cannot marshal it: %v", b, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, compact.Bytes()) {
			t.Fatalf("round trip:\n in  %q\n out %q", compact.Bytes(), out)
		}
		if c2, err := ParseCustom(out); err != nil || *c2 != *c {
			t.Fatalf("re-parse: %+v %v", c2, err)
		}
	})
}
