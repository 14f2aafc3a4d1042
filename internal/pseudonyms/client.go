// Package pseudonyms is the route by which a supervisor gives its member
// vendors the pseudonyms of their endpoints, and its client: the key that
// makes them stays with the supervisor.
package pseudonyms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
)

// ErrUnavailable is the error of a pseudonym the supervisor did not give.
var ErrUnavailable = fault.New(fault.ErrUnavailable, "the supervisor gave no pseudonym")

// Max is how many ids one request may name.
const Max = 1000

// Request and Answer are the bodies of POST /members/{name}/pseudonyms:
// the pseudonyms come in the order of the ids.
type Request struct {
	IDs []string `json:"ids"`
}

type Answer struct {
	Pseudonyms []string `json:"pseudonyms"`
}

// Client asks a supervisor for the pseudonyms of its member's
// endpoints (POST /members/{name}/pseudonyms) and keeps the latest
// answers: the key that makes them never reaches the vendor. It is an
// endpoint.Pseudonyms; its methods are safe for concurrent use.
type Client struct {
	url, token string
	hc         *http.Client
	cache      *lru.Cache[string, string]
	group      singleflight.Group
	// asking bounds the requests in flight to the supervisor.
	asking chan struct{}
}

// maxAsking is how many requests a Client has in flight at once.
const maxAsking = 16

// DefaultCache is how many pseudonyms NewClient keeps by
// default: about 20 MB.
const DefaultCache = 1 << 17

// NewClient returns a client of the pseudonyms route at url, which
// takes token; it keeps up to size pseudonyms (DefaultCache if
// size is 0).
func NewClient(url, token string, hc *http.Client, size int) *Client {
	if size <= 0 {
		size = DefaultCache
	}
	cache, err := lru.New[string, string](size)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &Client{url: url, token: token, hc: hc, cache: cache, asking: make(chan struct{}, maxAsking)}
}

var pseudonymForm = regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`)

// Pseudonym returns id's pseudonym, asking the supervisor unless it was
// asked before; concurrent asks for one id share one request.
func (p *Client) Pseudonym(ctx context.Context, id string) (string, error) {
	if v, ok := p.cache.Get(id); ok {
		return v, nil
	}
	ch := p.group.DoChan(id, func() (any, error) {
		// The request outlives a caller that goes away: others may wait
		// on it. The client's timeout bounds it.
		got, err := p.ask(context.WithoutCancel(ctx), []string{id})
		if err != nil {
			return "", err
		}
		p.cache.Add(id, got[0])
		return got[0], nil
	})
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	}
}

// ask sends one request for ids' pseudonyms and checks the answer's form.
func (p *Client) ask(ctx context.Context, ids []string) ([]string, error) {
	wait := time.NewTimer(10 * time.Second)
	defer wait.Stop()
	select {
	case p.asking <- struct{}{}:
		defer func() { <-p.asking }()
	case <-wait.C:
		return nil, fmt.Errorf("%w: %d requests to the supervisor in flight for 10 s", ErrUnavailable, maxAsking)
	}
	body, _ := json.Marshal(Request{IDs: ids})
	var ans Answer
	if err := client.Call(ctx, p.hc, http.MethodPost, p.url, p.token, body, 128<<10, &ans); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if len(ans.Pseudonyms) != len(ids) {
		return nil, fmt.Errorf("%w: %d pseudonyms for %d ids", ErrUnavailable, len(ans.Pseudonyms), len(ids))
	}
	for _, ps := range ans.Pseudonyms {
		if !pseudonymForm.MatchString(ps) {
			return nil, fmt.Errorf("%w: %q is not an hmac-sha256 pseudonym", ErrUnavailable, ps[:min(len(ps), 80)])
		}
	}
	return ans.Pseudonyms, nil
}
