package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/tlog"
)

// Log is one C2SP tlog-tiles log as an outsider reads it: where its tiles
// are, the key its checkpoints must be signed with, and the witness policy
// they must meet. Make one with [NewLog] or [NewLogFetcher].
type Log struct {
	// Fetcher reads the log's checkpoint, tiles and entry bundles.
	Fetcher tlog.Fetcher
	// Verifier checks the log's signature; its name is the log's origin.
	Verifier note.Verifier
	// Policy is the witness policy every checkpoint must meet.
	Policy *tlog.Policy

	vkey string
}

// NewLog returns the log served under base (the prefix of /checkpoint and
// /tile/), whose checkpoints are signed by vkey (a signed-note verifier
// key) and must meet policy (a C2SP tlog-policy). A policy whose quorum is
// none, which the log operator alone meets, is refused unless
// allowNoWitness: an outsider who trusts the operator has no need of a
// log. hc nil means http.DefaultClient.
func NewLog(base, vkey string, policy []byte, hc *http.Client, allowNoWitness bool) (*Log, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	p, err := tlog.ParsePolicy(policy)
	if err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	if p.Quorum() == "none" && !allowNoWitness {
		return nil, errors.New("witness policy: quorum none: the log operator alone would meet it")
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("log URL: %w", err)
	}
	f, err := tclient.NewHTTPFetcher(u, limitedClient(hc))
	if err != nil {
		return nil, err
	}
	return &Log{Fetcher: f, Verifier: v, Policy: p, vkey: strings.TrimSpace(vkey)}, nil
}

// The most a log may send for one resource: a checkpoint (a signed note
// with its cosignatures), a hash tile (256 hashes) and an entry bundle (256
// entries of at most 65,535 bytes, each with its 2-byte length).
const (
	maxCheckpointBytes = 1 << 16
	maxTileBytes       = 256 * 32
	maxBundleBytes     = 256 * (2 + 65535)
	maxOtherBytes      = 1 << 20
)

// limitedClient returns a copy of hc (nil: a client with a two-minute
// timeout) whose answers are cut at the size their resource may have: a
// lying log cannot make a reader hold more than that, nor read forever.
func limitedClient(hc *http.Client) *http.Client {
	c := &http.Client{Timeout: 2 * time.Minute}
	if hc != nil {
		c = new(http.Client)
		*c = *hc
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = limitedTransport{base}
	return c
}

type limitedTransport struct{ base http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	limit := int64(maxOtherBytes)
	switch p := req.URL.Path; {
	case strings.HasSuffix(p, "/checkpoint"):
		limit = maxCheckpointBytes
	case strings.Contains(p, "/tile/entries/"):
		limit = maxBundleBytes
	case strings.Contains(p, "/tile/"):
		limit = maxTileBytes
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", req.URL, ErrTooLarge, resp.ContentLength, limit)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: limit, url: req.URL.String()}
	return resp, nil
}

// limitedBody fails a read past its limit instead of returning more.
type limitedBody struct {
	io.ReadCloser
	left int64
	url  string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("%s: %w", b.url, ErrTooLarge)
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("%s: %w", b.url, ErrTooLarge)
	}
	return n, err
}

// NewLogFetcher returns the log f reads, whose checkpoints are signed by
// vkey and must meet policy (used as given: the caller has refused a
// policy it does not accept).
func NewLogFetcher(f tlog.Fetcher, vkey string, policy *tlog.Policy) (*Log, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	if policy == nil {
		return nil, errors.New("a log needs a witness policy")
	}
	return &Log{Fetcher: f, Verifier: v, Policy: policy, vkey: strings.TrimSpace(vkey)}, nil
}

// Origin is the log's origin line, the name of its key.
func (l *Log) Origin() string { return l.Verifier.Name() }

// KeyHash is the SHA-256 of the log's verifier key, hex: with the origin,
// it tells one log from another that shares its origin.
func (l *Log) KeyHash() string { return keyHash(l.vkey) }

// Checkpoint reads the log's checkpoint and verifies it: the log's
// signature and the witness policy's quorum.
func (l *Log) Checkpoint(ctx context.Context) (*tlog.Checkpoint, error) {
	raw, err := l.Fetcher.ReadCheckpoint(ctx)
	if err != nil {
		return nil, &tlog.FetchError{Path: "checkpoint", Err: err}
	}
	cp, err := l.Policy.VerifyCheckpoint(raw, l.Verifier)
	if err != nil {
		return nil, fmt.Errorf("%s: checkpoint: %w", l.Origin(), err)
	}
	return cp, nil
}

// Entries returns every entry of the log under its current checkpoint,
// each proven (see [Follower]), and the checkpoint. It holds them all in
// memory: a long-running reader of a large log uses a Follower.
func (l *Log) Entries(ctx context.Context) ([][]byte, *tlog.Checkpoint, error) {
	f, err := NewFollower(l, nil)
	if err != nil {
		return nil, nil, err
	}
	var out [][]byte
	cp, err := f.Update(ctx, func(_ uint64, e []byte) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, cp, nil
}
