package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/scan"
)

// ErrNoRuleDB means no rule database is installed: run an update first.
var ErrNoRuleDB = errors.New("no rule database is installed")

// Detection is one signature that matched one file.
type Detection struct {
	Path      string
	SHA256    string
	Size      int64
	Signature string
	// RuleDB is the version of the database that detected it.
	RuleDB uint64
}

// Scan scans paths (files, and directories walked) on workers cores (0:
// all) with every installed rule database. fn, if not nil, sees each file's
// result as it comes; Scan returns the detections, each file's SHA-256 and
// size read once more for the report.
func (a *Agent) Scan(ctx context.Context, paths []string, workers int, fn func(scan.Result)) ([]Detection, error) {
	dbs, err := a.ruleDBs()
	if err != nil {
		return nil, err
	}
	var out []Detection
	for _, db := range dbs {
		s, err := scan.New(db)
		if err != nil {
			return nil, err
		}
		var found []scan.Result
		err = s.ScanPaths(ctx, paths, workers, func(r scan.Result) {
			if fn != nil {
				fn(r)
			}
			if len(r.Matches) > 0 {
				found = append(found, r)
			}
		})
		if err != nil {
			return nil, err
		}
		for _, r := range found {
			sum, size, err := fileDigest(r.Path)
			if err != nil {
				return nil, fmt.Errorf("reading %s for the report: %w", r.Path, err)
			}
			for _, m := range r.Matches {
				out = append(out, Detection{Path: r.Path, SHA256: sum, Size: size, Signature: m.Name, RuleDB: db.Version()})
			}
		}
	}
	return out, nil
}

// ruleDBs opens every installed file that is a rule database.
func (a *Agent) ruleDBs() ([]*ruledb.DB, error) {
	inst, err := a.Installed()
	if err != nil {
		return nil, err
	}
	var dbs []*ruledb.DB
	for _, in := range inst {
		for _, p := range in.Files {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if db, err := ruledb.Open(b); err == nil {
				dbs = append(dbs, db)
			}
		}
	}
	if len(dbs) == 0 {
		return nil, ErrNoRuleDB
	}
	return dbs, nil
}

func fileDigest(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Report sends detections to the endpoint's home region as one telemetry
// batch of detection records, through the platform's front door, which
// redirects to the home region under the residency policy in force. The
// batch id makes a retried report stored once.
func (a *Agent) Report(ctx context.Context, ds []Detection) error {
	if len(ds) == 0 {
		return nil
	}
	type record struct {
		Time      string `json:"time"`
		Kind      string `json:"kind"`
		SHA256    string `json:"sha256"`
		Size      int64  `json:"size"`
		Detection string `json:"detection"`
		Path      string `json:"path"`
		Product   string `json:"product"`
		RuleDB    uint64 `json:"ruledb"`
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	batch := struct {
		BatchID string   `json:"batch_id"`
		Records []record `json:"records"`
	}{BatchID: "agent-" + hex.EncodeToString(id)}
	now := time.Now().UTC().Format(time.RFC3339)
	for _, d := range ds {
		p, err := filepath.Abs(d.Path)
		if err != nil {
			p = d.Path
		}
		batch.Records = append(batch.Records, record{Time: now, Kind: "detection", SHA256: d.SHA256, Size: d.Size,
			Detection: d.Signature, Path: filepath.ToSlash(p), Product: "vitrine-agent/" + Version, RuleDB: d.RuleDB})
	}
	body, err := json.Marshal(&batch)
	if err != nil {
		return err
	}
	// The front door answers 307 with the home region's ingest URL; the
	// token goes there again, whatever host it is on.
	hc := *a.HTTP
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := a.pinned.Platform + "/v1/telemetry"
	for range 3 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+a.identity.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("reporting detections: %w", err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect:
			loc, err := resp.Location()
			if err != nil {
				return fmt.Errorf("reporting detections: %w", err)
			}
			u = loc.String()
		default:
			return fmt.Errorf("reporting detections: POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(msg))
		}
	}
	return errors.New("reporting detections: too many redirects")
}
