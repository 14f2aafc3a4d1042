// Package httpapi is the one place where Vitrine maps errors to HTTP answers.
//
// Every error answer is JSON, {"error": "..."}, with a message that tells a
// person what to fix. [Fail] answers an error by its kind (package fault);
// an error of no kind is a 500 that never shows its text. Security failures (401, 403) stay distinct from
// ordinary bad input (400, 413) and from unavailability (503), which is how
// Vitrine fails closed.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error writes a JSON error answer with the given status and message.
func Error(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// Unavailable answers 503 with a Retry-After header: the operation failed
// closed and may be retried.
func Unavailable(w http.ResponseWriter, retry time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retry.Seconds()))))
	Error(w, http.StatusServiceUnavailable, msg)
}

// Unauthorized answers 401 with a bearer challenge.
func Unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="vitrine"`)
	Error(w, http.StatusUnauthorized, msg)
}

// ReadLimited reads at most limit bytes of r's body. It answers 413 and
// returns ok=false when the body is larger.
func ReadLimited(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, ok bool) {
	if n := r.ContentLength; n > limit {
		Error(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
		return nil, false
	} else if n >= 0 {
		// The server holds the body to its declared length: read it in one
		// allocation.
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			Error(w, http.StatusBadRequest, "reading request body: "+err.Error())
			return nil, false
		}
		return b, true
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			Error(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
			return nil, false
		}
		Error(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// JSON writes v as a JSON answer with status 200.
func JSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// CompactJSON writes v as a compact JSON answer with status 200: for
// answers that programs read in bulk, where indentation only costs.
func CompactJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeStrict decodes b, which must hold one JSON value and nothing
// after it, into v, refusing members v has no field for and objects that
// name a member twice. encoding/json alone keeps the last of two equal
// names, and matches names without regard to case, so that
// {"country":"DE","Country":"RU"} would be read as RU where another
// reader sees DE: names equal under Unicode case folding count as the
// same.
func DecodeStrict(b []byte, v any) error {
	if err := noDuplicateNames(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Not dec.More, which is false before a stray '}' or ']'.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// noDuplicateNames reports an error if an object in the JSON text b names
// a member twice (see [DecodeStrict]). Malformed text is left for the
// decoder to report.
func noDuplicateNames(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	// For each open object or array, the names seen so far (nil for
	// an array) and whether the next string token is a name.
	type level struct {
		names  map[string]bool
		isName bool
	}
	var stack []level
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var top *level
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.names != nil {
					top.isName = true // the object is this member's value
				}
				stack = append(stack, level{names: map[string]bool{}, isName: true})
				continue
			case '[':
				if top != nil && top.names != nil {
					top.isName = true
				}
				stack = append(stack, level{})
				continue
			default:
				stack = stack[:len(stack)-1]
				continue
			}
		case string:
			if top != nil && top.names != nil && top.isName {
				k := strings.ToLower(strings.ToUpper(t)) // as encoding/json folds: ſ is s, K (Kelvin) is k
				if top.names[k] {
					return fmt.Errorf("the member %q appears twice in one object", t)
				}
				top.names[k] = true
				top.isName = false
				continue
			}
		}
		if top != nil && top.names != nil {
			top.isName = true // a value ends; a name comes next
		}
	}
}
