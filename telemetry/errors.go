package telemetry

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// ErrTooLarge is wrapped by the [FieldError] of a batch whose body is
// larger than [MaxBatchBytes] or which holds more than [MaxBatchRecords]
// records, so that a server can answer 413 rather than 400.
var ErrTooLarge = errors.New("batch too large")

// FieldError says what is wrong with a batch and where. [ParseBatch]
// returns it for every rejected batch, and it names the first problem in
// document order.
type FieldError struct {
	// Index is the index of the offending record in the batch's records,
	// or -1 when the problem is with the batch itself.
	Index int
	// Field is the name of the offending field ("sha256", "batch_id"),
	// an unknown or duplicate key as it was sent (cut to 64 bytes), or
	// empty when the problem is not with one field (malformed JSON between
	// fields, a record that is not an object).
	Field string
	// Reason says what is wrong, in words a person can act on.
	Reason string

	err error // wrapped sentinel, if any
}

// Error returns the error as "record 17: sha256: must be 64 lowercase hex
// digits", "batch_id: missing" or, with neither index nor field, the reason
// alone. A field name that is not a plain word is quoted.
func (e *FieldError) Error() string {
	var b []byte
	if e.Index >= 0 {
		b = append(b, "record "...)
		b = strconv.AppendInt(b, int64(e.Index), 10)
		b = append(b, ": "...)
	}
	if e.Field != "" {
		if plainName(e.Field) {
			b = append(b, e.Field...)
		} else {
			b = strconv.AppendQuote(b, e.Field)
		}
		b = append(b, ": "...)
	}
	b = append(b, e.Reason...)
	return string(b)
}

// Unwrap returns [ErrTooLarge] for a batch over the limits, nil otherwise.
func (e *FieldError) Unwrap() error { return e.err }

// plainName reports whether s can be printed unquoted in an error message.
func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// keyName returns key cut to at most 64 bytes on a character boundary, for
// use as a FieldError's Field.
func keyName(key string) string {
	const max = 64
	if len(key) <= max {
		return key
	}
	n := max
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n] + "…"
}
