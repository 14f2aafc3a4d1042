package custody

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// maxRequestBody bounds an unwrap request: MaxKeys wrapped keys, a 64 KiB
// entry and a 128 KiB proof, in base64 inside JSON, with room to spare.
const maxRequestBody = 4 << 20

// Handler serves custody over HTTP:
//
//   - POST /v1/unwrap: a JSON UnwrapRequest, answered with a JSON
//     UnwrapResponse (200), 400 for a malformed request, 403 for a
//     refusal, 503 when the count could not be stored;
//   - GET /v1/counts: Counts as JSON;
//   - GET /v1/keys/{region}: the region's public key text and a newline.
//
// The first two answer 401 unless authorized(r); the public keys need no
// authorization; a nil authorized lets no one in. Error answers are {"error": "..."}.
func (s *Service) Handler(authorized func(*http.Request) bool) http.Handler {
	if authorized == nil {
		authorized = func(*http.Request) bool { return false }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/unwrap", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			httpapi.Unauthorized(w, "unwrap needs a custody bearer token")
			return
		}
		body, ok := httpapi.ReadLimited(w, r, maxRequestBody)
		if !ok {
			return
		}
		req, err := parseUnwrapRequest(body)
		if err != nil {
			s.count(nil, err)
			httpapi.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		resp, err := s.Unwrap(r.Context(), req)
		switch {
		case err != nil:
			// Malformed 400, refused 403 (with the reason), the count
			// not stored 503; anything else 500, logged, not told.
			httpapi.Fail(w, s.logger, err, "custody released no key")
		default:
			w.Header().Set("Cache-Control", "no-store")
			httpapi.JSON(w, resp)
			for _, k := range resp.Keys {
				clear(k)
			}
		}
	})
	mux.HandleFunc("GET /v1/counts", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			httpapi.Unauthorized(w, "counts need a custody bearer token")
			return
		}
		m, err := s.Counts()
		if err != nil {
			httpapi.Fail(w, s.logger, fmt.Errorf("%w: %w", ErrUnavailable, err), "reading the unwrap counts failed")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.JSON(w, m)
	})
	mux.HandleFunc("GET /v1/keys/{region}", func(w http.ResponseWriter, r *http.Request) {
		k, ok := s.PublicKey(r.PathValue("region"))
		if !ok {
			httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("custody holds no key for region %q", r.PathValue("region")))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, k.String()+"\n")
	})
	return mux
}

// parseUnwrapRequest reads the JSON body of POST /v1/unwrap: one object,
// with no unknown members and nothing after it.
func parseUnwrapRequest(body []byte) (*UnwrapRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req UnwrapRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if err := checkShape(&req); err != nil {
		return nil, err
	}
	return &req, nil
}

// Client calls a custody service over HTTP. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the custody service at baseURL that
// authenticates with the bearer token. A nil hc means http.DefaultClient.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, hc: hc}
}

// Unwrap asks custody to unwrap keys; see Service.Unwrap. Errors wrap
// ErrRefused (403), ErrMalformed (400) or ErrUnavailable (503) as the
// service answered, with its message.
func (c *Client) Unwrap(ctx context.Context, req *UnwrapRequest) (*UnwrapResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("custody unwrap: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/unwrap", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("custody unwrap: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.token)
	b, err := c.do(hreq)
	if err != nil {
		return nil, fmt.Errorf("custody unwrap: %w", err)
	}
	var resp UnwrapResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("custody unwrap: reading answer: %w", err)
	}
	if len(resp.Keys) != len(req.Keys) {
		return nil, fmt.Errorf("custody unwrap: answer has %d keys for %d asked", len(resp.Keys), len(req.Keys))
	}
	return &resp, nil
}

// PublicKey fetches the public key of region. The key is as good as the
// connection to custody: use TLS, or compare with a key distributed out of
// band.
func (c *Client) PublicKey(ctx context.Context, region string) (*PublicKey, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/keys/"+url.PathEscape(region), nil)
	if err != nil {
		return nil, fmt.Errorf("custody key of %s: %w", region, err)
	}
	b, err := c.do(hreq)
	if err != nil {
		return nil, fmt.Errorf("custody key of %s: %w", region, err)
	}
	k, err := ParsePublicKey(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return nil, fmt.Errorf("custody key of %s: %w", region, err)
	}
	if k.Region() != region {
		return nil, fmt.Errorf("custody key of %s: custody sent the key of %s", region, k.Region())
	}
	return k, nil
}

// Counts returns custody's unwrap counts, by region and access-log index.
func (c *Client) Counts(ctx context.Context) (map[string]map[uint64]int64, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/counts", nil)
	if err != nil {
		return nil, fmt.Errorf("custody counts: %w", err)
	}
	hreq.Header.Set("Authorization", "Bearer "+c.token)
	b, err := c.do(hreq)
	if err != nil {
		return nil, fmt.Errorf("custody counts: %w", err)
	}
	var m map[string]map[uint64]int64
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("custody counts: %w", err)
	}
	return m, nil
}

// do sends hreq and returns the body of a 200 answer, or an error carrying
// the service's message.
func (c *Client) do(hreq *http.Request) ([]byte, error) {
	// Custody out of reach, or answering what it should not, is custody
	// unavailable to the caller: it may work later.
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRequestBody+1))
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	if resp.StatusCode == http.StatusOK {
		return b, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	var sentinel error
	switch resp.StatusCode {
	case http.StatusForbidden:
		sentinel = ErrRefused
	case http.StatusBadRequest:
		sentinel = ErrMalformed
	case http.StatusServiceUnavailable:
		sentinel = ErrUnavailable
	default:
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("%s: %s", resp.Status, msg))
	}
	// The service's message already begins with the sentinel's text.
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, sentinel.Error()), ": ")
	// A client that retries waits at least what the service asked.
	wait := vclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return nil, backoff.WithRetryAfter(fmt.Errorf("%w: %s", sentinel, msg), wait)
}
