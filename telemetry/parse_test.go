package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseBatchValues(t *testing.T) {
	body := `{"batch_id":"b-1:x.y_z","records":[` + rec + `,` +
		`{"time":"2026-11-22T11:30:00.25+01:30","kind":"url","sha256":"` + hash2 + `","size":0,"url":"https://example.com/a?b=c","path":"C:\\Users\\j\u00f6rg\\\ud83d\ude00.exe","product":"","ruledb":0}]}`
	got, err := parseBatch([]byte(body), testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := &Batch{BatchID: "b-1:x.y_z", Records: []Record{{
		Time:      time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Kind:      KindDetection,
		SHA256:    hash,
		Size:      68,
		Detection: "EICAR-Test-File",
		Path:      "C:/Users/jdoe/Downloads/eicar.com",
		Product:   "vitrine-agent/1.0.0",
		RuleDB:    42,
	}, {
		Time:   time.Date(2026, 11, 22, 10, 0, 0, 250e6, time.UTC),
		Kind:   KindURL,
		SHA256: hash2,
		URL:    "https://example.com/a?b=c",
		Path:   "C:\\Users\\jörg\\😀.exe",
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if loc := got.Records[1].Time.Location(); loc != time.UTC {
		t.Errorf("time in %v, want UTC", loc)
	}
}

func TestParseBatchErrors(t *testing.T) {
	for _, tc := range []struct {
		body         string
		index        int
		field        string
		errTooLarge  bool
		reasonPrefix string
	}{
		{batch(rec, rec, with("sha256", `"x"`)), 2, "sha256", false, "must be 64"},
		{batch(strings.Replace(rec, `{`, `{"foo":1,`, 1)), 0, "foo", false, "unknown field"},
		{`{"batch_id":"b","records":[` + rec + `],"x":1}`, -1, "x", false, "unknown field"},
		{`{"batch_id":"b c","records":[` + rec + `]}`, -1, "batch_id", false, "must be"},
		{batch(with("size", "1e3")), 0, "size", false, "must be an integer"},
		{batch(rec) + "}", -1, "", false, "malformed JSON"},
		{batch(strings.Repeat(minRec+",", MaxBatchRecords) + minRec), -1, "records", true, "more than 10000 records"},
		{batch(minRec) + strings.Repeat(" ", MaxBatchBytes), -1, "", true, "body is larger than 16777216 bytes"},
	} {
		_, err := ParseBatch([]byte(tc.body))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("error %v (%T), want a *FieldError", err, err)
			continue
		}
		if fe.Index != tc.index || fe.Field != tc.field || !strings.HasPrefix(fe.Reason, tc.reasonPrefix) {
			t.Errorf("got %d %q %q, want %d %q %q…", fe.Index, fe.Field, fe.Reason, tc.index, tc.field, tc.reasonPrefix)
		}
		if got := errors.Is(err, ErrTooLarge); got != tc.errTooLarge {
			t.Errorf("%v: errors.Is(err, ErrTooLarge) = %v, want %v", err, got, tc.errTooLarge)
		}
	}
}

func TestParseBatchLimits(t *testing.T) {
	full := batch(strings.Repeat(minRec+",", MaxBatchRecords-1) + minRec)
	b, err := ParseBatch([]byte(full))
	if err != nil || len(b.Records) != MaxBatchRecords {
		t.Fatalf("batch of %d records: %v", MaxBatchRecords, err)
	}
	padded := full + strings.Repeat(" ", MaxBatchBytes-len(full))
	if _, err := ParseBatch([]byte(padded)); err != nil {
		t.Errorf("body of exactly MaxBatchBytes: %v", err)
	}
}

// TestParseBatchNow checks that ParseBatch judges times against the clock.
func TestParseBatchNow(t *testing.T) {
	now := time.Now().UTC()
	for _, tc := range []struct {
		t  time.Time
		ok bool
	}{
		{now, true},
		{now.Add(MaxFuture - time.Minute), true},
		{now.Add(MaxFuture + time.Minute), false},
	} {
		_, err := ParseBatch([]byte(batch(with("time", `"`+tc.t.Format(time.RFC3339Nano)+`"`))))
		if (err == nil) != tc.ok {
			t.Errorf("time %v at %v: error %v, want ok=%v", tc.t, now, err, tc.ok)
		}
	}
}

// stdlibParse decodes body with encoding/json as strictly as it can (unknown
// fields refused, nothing after the object), with times in UTC.
func stdlibParse(body []byte) (*Batch, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var b Batch
	if err := dec.Decode(&b); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	for i := range b.Records {
		b.Records[i].Time = b.Records[i].Time.UTC()
	}
	return &b, nil
}

// checkAgainstStdlib checks that what parseBatch accepts, encoding/json
// accepts too and reads the same, and that an accepted batch survives a
// round trip through encoding/json.
func checkAgainstStdlib(t *testing.T, body []byte) (accepted bool) {
	t.Helper()
	got, err := parseBatch(body, testNow)
	if err != nil {
		if got != nil {
			t.Fatalf("error %v with a partial batch", err)
		}
		return false
	}
	want, serr := stdlibParse(body)
	if serr != nil {
		t.Fatalf("parseBatch accepts what encoding/json refuses (%v):\n%q", serr, body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseBatch and encoding/json differ on %q:\ngot  %+v\nwant %+v", body, got, want)
	}
	again, merr := json.Marshal(got)
	if merr != nil {
		t.Fatal(merr)
	}
	got2, err := parseBatch(again, testNow)
	if err != nil {
		t.Fatalf("re-marshalled batch refused: %v\n%s", err, again)
	}
	if !reflect.DeepEqual(got, got2) {
		t.Fatalf("round trip differs:\ngot  %+v\nwant %+v", got2, got)
	}
	return true
}

// TestStdlibAgreement checks parseBatch against encoding/json on generated
// batches (which it must accept) and on random mutations of them.
func TestStdlibAgreement(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	accepted, refused := 0, 0
	for seed := range uint64(50) {
		body := genBody(seed, 20)
		if !checkAgainstStdlib(t, body) {
			t.Fatalf("generated batch refused: %v", result(body))
		}
		for range 200 {
			if checkAgainstStdlib(t, mutate(rng, body)) {
				accepted++
			} else {
				refused++
			}
		}
	}
	t.Logf("mutations: %d accepted, %d refused", accepted, refused)
}

// mutate returns body with a few random byte-level edits, biased towards
// the characters that matter to JSON.
func mutate(rng *rand.Rand, body []byte) []byte {
	b := bytes.Clone(body)
	const alphabet = "\"\\{}[],:0123456789-+.eEtTzZ \t\nabcdefxu\x00\x7f\xc3\xa9\xff"
	for range 1 + rng.IntN(3) {
		i := rng.IntN(len(b))
		switch rng.IntN(4) {
		case 0:
			b[i] = alphabet[rng.IntN(len(alphabet))]
		case 1:
			b = append(b[:i], b[i+1:]...)
		case 2:
			b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
		case 3:
			j := min(len(b), i+1+rng.IntN(20))
			b = append(b[:i], b[j:]...)
		}
		if len(b) == 0 {
			break
		}
	}
	return b
}

func TestParseTimeAgreesWithTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T10:00:00Z", "2026-11-22T10:00:00.1Z", "2026-11-22T10:00:00.123456789Z",
		"2026-11-22T10:00:00+23:59", "2026-11-22T10:00:00-23:59", "2026-11-22T10:00:00-00:00",
		"2000-02-29T00:00:00Z", "2100-02-28T23:59:59Z", "9999-12-31T23:59:59.999999999Z",
		"0000-01-01T00:00:00Z",
	} {
		checkParseTime(t, s)
	}
}

func checkParseTime(t *testing.T, s string) {
	t.Helper()
	got, ok := parseTime(s)
	want, err := time.Parse(time.RFC3339, s)
	if !ok {
		return
	}
	if err != nil {
		t.Fatalf("parseTime(%q) accepts what time.Parse refuses: %v", s, err)
	}
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("parseTime(%q) = %v, time.Parse = %v", s, got, want)
	}
	var viaJSON time.Time
	if err := viaJSON.UnmarshalJSON([]byte(`"` + s + `"`)); err != nil || !viaJSON.Equal(got) {
		t.Fatalf("parseTime(%q) = %v, time.Time.UnmarshalJSON = %v, %v", s, got, viaJSON, err)
	}
}

func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-22T10:00:00Z")
	f.Add("2026-11-22T10:00:00.123456789+01:00")
	f.Add("2024-02-29T23:59:59-12:00")
	f.Fuzz(checkParseTime)
}

// FuzzParseBatch checks that ParseBatch never panics, never returns part of
// a batch, agrees with encoding/json on what it accepts, and reads back
// exactly what encoding/json writes of an accepted batch.
func FuzzParseBatch(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "vectors", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no vectors: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(genBody(1, 3))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAgainstStdlib(t, body)
	})
}
