package platform

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/reputation"
)

type registered struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	Region    string `json:"region"`
	IngestURL string `json:"ingest_url"`
}

func register(t *testing.T, p *Platform, country string) registered {
	t.Helper()
	code, body := httpDo(t, "POST", p.URL()+"/v1/endpoints", p.OperatorToken(), []byte(`{"country":"`+country+`"}`))
	if code != 200 {
		t.Fatalf("register %s: %d %s", country, code, body)
	}
	var r registered
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func hashOf(s string) string {
	return fmt.Sprintf("%064x", []byte(s))[:64]
}

func batchJSON(id string, records ...string) []byte {
	return []byte(`{"batch_id":"` + id + `","records":[` + strings.Join(records, ",") + `]}`)
}

func detection(sha, name, path string) string {
	return `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"detection","sha256":"` + sha + `","size":68,"detection":"` + name + `","url":"","path":"` + path + `","product":"vitrine-agent/1.0.0","ruledb":42}`
}

func fileRec(sha, path string) string {
	return `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"file","sha256":"` + sha + `","size":1234,"detection":"","url":"","path":"` + path + `","product":"vitrine-agent/1.0.0","ruledb":42}`
}

func postJSON(t *testing.T, u, token string, body []byte) (int, []byte) {
	t.Helper()
	return httpDo(t, "POST", u, token, body)
}

// TestRegionsEndToEnd registers endpoints in five countries, sends their
// telemetry through the front door, and reads both regions' stores
// directly: every record is in its home region's store and in no other,
// and a detection first reported in moscow is a verdict in zurich.
func TestRegionsEndToEnd(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	defer stop(t, p)

	d := p.Discovery()
	if len(d.Regions) != 2 {
		t.Fatalf("discovery lists %d regions, want 2", len(d.Regions))
	}
	want := map[string]string{"DE": "zurich", "US": "zurich", "JP": "zurich", "RU": "moscow", "BR": "moscow"}
	eps := map[string]registered{}
	for c, region := range want {
		r := register(t, p, c)
		if r.Region != region {
			t.Fatalf("%s registered in %s, want %s", c, r.Region, region)
		}
		eps[c] = r
	}

	// Each endpoint reports through the front door, which redirects to its
	// home region without reading the body.
	for c, r := range eps {
		req, _ := http.NewRequest("POST", p.URL()+"/v1/telemetry", bytes.NewReader([]byte("{}")))
		req.Header.Set("Authorization", "Bearer "+r.Token)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != r.IngestURL {
			t.Fatalf("%s: front door answered %d to %q, want 307 to %q", c, resp.StatusCode, resp.Header.Get("Location"), r.IngestURL)
		}
		path := "C:/Users/" + c + "/report.exe"
		code, body := postJSON(t, r.IngestURL, r.Token, batchJSON("b-"+c, fileRec(hashOf("common"), path), fileRec(hashOf("only-"+c), path)))
		if code != 200 {
			t.Fatalf("%s: ingest: %d %s", c, code, body)
		}
	}
	// A detection first reported in moscow: before it, zurich knows
	// nothing of the file.
	evil := reputation.EICAR
	verdictURL := strings.TrimSuffix(eps["DE"].IngestURL, "/telemetry") + "/verdicts/" + evil
	if code, body := httpDo(t, "GET", verdictURL, eps["DE"].Token, nil); code != 200 || !bytes.Contains(body, []byte(`"unknown"`)) {
		t.Fatalf("verdict before any report: %d %s, want unknown", code, body)
	}
	code, body := postJSON(t, eps["RU"].IngestURL, eps["RU"].Token, batchJSON("b-RU-2", detection(evil, "EICAR-Test-File", "C:/x/eicar.com")))
	if code != 200 {
		t.Fatalf("moscow detection: %d %s", code, body)
	}

	// Read both stores directly: each holds the batches of its own
	// endpoints only, under their pseudonyms, and neither holds an
	// endpoint id or a path in clear anywhere in its files.
	pkey, err := keys.LoadOrCreateToken(filepath.Join(data, "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, region := range []string{"zurich", "moscow"} {
		file := filepath.Join(data, "regions", region, "telemetry.db")
		db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(`SELECT pseudonym FROM batches`)
		if err != nil {
			t.Fatalf("%s store: %v", region, err)
		}
		seen := map[string]bool{}
		for rows.Next() {
			var ps string
			if err := rows.Scan(&ps); err != nil {
				t.Fatal(err)
			}
			seen[ps] = true
		}
		rows.Close()
		db.Close()
		var files []byte
		for _, f := range []string{file, file + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			files = append(files, b...)
		}
		for c, r := range eps {
			if in := seen[endpoint.Pseudonym([]byte(pkey), r.ID)]; in != (want[c] == region) {
				t.Errorf("endpoint in %s: records in %s store = %v, want %v", c, region, in, want[c] == region)
			}
			for _, personal := range []string{r.ID, "C:/Users/" + c + "/report.exe"} {
				if bytes.Contains(files, []byte(personal)) {
					t.Errorf("%s store's files hold %q in clear", region, personal)
				}
			}
		}
	}

	// A zurich endpoint looks the moscow detection up in zurich.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body = httpDo(t, "GET", verdictURL, eps["DE"].Token, nil)
		if code != 200 {
			t.Fatalf("verdict: %d %s", code, body)
		}
		if bytes.Contains(body, []byte(`"malicious"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zurich never learned of moscow's detection: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIngestBadInput sends every kind of bad input and checks that each
// gets a clear 4xx and that nothing is stored.
func TestIngestBadInput(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	defer stop(t, p)
	de, ru := register(t, p, "DE"), register(t, p, "RU")
	good := fileRec(hashOf("x"), "C:/a")
	many := make([]string, 10001)
	for i := range many {
		many[i] = good
	}
	tests := []struct {
		name  string
		url   string
		token string
		body  []byte
		want  int
		msg   string
	}{
		{"malformed JSON", de.IngestURL, de.Token, []byte(`{"batch_id":"a","records":[`), 400, "bad batch"},
		{"oversize batch", de.IngestURL, de.Token, batchJSON("big", many...), 413, "10000"},
		{"bad hash", de.IngestURL, de.Token, batchJSON("h", fileRec("XYZ", "C:/a")), 400, "sha256"},
		{"unknown field", de.IngestURL, de.Token, []byte(`{"batch_id":"u","records":[` + good[:len(good)-1] + `,"extra":1}]}`), 400, "extra"},
		{"unknown top-level field", de.IngestURL, de.Token, []byte(`{"batch_id":"u","records":[` + good + `],"x":1}`), 400, "x"},
		{"no token", de.IngestURL, "", batchJSON("n", good), 401, "token"},
		{"wrong token", de.IngestURL, "vt1.AAAA.BBBB", batchJSON("w", good), 401, "token"},
		{"another region's token", de.IngestURL, ru.Token, batchJSON("o", good), 421, "moscow"},
		{"empty batch", de.IngestURL, de.Token, batchJSON("e"), 400, "records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := postJSON(t, tc.url, tc.token, tc.body)
			if code != tc.want {
				t.Fatalf("status %d (%s), want %d", code, body, tc.want)
			}
			if !bytes.Contains(body, []byte(tc.msg)) {
				t.Errorf("answer %s does not mention %q", body, tc.msg)
			}
		})
	}
	for _, region := range []string{"zurich", "moscow"} {
		n, err := p.Region(region).Store().CountRecords(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s stored %d records from bad input", region, n)
		}
	}
	// A retried batch is stored once.
	for i := 0; i < 2; i++ {
		code, body := postJSON(t, de.IngestURL, de.Token, batchJSON("retry", good, good))
		if code != 200 || bytes.Contains(body, []byte(`"duplicate":true`)) != (i == 1) {
			t.Fatalf("attempt %d: %d %s", i, code, body)
		}
	}
	if n, _ := p.Region("zurich").Store().CountRecords(context.Background()); n != 2 {
		t.Errorf("after a retried batch zurich holds %d records, want 2", n)
	}
}
