package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/store"
)

// DefaultLimit and MaxLimit bound the records of one answer: one access
// record covers them all. An answer can hold fewer when their subjects and
// keys would not fit in one access record; More says so.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// queryParams are the parameters of the record routes, in the order the
// access record's query lists them.
var queryParams = []string{"sha256", "endpoint", "from", "to", "after", "limit", "personal"}

// query is a parsed request of the record routes.
type query struct {
	store.RecordQuery
	// Personal says whether the answer opens the personal fields (the
	// default): personal=false releases the threat halves alone, which
	// needs no data key, so custody is not asked and the answer does
	// not wait for a witnessed checkpoint. The access is logged all the
	// same.
	Personal bool
}

// pseudonymError is parseQuery's error when the endpoint's pseudonym
// cannot be had.
type pseudonymError struct{ err error }

func (e *pseudonymError) Error() string {
	return "the endpoint's pseudonym could not be had: " + e.err.Error()
}
func (e *pseudonymError) Unwrap() error { return e.err }

// parseQuery reads the record routes' query parameters. It returns the
// store query and the query as the access record names it: the same
// parameters, each at most once, in a fixed order, with the endpoint
// replaced by its pseudonym, so that no endpoint id reaches the log. When
// the parameters are bad, the query names what could be read of them.
// An error that pseudonym returns comes back as an *unavailableError:
// nothing can be logged or read until the pseudonym can be had.
func parseQuery(ctx context.Context, v url.Values, ps endpoint.Pseudonyms) (query, string, error) {
	q := query{Personal: true}
	var logged []string
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for k := range v {
		if !slices.Contains(queryParams, k) {
			bad("unknown parameter %q; the parameters are %s", truncate(k, 32), strings.Join(queryParams, ", "))
		}
	}
	for _, k := range queryParams {
		vals, ok := v[k]
		if !ok {
			continue
		}
		if len(vals) != 1 {
			bad("parameter %s given %d times", k, len(vals))
			continue
		}
		s := vals[0]
		switch k {
		case "sha256":
			if !validSHA256(s) {
				bad("sha256 is not 64 lower-case hex digits")
				continue
			}
			q.SHA256 = s
		case "endpoint":
			if !endpoint.ValidID(s) {
				bad("endpoint is not an endpoint id (ep_ and 26 base32 characters)")
				continue
			}
			p, err := ps.Pseudonym(ctx, s)
			if err != nil {
				return q, "", &pseudonymError{err}
			}
			q.Pseudonym, s = p, p
		case "from", "to":
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				bad("%s is not an RFC 3339 time", k)
				continue
			}
			if k == "from" {
				q.From = t
			} else {
				q.To = t
			}
			s = t.UTC().Format(time.RFC3339Nano)
		case "after":
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				bad("after is not a record id (a non-negative integer)")
				continue
			}
			q.After, s = n, strconv.FormatInt(n, 10)
		case "limit":
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > MaxLimit {
				bad("limit is not a number from 1 to %d", MaxLimit)
				continue
			}
			q.Limit, s = n, strconv.Itoa(n)
		case "personal":
			switch s {
			case "true":
			case "false":
				q.Personal = false
			default:
				bad("personal is not true or false")
				continue
			}
		}
		logged = append(logged, k+"="+s)
	}
	if q.Limit == 0 {
		// The record names the limit in effect.
		q.Limit = DefaultLimit
		logged = append(logged, "limit="+strconv.Itoa(DefaultLimit))
	}
	if len(errs) == 0 {
		if _, err := store.CheckQuery(q.RecordQuery); err != nil {
			bad("%v", err)
		}
	}
	return q, strings.Join(logged, "&"), errors.Join(errs...)
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// serveProof answers the C2SP tlog-proof of an access entry, once a
// checkpoint the witness cosigned covers it. The access log is public, and
// so are its proofs.
func (g *Gateway) serveProof(w http.ResponseWriter, r *http.Request) {
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "the index is not a non-negative integer")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), min(g.cfg.WitnessTimeout, 5*time.Second))
	defer cancel()
	proof, err := g.cfg.Log.Prove(ctx, index)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			w.Header().Set("Retry-After", "1")
			httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("entry %d of %s is not in a witnessed checkpoint (yet)", index, g.cfg.Log.Origin()))
			return
		}
		g.unavailable(w, r, fmt.Errorf("%w: proving entry %d: %v", errWitness, index, err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(proof.Marshal())
}
