package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

type bodyFunc func(*http.Request) *http.Response

func (f bodyFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r), nil }

func answerWith(body io.Reader, contentLength int64) *http.Client {
	return &http.Client{Transport: bodyFunc(func(r *http.Request) *http.Response {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(body), ContentLength: contentLength, Request: r}
	})}
}

// TestFetcherLengths: the lengths a server announces or signed metadata
// allows are limits, never allocations: a huge allowed or announced
// length with a short body neither panics nor exhausts memory, and a
// body past the limit is refused.
func TestFetcherLengths(t *testing.T) {
	body := []byte(strings.Repeat("x", 100))
	for _, tt := range []struct {
		name          string
		max, announce int64
		want          string // error text, or "" for the body
	}{
		{"signed length MaxInt64, no Content-Length", math.MaxInt64, -1, ""},
		{"signed length MaxInt64, Content-Length", math.MaxInt64, 100, ""},
		{"1 TiB allowed and announced, 100 bytes sent", 1 << 40, 1 << 40, "unexpected EOF"},
		{"exact", 100, 100, ""},
		{"one byte over, no Content-Length", 99, -1, "length 100 is larger than expected 99"},
		{"announced over", 99, 100, "length 100 is larger than expected 99"},
		{"negative allowed length", -1, -1, "is negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := fetcher{ctx: context.Background(), hc: answerWith(bytes.NewReader(body), tt.announce)}
			got, err := f.DownloadFile("http://repo.test/x", tt.max, 0)
			switch {
			case tt.want == "" && (err != nil || !bytes.Equal(got, body)):
				t.Fatalf("got %d bytes, %v; want the body", len(got), err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %d bytes, %v; want an error saying %q", len(got), err, tt.want)
			}
			if tt.want != "" && strings.Contains(tt.want, "larger") {
				var lm *metadata.ErrDownloadLengthMismatch
				if !errors.As(err, &lm) {
					t.Errorf("error %T, want *metadata.ErrDownloadLengthMismatch (go-tuf acts on it)", err)
				}
			}
		})
	}
	// A status other than 200 is go-tuf's ErrDownloadHTTP, which tells a
	// root that does not exist yet (404) from a failure.
	f := fetcher{ctx: context.Background(), hc: &http.Client{Transport: bodyFunc(func(r *http.Request) *http.Response {
		return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: r}
	})}}
	var he *metadata.ErrDownloadHTTP
	if _, err := f.DownloadFile("http://repo.test/2.root.json", 1000, 0); !errors.As(err, &he) || he.StatusCode != 404 {
		t.Errorf("404: %v, want *metadata.ErrDownloadHTTP with 404", err)
	}
}
