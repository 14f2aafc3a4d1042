package telemetry

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors from the table in vectors_test.go")

// A vector is one batch body and what ParseBatch makes of it, judged at
// testNow: "ok N" for a batch of N records, or the error message.
type vector struct {
	name string
	body string
	want string
}

const (
	hash  = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	hash2 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// rec is a valid record, edited by the vectors below.
	rec = `{"time":"2026-11-22T10:00:00Z","kind":"detection","sha256":"` + hash + `","size":68,"detection":"EICAR-Test-File","url":"","path":"C:/Users/jdoe/Downloads/eicar.com","product":"vitrine-agent/1.0.0","ruledb":42}`
	// min is a valid record with the required fields only.
	minRec = `{"time":"2026-11-22T10:00:00Z","kind":"file","sha256":"` + hash2 + `"}`
)

// batch returns a batch body with the given records.
func batch(recs ...string) string {
	return `{"batch_id":"b-1","records":[` + strings.Join(recs, ",") + `]}`
}

// with returns rec with the value of field replaced by the raw JSON v, or
// the field removed if v is empty.
func with(field, v string) string {
	i := strings.Index(rec, `"`+field+`":`)
	if i < 0 {
		panic(field)
	}
	j := i + len(field) + 3
	end := j
	if rec[j] == '"' {
		end = j + 1 + strings.IndexByte(rec[j+1:], '"') + 1
	} else {
		for rec[end] != ',' && rec[end] != '}' {
			end++
		}
	}
	if v == "" {
		if rec[end] == ',' {
			end++
		} else {
			i-- // drop the comma before
		}
		return rec[:i] + rec[end:]
	}
	return rec[:j] + v + rec[end:]
}

// file returns a valid record of kind file with fields as in rec.
func file() string {
	return strings.Replace(with("detection", `""`), `"kind":"detection"`, `"kind":"file"`, 1)
}

func vectors() []vector {
	v := []vector{
		// Accepted batches.
		{"ok-one", batch(rec), "ok 1"},
		{"ok-minimal", batch(minRec), "ok 1"},
		{"ok-kinds", batch(rec, file(),
			`{"time":"2026-11-22T10:00:00Z","kind":"url","sha256":"`+hash2+`","url":"https://example.com/a?b=c#d"}`), "ok 3"},
		{"ok-whitespace", " \t\r\n{ \"records\" :\r\n [ " + strings.ReplaceAll(rec, ",", " ,\n\t") + " ] ,\"batch_id\" : \"b-1\" } \n", "ok 1"},
		{"ok-keys-in-any-order", `{"records":[{"sha256":"` + hash2 + `","kind":"file","time":"2026-11-22T10:00:00Z"}],"batch_id":"b"}`, "ok 1"},
		{"ok-escapes", batch(with("path", `"C:\\Users\\j\u00f6rg\\\ud83d\ude00\/\"\b\f\n\r\t.exe"`)), "ok 1"},
		{"ok-unicode", batch(with("path", `"/home/jörg/😀/…"`)), "ok 1"},
		{"ok-time-offset-fraction", batch(with("time", `"2026-11-22T11:00:00.123456789+01:00"`)), "ok 1"},
		{"ok-time-earliest", batch(with("time", `"2000-01-01T00:00:00Z"`)), "ok 1"},
		{"ok-time-latest", batch(with("time", `"2026-11-23T12:00:00Z"`)), "ok 1"},
		{"ok-time-leap-day", batch(with("time", `"2024-02-29T23:59:59.5-12:00"`)), "ok 1"},
		{"ok-batch-id-longest", `{"batch_id":"` + strings.Repeat("aZ0._:-", 19)[:128] + `","records":[` + rec + `]}`, "ok 1"},
		{"ok-size-largest", batch(with("size", "1099511627776")), "ok 1"},
		{"ok-size-zero", batch(with("size", "0")), "ok 1"},
		{"ok-ruledb-largest", batch(with("ruledb", "18446744073709551615")), "ok 1"},
		{"ok-detection-longest", batch(with("detection", `"`+strings.Repeat("é", 256)+`"`)), "ok 1"},
		{"ok-url-on-detection", batch(with("url", `"http://example.com"`)), "ok 1"},
		{"ok-url-uppercase-scheme", batch(strings.Replace(file(), `"url":""`, `"url":"HTTPS://EXAMPLE.COM/X"`, 1)), "ok 1"},
		{"ok-path-longest", batch(with("path", `"`+strings.Repeat("ü", 1024)+`"`)), "ok 1"},
		{"ok-product-longest", batch(with("product", `"`+strings.Repeat("p", 128)+`"`)), "ok 1"},
		{"ok-optional-absent", batch(with("size", ""), with("url", ""), with("path", ""), with("product", ""), with("ruledb", "")), "ok 5"},

		// The body.
		{"body-empty", "", "body is empty; want a JSON object"},
		{"body-blank", " \n", "body is empty; want a JSON object"},
		{"body-array", "[]", "body: must be a JSON object, not an array"},
		{"body-null", "null", "body: must be a JSON object, not null"},
		{"body-garbage", "batch", "body: malformed JSON at offset 0: expected a value"},
		{"body-bom", "\ufeff" + batch(rec), "body: malformed JSON at offset 0: expected a value"},
		{"body-truncated", batch(rec)[:59], "record 0: malformed JSON at offset 59: unexpected end of body; expected ',' or '}'"},
		{"body-truncated-in-string", batch(rec)[:40], "record 0: time: malformed JSON at offset 40: unexpected end of body; unterminated string"},
		{"body-trailing-data", batch(rec) + "x", fmt.Sprintf("malformed JSON at offset %d: data after the batch object", len(batch(rec)))},
		{"body-two-objects", batch(rec) + batch(rec), fmt.Sprintf("malformed JSON at offset %d: data after the batch object", len(batch(rec)))},
		{"body-trailing-comma", `{"batch_id":"b","records":[` + rec + `],}`, fmt.Sprintf("malformed JSON at offset %d: expected a quoted key", len(rec)+29)},
		{"body-unknown-field", `{"batch_id":"b","endpoint":"e1","records":[` + rec + `]}`, "endpoint: unknown field"},
		{"body-unknown-field-case", `{"Batch_ID":"b","records":[` + rec + `]}`, "Batch_ID: unknown field"},
		{"body-unknown-field-odd", `{"a b\n":1}`, `"a b\n": unknown field`},
		{"body-duplicate-key", `{"batch_id":"b","batch_id":"b","records":[` + rec + `]}`, "batch_id: duplicate key"},
		{"body-missing-colon", `{"batch_id" "b"}`, "malformed JSON at offset 12: expected ':' after key"},
		{"body-unquoted-key", `{batch_id:"b"}`, "malformed JSON at offset 1: expected a quoted key"},

		// batch_id.
		{"batch-id-missing", `{"records":[` + rec + `]}`, "batch_id: missing"},
		{"batch-id-empty", `{"batch_id":"","records":[` + rec + `]}`, "batch_id: must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -"},
		{"batch-id-too-long", `{"batch_id":"` + strings.Repeat("a", 129) + `","records":[` + rec + `]}`, "batch_id: must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -"},
		{"batch-id-slash", `{"batch_id":"a/b","records":[` + rec + `]}`, "batch_id: must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -"},
		{"batch-id-unicode", `{"batch_id":"bätch","records":[` + rec + `]}`, "batch_id: must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -"},
		{"batch-id-number", `{"batch_id":17,"records":[` + rec + `]}`, "batch_id: must be a string, not a number"},
		{"batch-id-null", `{"batch_id":null,"records":[` + rec + `]}`, "batch_id: must be a string, not null"},

		// records.
		{"records-missing", `{"batch_id":"b"}`, "records: missing"},
		{"records-empty", `{"batch_id":"b","records":[]}`, "records: must hold at least one record"},
		{"records-null", `{"batch_id":"b","records":null}`, "records: must be an array of records, not null"},
		{"records-object", `{"batch_id":"b","records":` + rec + `}`, "records: must be an array of records, not an object"},
		{"records-trailing-comma", batch(rec)[:len(batch(rec))-2] + ",]}", fmt.Sprintf("record 1: malformed JSON at offset %d: expected a value", len(batch(rec))-1)},
		{"records-missing-comma", batch(rec)[:len(batch(rec))-2] + " " + rec + "]}", fmt.Sprintf("records: malformed JSON at offset %d: expected ',' or ']'", len(batch(rec))-1)},
		{"record-not-object", batch(rec, "17"), "record 1: must be a JSON object, not a number"},
		{"record-null", batch("null"), "record 0: must be a JSON object, not null"},
		{"record-empty", batch("{}"), "record 0: time: missing"},
		{"first-bad-record-wins", batch(rec, rec, with("sha256", `"x"`), with("kind", `"x"`)), "record 2: sha256: must be 64 lowercase hex digits"},
		{"syntax-after-bad-record", batch(rec, with("sha256", `"x"`), "{"), "record 1: sha256: must be 64 lowercase hex digits"},

		// Keys of a record.
		{"record-unknown-field", batch(strings.Replace(rec, `{`, `{"endpoint":"e1",`, 1)), "record 0: endpoint: unknown field"},
		{"record-unknown-field-case", batch(strings.Replace(rec, `"sha256"`, `"SHA256"`, 1)), "record 0: SHA256: unknown field"},
		{"ok-escaped-key", batch(strings.Replace(rec, `"sha256"`, `"sha\u0032\u00356"`, 1)), "ok 1"},
		{"record-unknown-field-long", batch(strings.Replace(rec, `{`, `{"`+strings.Repeat("x", 100)+`":1,`, 1)), `record 0: "` + strings.Repeat("x", 64) + `…": unknown field`},
		{"record-duplicate-key", batch(strings.Replace(rec, `}`, `,"size":68}`, 1)), "record 0: size: duplicate key"},
		{"record-missing-time", batch(with("time", "")), "record 0: time: missing"},
		{"record-missing-kind", batch(with("kind", "")), "record 0: kind: missing"},
		{"record-missing-sha256", batch(with("sha256", "")), "record 0: sha256: missing"},

		// time.
		{"time-number", batch(with("time", "1764000000")), "record 0: time: must be a string, not a number"},
		{"time-null", batch(with("time", "null")), "record 0: time: must be a string, not null"},
		{"time-no-zone", batch(with("time", `"2026-11-22T10:00:00"`)), timeFormat},
		{"time-lowercase-t", batch(with("time", `"2026-11-22t10:00:00Z"`)), timeFormat},
		{"time-space", batch(with("time", `"2026-11-22 10:00:00Z"`)), timeFormat},
		{"time-date-only", batch(with("time", `"2026-11-22"`)), timeFormat},
		{"time-ten-fraction-digits", batch(with("time", `"2026-11-22T10:00:00.1234567891Z"`)), timeFormat},
		{"time-empty-fraction", batch(with("time", `"2026-11-22T10:00:00.Z"`)), timeFormat},
		{"time-comma-fraction", batch(with("time", `"2026-11-22T10:00:00,5Z"`)), timeFormat},
		{"time-february-30", batch(with("time", `"2024-02-30T10:00:00Z"`)), timeFormat},
		{"time-february-29-not-leap", batch(with("time", `"2025-02-29T10:00:00Z"`)), timeFormat},
		{"time-hour-24", batch(with("time", `"2026-11-22T24:00:00Z"`)), timeFormat},
		{"time-leap-second", batch(with("time", `"2016-12-31T23:59:60Z"`)), timeFormat},
		{"time-offset-hour-24", batch(with("time", `"2026-11-22T10:00:00+24:00"`)), timeFormat},
		{"time-offset-no-colon", batch(with("time", `"2026-11-22T10:00:00+0100"`)), timeFormat},
		{"time-before-2000", batch(with("time", `"1999-12-31T23:59:59.999999999Z"`)), "record 0: time: before 2000-01-01T00:00:00Z"},
		{"time-before-2000-by-offset", batch(with("time", `"2000-01-01T00:30:00+01:00"`)), "record 0: time: before 2000-01-01T00:00:00Z"},
		{"time-future", batch(with("time", `"2026-11-23T12:00:00.000000001Z"`)), "record 0: time: more than 24h0m0s in the future"},

		// kind.
		{"kind-unknown", batch(with("kind", `"virus"`)), kindReason},
		{"kind-case", batch(with("kind", `"Detection"`)), kindReason},
		{"kind-empty", batch(with("kind", `""`)), kindReason},
		{"kind-number", batch(with("kind", `1`)), "record 0: kind: must be a string, not a number"},

		// sha256.
		{"sha256-uppercase", batch(with("sha256", `"`+strings.ToUpper(hash)+`"`)), shaReason},
		{"sha256-short", batch(with("sha256", `"`+hash[:63]+`"`)), shaReason},
		{"sha256-long", batch(with("sha256", `"`+hash+`0"`)), shaReason},
		{"sha256-not-hex", batch(with("sha256", `"`+hash[:63]+`g"`)), shaReason},
		{"sha256-prefixed", batch(with("sha256", `"sha256:`+hash[7:]+`"`)), shaReason},
		{"sha256-empty", batch(with("sha256", `""`)), shaReason},

		// size.
		{"size-negative", batch(with("size", "-1")), sizeReason},
		{"size-negative-zero", batch(with("size", "-0")), sizeReason},
		{"size-too-large", batch(with("size", "1099511627777")), sizeReason},
		{"size-overflow", batch(with("size", "99999999999999999999999")), sizeReason},
		{"size-fraction", batch(with("size", "68.0")), sizeReason},
		{"size-exponent", batch(with("size", "6.8e1")), sizeReason},
		{"size-string", batch(with("size", `"68"`)), "record 0: size: must be an integer, not a string"},
		{"size-null", batch(with("size", `null`)), "record 0: size: must be an integer, not null"},
		{"size-leading-zero", batch(with("size", "068")), fmt.Sprintf("record 0: size: malformed JSON at offset %d: number with a leading zero", strings.Index(batch(rec), "68,")+1)},
		{"size-minus-alone", batch(with("size", "-")), fmt.Sprintf("record 0: size: malformed JSON at offset %d: expected a digit after '-'", strings.Index(batch(rec), "68,")+1)},

		// detection.
		{"detection-missing", batch(with("detection", "")), "record 0: detection: required when kind is detection"},
		{"detection-empty", batch(with("detection", `""`)), "record 0: detection: required when kind is detection"},
		{"detection-on-file", batch(strings.Replace(rec, `"kind":"detection"`, `"kind":"file"`, 1)), "record 0: detection: must be empty unless kind is detection"},
		{"detection-too-long", batch(with("detection", `"`+strings.Repeat("é", 257)+`"`)), "record 0: detection: longer than 256 characters"},
		{"detection-control", batch(with("detection", `"EICAR\nTest"`)), "record 0: detection: must hold only printable characters"},
		{"detection-unicode-control", batch(with("detection", `"EICAR\u2028Test"`)), "record 0: detection: must hold only printable characters"},

		// url.
		{"url-missing", batch(`{"time":"2026-11-22T10:00:00Z","kind":"url","sha256":"` + hash2 + `"}`), "record 0: url: required when kind is url"},
		{"url-relative", batch(with("url", `"/downloads/x.exe"`)), urlReason},
		{"url-ftp", batch(with("url", `"ftp://example.com/x"`)), urlReason},
		{"url-no-host", batch(with("url", `"http:///x"`)), urlReason},
		{"url-opaque", batch(with("url", `"http:example.com"`)), urlReason},
		{"url-bad-escape", batch(with("url", `"http://example.com/%zz"`)), urlReason},
		{"url-space", batch(with("url", `"http://example.com/a b"`)), "record 0: url: must not contain spaces; percent-encode them"},
		{"url-control", batch(with("url", `"http://example.com/\u0007"`)), "record 0: url: must hold only printable characters"},
		{"url-too-long", batch(with("url", `"http://example.com/`+strings.Repeat("a", 2030)+`"`)), "record 0: url: longer than 2048 characters"},

		// path.
		{"path-nul", batch(with("path", `"C:/x\u0000.exe"`)), "record 0: path: must not contain NUL"},
		{"path-too-long", batch(with("path", `"`+strings.Repeat("ü", 1025)+`"`)), "record 0: path: longer than 1024 characters"},
		{"path-number", batch(with("path", `0`)), "record 0: path: must be a string, not a number"},
		{"path-object", batch(with("path", `{}`)), "record 0: path: must be a string, not an object"},

		// product.
		{"product-too-long", batch(with("product", `"`+strings.Repeat("p", 129)+`"`)), "record 0: product: longer than 128 characters"},
		{"product-tab", batch(with("product", `"agent\t1.0"`)), "record 0: product: must hold only printable characters"},

		// ruledb.
		{"ruledb-negative", batch(with("ruledb", "-42")), ruledbReason},
		{"ruledb-overflow", batch(with("ruledb", "18446744073709551616")), ruledbReason},
		{"ruledb-fraction", batch(with("ruledb", "4.2")), ruledbReason},
		{"ruledb-bool", batch(with("ruledb", "true")), "record 0: ruledb: must be an integer, not a boolean"},

		// Strings.
		{"string-invalid-utf8", batch(with("path", "\"C:/\xff.exe\"")), fmt.Sprintf("record 0: path: malformed JSON at offset %d: invalid UTF-8 in string", strings.Index(batch(rec), "C:/")+3)},
		{"string-invalid-utf8-escaped", batch(with("path", "\"C:\\/\xc3.exe\"")), fmt.Sprintf("record 0: path: malformed JSON at offset %d: invalid UTF-8 in string", strings.Index(batch(rec), "C:/")+4)},
		{"string-surrogate-utf8", batch(with("path", "\"\xed\xa0\x80\"")), fmt.Sprintf("record 0: path: malformed JSON at offset %d: invalid UTF-8 in string", strings.Index(batch(rec), "C:/"))},
		{"string-lone-surrogate", batch(with("path", `"\ud83d.exe"`)), fmt.Sprintf(`record 0: path: malformed JSON at offset %d: lone UTF-16 surrogate in \u escape`, strings.Index(batch(rec), "C:/"))},
		{"string-lone-low-surrogate", batch(with("path", `"\ude00"`)), fmt.Sprintf(`record 0: path: malformed JSON at offset %d: lone UTF-16 surrogate in \u escape`, strings.Index(batch(rec), "C:/"))},
		{"string-bad-escape", batch(with("path", `"C:\Users"`)), fmt.Sprintf(`record 0: path: malformed JSON at offset %d: invalid escape \U`, strings.Index(batch(rec), "C:/")+2)},
		{"string-short-unicode-escape", batch(with("path", `"\u00e"`)), fmt.Sprintf(`record 0: path: malformed JSON at offset %d: \u must be followed by four hex digits`, strings.Index(batch(rec), "C:/"))},
		{"string-raw-tab", batch(with("path", "\"C:/\t.exe\"")), fmt.Sprintf("record 0: path: malformed JSON at offset %d: control character in string; escape it", strings.Index(batch(rec), "C:/")+3)},
		{"string-unterminated", `{"batch_id":"b`, "batch_id: malformed JSON at offset 14: unexpected end of body; unterminated string"},
		{"key-invalid-utf8", batch(strings.Replace(rec, `"size"`, "\"s\xffze\"", 1)), fmt.Sprintf("record 0: malformed JSON at offset %d: invalid UTF-8 in string", strings.Index(batch(rec), `"size"`)+2)},
	}
	return v
}

const (
	timeFormat   = "record 0: time: must be an RFC 3339 time such as 2026-11-22T10:00:00Z or 2026-11-22T11:00:00.5+01:00"
	kindReason   = `record 0: kind: must be "detection", "file" or "url"`
	shaReason    = "record 0: sha256: must be 64 lowercase hex digits"
	sizeReason   = "record 0: size: must be an integer from 0 to 1099511627776"
	ruledbReason = "record 0: ruledb: must be an integer from 0 to 18446744073709551615"
	urlReason    = "record 0: url: must be an absolute http or https URL"
)

// result describes what parseBatch made of body, in the form of a vector's
// want.
func result(body []byte) string {
	b, err := parseBatch(body, testNow)
	if err != nil {
		if b != nil {
			return "error with a partial batch: " + err.Error()
		}
		return err.Error()
	}
	return fmt.Sprintf("ok %d", len(b.Records))
}

func TestVectors(t *testing.T) {
	for _, v := range vectors() {
		t.Run(v.name, func(t *testing.T) {
			if got := result([]byte(v.body)); got != v.want {
				t.Errorf("got  %s\nwant %s", got, v.want)
			}
		})
	}
}

// TestVectorFiles checks that testdata/vectors holds exactly the vectors of
// the table (go test -run TestVectorFiles -update rewrites them), so that
// other implementations — an agent's, an auditor's — can test against them.
func TestVectorFiles(t *testing.T) {
	dir := filepath.Join("testdata", "vectors")
	var index bytes.Buffer
	index.WriteString("# Batch bodies and what a region makes of them with its clock at " + testNow.Format("2006-01-02T15:04:05Z") + ":\n")
	index.WriteString("# \"ok N\" for a batch of N records, or the error message. Generated by go test -run TestVectorFiles -update.\n")
	files := map[string][]byte{}
	for _, v := range vectors() {
		files[v.name+".json"] = []byte(v.body)
		fmt.Fprintf(&index, "%s.json: %s\n", v.name, v.want)
	}
	files["want.txt"] = index.Bytes()
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("%s holds %d files, want %d; run go test -run TestVectorFiles -update", dir, len(entries), len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from the table (%v); run go test -run TestVectorFiles -update", name, err)
		}
	}
}
