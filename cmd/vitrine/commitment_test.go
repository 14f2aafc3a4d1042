package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// request sends a request with a bearer token and returns the status and body.
func request(t *testing.T, method, u, token string, body []byte, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestCommitmentVerify: a supervisor checks a region's commitment, proven
// from its access log, against a backup of the region's store. A backup
// with a record changed or removed is a mismatch; an access log whose
// bundles, tiles or checkpoint are doctored is refused, and nothing it made
// up is shown.
func TestCommitmentVerify(t *testing.T) {
	ctx := context.Background()
	t.Setenv("HOME", t.TempDir()) // the pins
	p, data := startPlatform(t)
	op := p.OperatorToken()
	ep := registerEndpoint(t, p, "DE")
	var recs []string
	for _, h := range []string{"1", "2", "3"} {
		recs = append(recs, testRecord(strings.Repeat(h, 64), "C:/x"))
	}
	ep.ingest(t, "b1", recs...)
	code, b := request(t, "POST", p.URL()+"/regions/zurich/v1/commitments", op, nil)
	if code != http.StatusOK {
		t.Fatalf("commitment: %d %s", code, b)
	}
	var made struct {
		Index uint64
		Count int64
	}
	if err := json.Unmarshal(b, &made); err != nil || made.Count != 3 {
		t.Fatalf("commitment: %s (%v), want 3 records", b, err)
	}
	// Once a witnessed checkpoint covers it.
	waitCheckpoint(t, p, "access-zurich", made.Index+1)
	// A record stored after the commitment is not part of it.
	ep.ingest(t, "b2", recs[0])
	// Until the aggregate exchange has logged its crossing of the new
	// record: the honest answers stay the same from here on.
	waitQuiet(t, p, "access-zurich")

	// The backup, as an operator makes one of a live database.
	live, err := sql.Open("sqlite", filepath.Join(data, "regions", "zurich", "telemetry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	backup := func(name string) string {
		path := filepath.Join(t.TempDir(), name)
		if _, err := live.Exec(`VACUUM INTO ?`, path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := backup("zurich.db")
	verify := func(base, db string, args ...string) (string, error) {
		return runCmd(ctx, runCommitmentVerify, append([]string{"--platform", base, "--region", "zurich", "--store", "sqlite:" + db}, args...)...)
	}
	// The last commitment, every entry proven on the way; and the one at
	// its index.
	ways := [][]string{{}, {"--index", strconv.FormatUint(made.Index, 10)}}
	honest := map[int]string{}
	for i, args := range ways {
		out, err := verify(p.URL(), good, args...)
		if err != nil || !strings.Contains(out, fmt.Sprintf("entry %d,", made.Index)) || !strings.Contains(out, "3 records with ids up to") || !strings.Contains(out, "match") {
			t.Errorf("commitment verify %v: %v\n%s", args, err, out)
		}
		honest[i] = out
	}

	for _, tc := range []struct{ name, change, says string }{
		{"a record changed", `UPDATE records SET sha256 = '` + strings.Repeat("4", 64) + `' WHERE id = (SELECT min(id) FROM records)`, "root"},
		{"a record removed", `DELETE FROM records WHERE id = (SELECT min(id) FROM records)`, "2 records, the commitment covers 3"},
	} {
		db := backup(strings.ReplaceAll(tc.name, " ", "-") + ".db")
		bk, err := sql.Open("sqlite", db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bk.Exec(tc.change); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		bk.Close()
		if out, err := verify(p.URL(), db); !errors.Is(err, access.ErrMismatch) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: commitment verify = %v, want a mismatch saying %q\n%s", tc.name, err, tc.says, out)
		}
	}
	if out, err := verify(p.URL(), filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Errorf("commitment verify of a missing database: no error\n%s", out)
	}

	// Doctored access-log answers: the command fails, or, where it did
	// not need what was doctored (a follower reads each bundle once, and
	// proves a small log without tiles), answers as from the honest log.
	evil := []byte(`{"v":1,"kind":"commitment","time":"2026-11-22T10:00:00.123Z","region":"zurich","dataset":"telemetry","count":0,"through":0,"root":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`)
	for _, lie := range liar.Lies {
		px := liar.New(t, p.URL(), "access-zurich", evil)
		px.Tell(lie)
		for i, args := range ways {
			out, err := verify(px.URL, good, args...)
			if (err == nil && out != honest[i]) || strings.Contains(out, "through id 0") {
				t.Errorf("commitment verify %v from %s: %v\n%s", args, lie, err, out)
			}
			if err != nil && !strings.Contains(err.Error(), "entr") && !strings.Contains(err.Error(), "checkpoint") {
				t.Errorf("commitment verify %v from %s: %v, want an error naming the entries or the checkpoint", args, lie, err)
			}
		}
	}
}

// waitCheckpoint waits until the platform's log name has a checkpoint of at
// least size entries.
func waitCheckpoint(t *testing.T, p *platform.Platform, name string, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := p.Log(name).Reader().ReadCheckpoint(context.Background())
		if err == nil {
			lines := strings.SplitN(string(b), "\n", 3)
			if n, err := strconv.ParseUint(lines[1], 10, 64); err == nil && n >= size {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no checkpoint of %d entries after 10s (last: %q, %v)", name, size, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startPlatform starts a platform for a test, quiet, with its data directory.
func startPlatform(t *testing.T) (*platform.Platform, string) {
	t.Helper()
	data := t.TempDir()
	p, err := platform.Start(context.Background(), platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p, data
}

// testEndpoint is an endpoint registered with a test platform.
type testEndpoint struct {
	Token     string `json:"token"`
	IngestURL string `json:"ingest_url"`
}

func registerEndpoint(t *testing.T, p *platform.Platform, country string) *testEndpoint {
	t.Helper()
	code, b := request(t, "POST", p.URL()+"/v1/endpoints", p.OperatorToken(), []byte(`{"country":"`+country+`"}`))
	if code != http.StatusOK {
		t.Fatalf("registering: %d %s", code, b)
	}
	var ep testEndpoint
	if err := json.Unmarshal(b, &ep); err != nil {
		t.Fatal(err)
	}
	return &ep
}

// ingest sends the records (testRecord) as one batch.
func (ep *testEndpoint) ingest(t *testing.T, batch string, recs ...string) {
	t.Helper()
	if code, b := request(t, "POST", ep.IngestURL, ep.Token, []byte(`{"batch_id":"`+batch+`","records":[`+strings.Join(recs, ",")+`]}`)); code != http.StatusOK {
		t.Fatalf("ingest: %d %s", code, b)
	}
}

// testRecord is a detection of the file with hash sha at path, a minute ago.
func testRecord(sha, path string) string {
	return `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"detection","sha256":"` + sha + `","size":68,"detection":"EICAR","url":"","path":"` + path + `","product":"vitrine-agent/1.0.0","ruledb":1}`
}
