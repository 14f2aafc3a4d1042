// Package loadgen drives a tlog-tiles log's POST /add the way Tessera's
// hammer does, and measures append throughput, latency and the time until a
// published checkpoint covers each entry.
//
// It is what `vitrine-bench appends` runs, side by side against Vitrine and against
// any other log speaking the same shape (Tessera's conformance servers).
package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what to load and how hard.
type Config struct {
	// URL is the log's base URL: POST URL/add, GET URL/checkpoint.
	URL string
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Clients is the number of concurrent clients, each with one request in
	// flight at a time.
	Clients int
	// Duration is how long to measure, after Warmup.
	Duration, Warmup time.Duration
	// EntrySize is the size of each entry (default 128 bytes).
	EntrySize int
	// TrackCheckpoint, when set, polls URL/checkpoint and records the time
	// from sending each sampled append to the first checkpoint that covers
	// it.
	TrackCheckpoint bool
}

// Result is what one run measured.
type Result struct {
	Clients        int
	Appends        int
	Errors         int
	Elapsed        time.Duration
	P50, P99, Max  time.Duration
	CheckpointP50  time.Duration
	CheckpointP99  time.Duration
	CheckpointSeen int
	FirstError     string
}

// PerSecond is the append rate.
func (r Result) PerSecond() float64 { return float64(r.Appends) / r.Elapsed.Seconds() }

// Run runs one measurement. It stops by itself after Warmup+Duration.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clients < 1 {
		return Result{}, errors.New("loadgen: need at least one client")
	}
	if cfg.EntrySize <= 16 {
		cfg.EntrySize = 128
	}
	base := strings.TrimSuffix(cfg.URL, "/")
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Clients * 2,
		MaxIdleConnsPerHost: cfg.Clients * 2,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	runID := uint64(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, cfg.Warmup+cfg.Duration)
	defer cancel()
	measureFrom := time.Now().Add(cfg.Warmup)
	measureTo := measureFrom.Add(cfg.Duration)

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		firstErr  string
		pending   []sample // sampled appends awaiting a covering checkpoint
		seq       atomic.Uint64
	)
	var wg sync.WaitGroup
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entry := make([]byte, cfg.EntrySize)
			for n := 0; ctx.Err() == nil; n++ {
				binary.BigEndian.PutUint64(entry[0:], runID)
				binary.BigEndian.PutUint64(entry[8:], seq.Add(1))
				start := time.Now()
				idx, err := add(ctx, hc, base, cfg.Token, entry)
				end := time.Now()
				if ctx.Err() != nil {
					return
				}
				if start.Before(measureFrom) || end.After(measureTo) {
					continue
				}
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					latencies = append(latencies, end.Sub(start))
					if cfg.TrackCheckpoint && n%8 == 0 {
						pending = append(pending, sample{idx, start})
					}
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}

	var cpLat []time.Duration
	var cpWG sync.WaitGroup
	if cfg.TrackCheckpoint {
		cpWG.Add(1)
		go func() {
			defer cpWG.Done()
			// Keep polling a little past the end so late samples resolve.
			pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Warmup+cfg.Duration+5*time.Second)
			defer pcancel()
			for pctx.Err() == nil {
				size, err := checkpointSize(pctx, hc, base)
				now := time.Now()
				if err == nil {
					mu.Lock()
					keep := pending[:0]
					for _, s := range pending {
						if s.index < size {
							cpLat = append(cpLat, now.Sub(s.sent))
						} else {
							keep = append(keep, s)
						}
					}
					pending = keep
					done := ctx.Err() != nil && len(pending) == 0
					mu.Unlock()
					if done {
						return
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	cpWG.Wait()

	r := Result{Clients: cfg.Clients, Appends: len(latencies), Errors: errs, Elapsed: cfg.Duration, FirstError: firstErr}
	r.P50, r.P99, r.Max = percentiles(latencies)
	r.CheckpointP50, r.CheckpointP99, _ = percentiles(cpLat)
	r.CheckpointSeen = len(cpLat)
	if cfg.TrackCheckpoint && len(pending) > 0 {
		return r, fmt.Errorf("loadgen: %d sampled entries never appeared in a checkpoint", len(pending))
	}
	return r, nil
}

type sample struct {
	index uint64
	sent  time.Time
}

func add(ctx context.Context, hc *http.Client, base, token string, entry []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/add", bytes.NewReader(entry))
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("add: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64)
}

func checkpointSize(ctx context.Context, hc *http.Client, base string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/checkpoint", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("checkpoint: %s %v", resp.Status, err)
	}
	lines := strings.SplitN(string(body), "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("checkpoint: malformed")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

func percentiles(d []time.Duration) (p50, p99, maxD time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99), d[len(d)-1]
}
