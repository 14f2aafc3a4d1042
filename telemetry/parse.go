package telemetry

import (
	"math"
	"strconv"
	"time"
)

// ParseBatch parses and validates a batch body as an endpoint posts it to
// its home region: a JSON object {"batch_id":…,"records":[…]} whose records
// follow the rules of [Record]. It is strict, because what it accepts is
// stored: it rejects unknown and duplicate keys (matched exactly, never by
// case folding), null values, invalid UTF-8, lone UTF-16 surrogates in
// escapes, numbers that are not plain integers, and anything after the
// object.
//
// The batch is taken whole or not at all: on any problem ParseBatch returns
// a nil batch and a [*FieldError] naming the first problem in document
// order — the record's index and field, or the batch-level field. An error
// wraps [ErrTooLarge] when the body is over [MaxBatchBytes] or the batch
// holds more than [MaxBatchRecords] records.
//
// Times are returned in UTC. To save an allocation per field, the strings of
// the returned batch share one copy of b (b itself is not retained and may
// be reused): a caller that keeps a few strings of a batch for long should
// clone them with strings.Clone so that the rest can be freed.
//
// ParseBatch judges record times against the current time; it is safe for
// concurrent use.
func ParseBatch(b []byte) (*Batch, error) {
	batch, err := parseBatch(b, time.Now())
	if err != nil {
		return nil, err // never a typed nil
	}
	return batch, nil
}

// parseBatch is ParseBatch with record times judged against now.
func parseBatch(b []byte, now time.Time) (*Batch, *FieldError) {
	if len(b) > MaxBatchBytes {
		return nil, &FieldError{Index: -1, Reason: "body is larger than " + strconv.Itoa(MaxBatchBytes) + " bytes", err: ErrTooLarge}
	}
	p := parser{b: b, s: string(b), rec: -1, latest: now.Add(MaxFuture)}
	batch, err := p.batch()
	if err != nil {
		return nil, err
	}
	return batch, nil
}

// parser reads one batch. Each method that reads a value starts at the
// value's first byte (whitespace already skipped) and leaves p.i just after
// it.
type parser struct {
	b []byte
	s string // string(b): strings without escapes are substrings of it
	i int

	rec   int    // index of the record being read, -1 at batch level
	field string // field whose value is being read, for errors

	latest time.Time // latest acceptable record time
}

// Keys of a batch.
const (
	batchKeyID = 1 << iota
	batchKeyRecords
)

func (p *parser) batch() (*Batch, *FieldError) {
	p.ws()
	if p.i >= len(p.b) {
		return nil, &FieldError{Index: -1, Reason: "body is empty; want a JSON object"}
	}
	p.field = "body"
	if p.b[p.i] != '{' {
		return nil, p.notA("a JSON object")
	}
	p.field = ""
	out := new(Batch)
	var seen int
	err := p.object(func(key string) *FieldError {
		switch key {
		case "batch_id":
			if seen&batchKeyID != 0 {
				return &FieldError{Index: -1, Field: key, Reason: "duplicate key"}
			}
			seen |= batchKeyID
			p.field = "batch_id"
			id, err := p.str()
			if err != nil {
				return err
			}
			if !validBatchID(id) {
				return p.fieldErr("must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -")
			}
			out.BatchID = id
		case "records":
			if seen&batchKeyRecords != 0 {
				return &FieldError{Index: -1, Field: key, Reason: "duplicate key"}
			}
			seen |= batchKeyRecords
			recs, err := p.records()
			if err != nil {
				return err
			}
			out.Records = recs
		default:
			return &FieldError{Index: -1, Field: keyName(key), Reason: "unknown field"}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, p.syntax("data after the batch object")
	}
	if seen&batchKeyID == 0 {
		return nil, &FieldError{Index: -1, Field: "batch_id", Reason: "missing"}
	}
	if seen&batchKeyRecords == 0 {
		return nil, &FieldError{Index: -1, Field: "records", Reason: "missing"}
	}
	return out, nil
}

// next reads the separator after a member of an object (close '}') or an
// element of an array (close ']'), and the whitespace around it. It reports
// whether the object or array is done.
func (p *parser) next(close byte) (done bool, err *FieldError) {
	p.ws()
	switch p.peek() {
	case ',':
		p.i++
		p.ws()
		return false, nil
	case close:
		p.i++
		return true, nil
	}
	return false, p.syntax("expected ',' or '" + string(close) + "'")
}

// object reads an object, which starts at the current offset, calling
// member for each key with the offset at the key's value; member reads the
// value.
func (p *parser) object(member func(key string) *FieldError) *FieldError {
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
		return nil
	}
	for {
		key, err := p.key()
		if err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		p.field = ""
		if done, err := p.next('}'); err != nil {
			return err
		} else if done {
			return nil
		}
	}
}

// typicalRecordLen is a record length shorter than most, used to size the
// records slice: the shortest valid record, {"time":"…Z","kind":"file",
// "sha256":"…"}, is 121 bytes, and records with a path and a product are
// about 250.
const typicalRecordLen = 200

func (p *parser) records() ([]Record, *FieldError) {
	p.field = "records"
	if p.peek() != '[' {
		return nil, p.notA("an array of records")
	}
	p.i++
	p.ws()
	if p.peek() == ']' {
		return nil, p.fieldErr("must hold at least one record")
	}
	// Size the slice from the body so that it is seldom regrown.
	recs := make([]Record, 0, min(MaxBatchRecords, (len(p.b)-p.i)/typicalRecordLen+1))
	for {
		if len(recs) == MaxBatchRecords {
			return nil, &FieldError{Index: -1, Field: "records", Reason: "more than " + strconv.Itoa(MaxBatchRecords) + " records", err: ErrTooLarge}
		}
		recs = append(recs, Record{})
		p.rec, p.field = len(recs)-1, ""
		if err := p.record(&recs[len(recs)-1]); err != nil {
			return nil, err
		}
		p.rec, p.field = -1, "records"
		if done, err := p.next(']'); err != nil {
			return nil, err
		} else if done {
			return recs, nil
		}
	}
}

// Fields of a record, as bits of a set.
const (
	fieldTime = 1 << iota
	fieldKind
	fieldSHA256
	fieldSize
	fieldDetection
	fieldURL
	fieldPath
	fieldProduct
	fieldRuleDB
)

// required is the set of fields every record must have. The others are
// zero when absent, which the rules of [Record] then judge.
const required = fieldTime | fieldKind | fieldSHA256

// MaxSize is the largest file size a record may report (1 TiB).
const MaxSize = 1 << 40

func (p *parser) record(r *Record) *FieldError {
	if p.peek() != '{' {
		return p.notA("a JSON object")
	}
	var seen int
	err := p.object(func(key string) *FieldError {
		var f int
		switch key {
		case "time":
			f = fieldTime
		case "kind":
			f = fieldKind
		case "sha256":
			f = fieldSHA256
		case "size":
			f = fieldSize
		case "detection":
			f = fieldDetection
		case "url":
			f = fieldURL
		case "path":
			f = fieldPath
		case "product":
			f = fieldProduct
		case "ruledb":
			f = fieldRuleDB
		default:
			return &FieldError{Index: p.rec, Field: keyName(key), Reason: "unknown field"}
		}
		if seen&f != 0 {
			return &FieldError{Index: p.rec, Field: key, Reason: "duplicate key"}
		}
		seen |= f
		p.field = key
		switch f {
		case fieldTime:
			s, err := p.str()
			if err != nil {
				return err
			}
			t, ok := parseTime(s)
			if !ok {
				return p.fieldErr("must be an RFC 3339 time such as 2026-11-22T10:00:00Z or 2026-11-22T11:00:00.5+01:00")
			}
			r.Time = t
		case fieldSize:
			n, err := p.uint(MaxSize)
			if err != nil {
				return err
			}
			r.Size = int64(n)
		case fieldRuleDB:
			n, err := p.uint(math.MaxUint64)
			if err != nil {
				return err
			}
			r.RuleDB = n
		default:
			s, err := p.str()
			if err != nil {
				return err
			}
			switch f {
			case fieldKind:
				r.Kind = s
			case fieldSHA256:
				r.SHA256 = s
			case fieldDetection:
				r.Detection = s
			case fieldURL:
				r.URL = s
			case fieldPath:
				r.Path = s
			case fieldProduct:
				r.Product = s
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if missing := required &^ seen; missing != 0 {
		name := "time"
		switch {
		case missing&fieldTime != 0:
		case missing&fieldKind != 0:
			name = "kind"
		default:
			name = "sha256"
		}
		return &FieldError{Index: p.rec, Field: name, Reason: "missing"}
	}
	if field, reason := r.check(p.latest); reason != "" {
		return &FieldError{Index: p.rec, Field: field, Reason: reason}
	}
	return nil
}

// validBatchID reports whether id is 1 to 128 characters of [A-Za-z0-9._:-].
func validBatchID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !batchIDChar[id[i]] {
			return false
		}
	}
	return true
}

var batchIDChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "._:-" {
		t[c] = true
	}
	return t
}()

// fieldErr returns an error about the value of the field being read.
func (p *parser) fieldErr(reason string) *FieldError {
	return &FieldError{Index: p.rec, Field: p.field, Reason: reason}
}

// syntax returns an error about malformed JSON at the current offset.
func (p *parser) syntax(what string) *FieldError {
	return p.syntaxAt(p.i, what)
}

func (p *parser) syntaxAt(off int, what string) *FieldError {
	if off >= len(p.b) {
		what = "unexpected end of body; " + what
	}
	return p.fieldErr("malformed JSON at offset " + strconv.Itoa(off) + ": " + what)
}
