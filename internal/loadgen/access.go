package loadgen

// Access load: reads through a region's access gateway, each logged in the
// region's access log before anything is released, and the sizes of the
// access records they log, so that plain appends of the same size can be
// measured beside them. `vitrine-bench access` runs these.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/client"
)

// Principal is a principal to create with [CreatePrincipal], in the shape
// POST /v1/principals takes.
type Principal struct {
	ID       string   `json:"id"`
	Role     string   `json:"role"`
	Location string   `json:"location"`
	Regions  []string `json:"regions"`
}

// CreatePrincipal creates p with the platform at base (POST
// base/v1/principals with the operator token) and returns its bearer
// token, which the platform shows only this once.
func CreatePrincipal(ctx context.Context, hc *http.Client, base, operatorToken string, p Principal) (string, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/principals", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("creating principal %s: %w", p.ID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("creating principal %s: %w", p.ID, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("creating principal %s: %s: %s", p.ID, resp.Status, bytes.TrimSpace(b))
	}
	var ans struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Token == "" {
		return "", fmt.Errorf("creating principal %s: the answer holds no token", p.ID)
	}
	return ans.Token, nil
}

// ReadConfig says how to load a region's access gateway with reads.
type ReadConfig struct {
	// Region is the region's base URL (…/regions/<name>); Token is a
	// principal's bearer token, Justification the value of the
	// Vitrine-Justification header ("<CODE>; <detail>").
	Region, Token, Justification string
	// Clients is the number of concurrent clients, each with one read in
	// flight.
	Clients int
	// Reads that start after Warmup and before Warmup+Duration are
	// counted, each to its end: a slow read is neither cut short nor
	// left out.
	Warmup, Duration time.Duration
	// Hashes are what the reads ask for (sha256=…), each read one drawn
	// at random, uniformly.
	Hashes []string
	// Limit is the limit parameter (default 10).
	Limit int
	// ThreatOnly sends personal=false: the threat halves alone, logged,
	// without custody. Otherwise the reads open the personal fields,
	// which waits for a witnessed checkpoint and custody.
	ThreatOnly bool
	// Seed varies the draw of hashes.
	Seed uint64
}

// ReadResult is what a read run measured.
type ReadResult struct {
	// Reads were answered 200 in the measured window; Errors were not.
	Reads, Errors int
	FirstError    string
	Elapsed       time.Duration
	P50, P99, Max time.Duration // per read, from sending it to the last byte of its answer
	// Records is how many records the measured reads released, Opened how
	// many of them came with their personal fields opened.
	Records, Opened int
	// Receipts are the access-log indexes of the measured reads.
	Receipts []uint64
}

// PerSecond is the read rate.
func (r ReadResult) PerSecond() float64 { return float64(r.Reads) / r.Elapsed.Seconds() }

// Read reads through the access gateway for cfg.Warmup+cfg.Duration and
// measures reads per second and their latency.
func Read(ctx context.Context, cfg ReadConfig) (ReadResult, error) {
	if cfg.Clients < 1 || len(cfg.Hashes) == 0 || cfg.Region == "" {
		return ReadResult{}, errors.New("loadgen: reads need a region URL, hashes and at least one client")
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 10
	}
	hc := NewClient(cfg.Clients)
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	start := time.Now()
	measureFrom, measureTo := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	var (
		mu        sync.Mutex
		res       = ReadResult{Elapsed: cfg.Duration}
		latencies []time.Duration
	)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(measureTo) {
					return
				}
				a, err := readOnce(ctx, hc, cfg, cfg.Hashes[rng.IntN(len(cfg.Hashes))])
				d := time.Since(t0)
				if ctx.Err() != nil {
					return
				}
				if !t0.Before(measureFrom) {
					mu.Lock()
					if err != nil {
						res.Errors++
						if res.FirstError == "" {
							res.FirstError = err.Error()
						}
					} else {
						res.Reads++
						latencies = append(latencies, d)
						res.Records += a.records
						res.Opened += a.opened
						res.Receipts = append(res.Receipts, a.index)
					}
					mu.Unlock()
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	res.P50, res.P99, res.Max = percentiles(latencies)
	return res, ctx.Err()
}

// readAnswer is what Read keeps of an answer.
type readAnswer struct {
	index           uint64
	records, opened int
}

// readOnce sends one read and reads its whole answer.
func readOnce(ctx context.Context, hc *http.Client, cfg ReadConfig, hash string) (readAnswer, error) {
	q := url.Values{"sha256": {hash}, "limit": {strconv.Itoa(cfg.Limit)}}
	if cfg.ThreatOnly {
		q.Set("personal", "false")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Region, "/")+"/v1/records?"+q.Encode(), nil)
	if err != nil {
		return readAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	req.Header.Set("Vitrine-Justification", cfg.Justification)
	resp, err := hc.Do(req)
	if err != nil {
		return readAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return readAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return readAnswer{}, fmt.Errorf("read: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var ans struct {
		Count   int `json:"count"`
		Receipt struct {
			Index uint64 `json:"index"`
		} `json:"receipt"`
		Records []struct {
			Endpoint string `json:"endpoint"`
		} `json:"records"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return readAnswer{}, fmt.Errorf("read: decoding the answer: %w", err)
	}
	if ans.Count != len(ans.Records) {
		return readAnswer{}, fmt.Errorf("read: the answer counts %d records and holds %d", ans.Count, len(ans.Records))
	}
	a := readAnswer{index: ans.Receipt.Index, records: len(ans.Records)}
	for _, r := range ans.Records {
		if r.Endpoint != "" {
			a.opened++
		}
	}
	return a, nil
}

// EntrySizes returns the sizes of the entries at indexes of the log at
// logURL (its tlog-tiles base URL), once its published checkpoint covers
// them all; it waits up to timeout for that.
func EntrySizes(ctx context.Context, hc *http.Client, logURL string, indexes []uint64, timeout time.Duration) ([]int, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	base := strings.TrimSuffix(logURL, "/")
	u, err := url.Parse(base + "/")
	if err != nil {
		return nil, err
	}
	f, err := client.NewHTTPFetcher(u, hc)
	if err != nil {
		return nil, err
	}
	last := indexes[0]
	for _, i := range indexes {
		last = max(last, i)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var size uint64
	for {
		size, err = checkpointSize(wctx, hc, base)
		if err == nil && size > last {
			break
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("entry sizes: no checkpoint of %s covers index %d (size %d, %v)", base, last, size, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	bundles := map[uint64][][]byte{}
	sizes := make([]int, len(indexes))
	for k, i := range indexes {
		bi := i / 256
		if bundles[bi] == nil {
			b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, bi, size)
			if err != nil {
				return nil, fmt.Errorf("entry sizes: %w", err)
			}
			bundles[bi] = b.Entries
		}
		if int(i%256) >= len(bundles[bi]) {
			return nil, fmt.Errorf("entry sizes: bundle %d of %s holds no entry %d", bi, base, i)
		}
		sizes[k] = len(bundles[bi][i%256])
	}
	return sizes, nil
}
