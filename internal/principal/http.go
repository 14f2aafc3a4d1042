package principal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// MaxRequestSize is the largest request body the handler reads.
const MaxRequestSize = 64 << 10

// Path is the route of [Registry.Handler].
const Path = "/v1/principals"

// Handler serves POST /v1/principals, which creates a principal:
//
//	{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":"720h"}
//
// and answers 201 with {"token":"vp1...."}; and DELETE
// /v1/principals/<id>, which revokes one and answers 200 with
// {"revoked":"<id>"}. The optional expires is an RFC 3339 time or a Go
// duration from now, such as "720h"; without it the principal expires
// after [DefaultLifetime].
//
// Only a request for which operator returns true (normally, one with the
// operator's bearer token) may create or revoke principals; others get
// 401, and a nil operator lets no one in. A body that is not exactly such
// an object gets 400, one larger than [MaxRequestSize] 413, a taken id
// 409, an unknown id to revoke 404, and a failure to log the grant or
// revocation or to store the registry 503. Nothing is stored unless the
// answer is 201, and a 201 means the principal is durable; a 200 means
// the revocation is durable, logged and in effect (a 503 says whether it
// took effect, see [Registry.Revoke]).
func (r *Registry) Handler(operator func(*http.Request) bool, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, isOne := strings.CutPrefix(req.URL.Path, Path+"/")
		switch {
		case isOne && id != "":
			if req.Method != http.MethodDelete {
				w.Header().Set("Allow", http.MethodDelete)
				httpapi.Error(w, http.StatusMethodNotAllowed, "use DELETE to revoke a principal")
				return
			}
		case req.URL.Path != Path:
			httpapi.Error(w, http.StatusNotFound, "no such route; principals are created with POST "+Path+" and revoked with DELETE "+Path+"/<id>")
			return
		case req.Method != http.MethodPost:
			w.Header().Set("Allow", http.MethodPost)
			httpapi.Error(w, http.StatusMethodNotAllowed, "use POST to create a principal")
			return
		}
		if operator == nil || !operator(req) {
			httpapi.Unauthorized(w, "creating or revoking a principal needs the operator's bearer token")
			return
		}
		if isOne {
			r.serveRevoke(w, req, id, logger)
			return
		}
		body, ok := httpapi.ReadLimited(w, req, MaxRequestSize)
		if !ok {
			return
		}
		cr, err := parseCreateRequest(body)
		if err != nil {
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		p := cr.Principal
		if p.Expires, err = parseExpiry(cr.Expires, r.now()); err != nil {
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		tok, err := r.Create(req.Context(), p)
		if err != nil {
			// Invalid 400, taken 409 (the error says which), a log or
			// the registry's file unavailable 503, anything else 500,
			// logged, not told.
			msg := ""
			switch fault.Kind(err) {
			case fault.ErrUnavailable:
				msg = fmt.Sprintf("creating principal %q failed; nothing was stored", p.ID)
				if errors.Is(err, ErrLogUnavailable) {
					msg = fmt.Sprintf("creating principal %q failed: an access log did not take its grant; nothing was stored", p.ID)
				}
			case nil:
				msg = fmt.Sprintf("creating principal %q failed; nothing was stored", p.ID)
			}
			httpapi.Fail(w, logger, backoff.WithRetryAfter(err, 5*time.Second), msg)
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

func (r *Registry) serveRevoke(w http.ResponseWriter, req *http.Request, id string, logger *slog.Logger) {
	err := r.Revoke(req.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.Fail(w, logger, fault.New(fault.ErrNotFound, "a revoked principal is gone"), fmt.Sprintf("no principal %q", id))
		return
	case err != nil:
		msg := fmt.Sprintf("revoking principal %q failed; nothing changed, it still works", id)
		if !r.has(id) {
			msg = fmt.Sprintf("principal %q is revoked, but not every access log holds its revocation yet", id)
		}
		// An access log down: 503; anything else 500, logged, not told.
		httpapi.Fail(w, logger, err, msg)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, struct {
		Revoked string `json:"revoked"`
	}{id})
}

// parseExpiry reads the expires of a creation request: "" for
// [DefaultLifetime] from now, an RFC 3339 time, or a positive Go duration
// from now.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now.Add(DefaultLifetime), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%w: expires %q is neither an RFC 3339 time (2027-01-31T12:00:00Z) nor a positive duration (720h)", ErrInvalid, s)
	}
	return now.Add(d), nil
}

// createRequest is a creation request as read, before its values are
// checked.
type createRequest struct {
	Principal
	Expires string // "" when absent
}

// parseCreateRequest reads a creation request: one JSON object with
// exactly the keys id, role, location (strings) and regions (an array of
// strings), and optionally expires (a string), in any order, each once,
// and nothing after it. It checks the shape only; Create checks the
// values.
func parseCreateRequest(b []byte) (createRequest, error) {
	p, err := parseCreate(b)
	if err != nil {
		return createRequest{}, fmt.Errorf("request body: %w", err)
	}
	return p, nil
}

const createShape = `{"id":"<role>:<name>","role":"<role>","location":"<country>","regions":["<region>",...]} and optionally "expires":"<RFC 3339 time or duration>"`

func parseCreate(b []byte) (createRequest, error) {
	var p createRequest
	if len(bytes.TrimSpace(b)) == 0 {
		return p, errors.New("empty; want " + createShape)
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
		return createRequest{}, err
	}
	if t != json.Delim('{') {
		return createRequest{}, fmt.Errorf("want a JSON object %s, not %s", createShape, kindOf(t))
	}
	seen := map[string]bool{}
	for {
		t, err := tok()
		if err != nil {
			return createRequest{}, err
		}
		if t == json.Delim('}') {
			break
		}
		key := t.(string) // the decoder returns object keys as strings
		if seen[key] {
			return createRequest{}, fmt.Errorf("key %q appears twice", key)
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
		case "expires":
			p.Expires, err = str(key)
		default:
			return createRequest{}, fmt.Errorf("unknown key %q; want %s", key, createShape)
		}
		if err != nil {
			return createRequest{}, err
		}
	}
	for _, k := range []string{"id", "role", "location", "regions"} {
		if !seen[k] {
			return createRequest{}, fmt.Errorf("key %q is missing; want %s", k, createShape)
		}
	}
	if _, err := d.Token(); err != io.EOF {
		return createRequest{}, errors.New("data after the JSON object")
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
