package principal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// MaxRequestSize is the largest request body the handler reads.
const MaxRequestSize = 64 << 10

// Path is the route of [Registry.Handler].
const Path = "/v1/principals"

// Handler serves POST /v1/principals, which creates a principal:
//
//	{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}
//
// and answers 201 with {"token":"vp1...."}. Only a request for which
// operator returns true (normally, one with the operator's bearer token)
// may create principals; others get 401, and a nil operator lets no one
// in. A body that is not exactly such
// an object gets 400, one larger than [MaxRequestSize] 413, a taken id
// 409, and a failure to store the registry 503. Nothing is stored unless
// the answer is 201, and a 201 means the principal is durable.
func (r *Registry) Handler(operator func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != Path {
			httpapi.Error(w, http.StatusNotFound, "no such route; principals are created with POST "+Path)
			return
		}
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpapi.Error(w, http.StatusMethodNotAllowed, "use POST to create a principal")
			return
		}
		if operator == nil || !operator(req) {
			httpapi.Unauthorized(w, "creating a principal needs the operator's bearer token")
			return
		}
		body, ok := httpapi.ReadLimited(w, req, MaxRequestSize)
		if !ok {
			return
		}
		p, err := parseCreateRequest(body)
		if err != nil {
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		tok, err := r.Create(p)
		switch {
		case errors.Is(err, ErrExists):
			httpapi.Error(w, http.StatusConflict, err.Error())
			return
		case errors.Is(err, ErrInvalid):
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			httpapi.Unavailable(w, 5*time.Second, fmt.Sprintf("creating principal %q failed; nothing was stored", p.ID))
			return
		}
		// The token is shown once: no cache may keep it.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(struct {
			Token string `json:"token"`
		}{tok})
	})
}

// parseCreateRequest reads a creation request: one JSON object with
// exactly the keys id, role, location (strings) and regions (an array of
// strings), in any order, each once, and nothing after it. It checks the
// shape only; Create checks the values.
func parseCreateRequest(b []byte) (Principal, error) {
	p, err := parseCreate(b)
	if err != nil {
		return Principal{}, fmt.Errorf("request body: %w", err)
	}
	return p, nil
}

const createShape = `{"id":"<role>:<name>","role":"<role>","location":"<country>","regions":["<region>",...]}`

func parseCreate(b []byte) (Principal, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return Principal{}, errors.New("empty; want " + createShape)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	tok := func() (json.Token, error) {
		t, err := d.Token()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errors.New("unexpected end of JSON")
		}
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		return t, nil
	}
	str := func(key string) (string, error) {
		t, err := tok()
		if err != nil {
			return "", err
		}
		s, ok := t.(string)
		if !ok {
			return "", fmt.Errorf("%q must be a string, not %s", key, kindOf(t))
		}
		return s, nil
	}

	t, err := tok()
	if err != nil {
		return Principal{}, err
	}
	if t != json.Delim('{') {
		return Principal{}, fmt.Errorf("want a JSON object %s, not %s", createShape, kindOf(t))
	}
	var p Principal
	seen := map[string]bool{}
	for {
		t, err := tok()
		if err != nil {
			return Principal{}, err
		}
		if t == json.Delim('}') {
			break
		}
		key := t.(string) // the decoder returns object keys as strings
		if seen[key] {
			return Principal{}, fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		switch key {
		case "id":
			p.ID, err = str(key)
		case "role":
			var s string
			s, err = str(key)
			p.Role = Role(s)
		case "location":
			p.Location, err = str(key)
		case "regions":
			p.Regions, err = readStrings(tok)
		default:
			return Principal{}, fmt.Errorf("unknown key %q; want %s", key, createShape)
		}
		if err != nil {
			return Principal{}, err
		}
	}
	for _, k := range []string{"id", "role", "location", "regions"} {
		if !seen[k] {
			return Principal{}, fmt.Errorf("key %q is missing; want %s", k, createShape)
		}
	}
	if _, err := d.Token(); err != io.EOF {
		return Principal{}, errors.New("data after the JSON object")
	}
	return p, nil
}

// readStrings reads an array of strings.
func readStrings(tok func() (json.Token, error)) ([]string, error) {
	t, err := tok()
	if err != nil {
		return nil, err
	}
	if t != json.Delim('[') {
		return nil, fmt.Errorf(`"regions" must be an array of strings, not %s`, kindOf(t))
	}
	ss := []string{}
	for {
		t, err := tok()
		if err != nil {
			return nil, err
		}
		if t == json.Delim(']') {
			return slices.Clip(ss), nil
		}
		s, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf(`"regions" must be an array of strings, but element %d is %s`, len(ss), kindOf(t))
		}
		ss = append(ss, s)
	}
}

func kindOf(t json.Token) string {
	switch t := t.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if t == '{' {
			return "an object"
		}
		return "an array"
	}
	return "something else"
}
