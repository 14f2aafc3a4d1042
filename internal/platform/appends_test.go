package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/residency"
)

// malformedPolicy is a note that claims to be a residency policy (it has
// the header) and is not one: what an operator token could once append to
// the policy log through POST /logs/policy/add.
var malformedPolicy = []byte("vitrine residency policy v1\n{\"version\":2,\"default\":\n\n— vitrine.local/policy AAAAAAAA\n")

// TestPlatformLogsRefuseGenericAppend: no entry reaches the platform's logs
// through POST /logs/<name>/add, with the operator token or without it;
// the answer is a 403 that names the component that owns the log, and the
// log holds nothing of what was sent.
func TestPlatformLogsRefuseGenericAppend(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	forged := []byte(`{"v":1,"kind":"access","principal":{"id":"supervisor:alice","role":"supervisor","location":"CH"},"action":"read","decision":"granted"}`)
	tests := []struct {
		log, token string
		body       []byte
		wantOwner  string
	}{
		{"policy", p.OperatorToken(), malformedPolicy, "/v1/relocations"},
		{"policy", "", malformedPolicy, "/v1/relocations"},
		{"access-zurich", p.OperatorToken(), forged, "access gateway"},
		{"access-moscow", p.OperatorToken(), forged, "access gateway"},
		{"release", p.OperatorToken(), []byte("release entry"), BuildPath},
	}
	for _, tc := range tests {
		t.Run(tc.log, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			l := p.Log(tc.log)
			before := appendMarker(ctx, t, l)
			code, body := httpDo(t, "POST", p.URL()+"/logs/"+tc.log+"/add", tc.token, tc.body)
			if code != http.StatusForbidden {
				t.Errorf("POST /logs/%s/add: %d %s, want 403", tc.log, code, body)
			}
			var answer struct{ Error string }
			if err := json.Unmarshal(body, &answer); err != nil || !strings.Contains(answer.Error, tc.wantOwner) {
				t.Errorf("POST /logs/%s/add answered %q, want a JSON error naming %q", tc.log, body, tc.wantOwner)
			}
			after := appendMarker(ctx, t, l)
			if tc.log == "policy" && after != before+1 {
				// Nothing else appends to the policy log once the platform runs.
				t.Errorf("policy log grew by %d entries around the refused append, want 1 (the marker)", after-before)
			}
			for i, e := range entries(ctx, t, l, after+1) {
				if bytes.Equal(e, tc.body) {
					t.Errorf("log %s holds the refused entry at index %d", tc.log, i)
				}
			}
		})
	}
	// The read API stays served.
	if code, _ := httpDo(t, "GET", p.URL()+"/logs/policy/checkpoint", "", nil); code != 200 {
		t.Errorf("GET /logs/policy/checkpoint: %d, want 200", code)
	}
}

// appendMarker appends an entry through the log's Go API, as its owner
// does, waits until a witnessed checkpoint covers it and returns its index.
func appendMarker(ctx context.Context, t *testing.T, l *logserver.Log) uint64 {
	t.Helper()
	idx, err := l.Append(ctx, []byte("marker "+time.Now().Format(time.RFC3339Nano)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AwaitWitnessed(ctx, idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// entries reads the first size entries of l.
func entries(ctx context.Context, t *testing.T, l *logserver.Log, size uint64) [][]byte {
	t.Helper()
	var out [][]byte
	for bi := uint64(0); bi*256 < size; bi++ {
		b, err := client.GetEntryBundle(ctx, l.Reader().ReadEntryBundle, bi, size)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Entries...)
	}
	return out
}

// TestPolicyLogBadEntryDoesNotStopStart: a policy log holding entries that
// are no valid policy (appended before the generic append was closed)
// starts: each is reported at Error level with the log, its index and the
// reason, and skipped, and the last valid policy stays in force.
func TestPolicyLogBadEntryDoesNotStopStart(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A policy of a higher version, well formed but signed by another key.
	other, _, err := note.GenerateKey(nil, "vitrine.local/policy")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(other)
	if err != nil {
		t.Fatal(err)
	}
	v2 := residency.Default()
	v2.Version = 2
	forged, err := residency.Sign(v2, signer)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, e := range [][]byte{malformedPolicy, forged, []byte("not a policy at all")} {
		if last, err = p.Log("policy").Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Log("policy").AwaitWitnessed(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop(t, p)

	var logs lockedBuffer
	p, err = Start(ctx, Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("start with bad entries in the policy log: %v", err)
	}
	defer stop(t, p)
	if got := p.regions.policy.Load().Version; got != 1 {
		t.Errorf("active policy version %d, want 1 (the last valid one)", got)
	}
	reported := map[float64]string{}
	for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
		var rec struct {
			Level, Log, Reason string
			Index              float64
		}
		if json.Unmarshal(line, &rec) == nil && rec.Level == "ERROR" && rec.Log == "policy" {
			reported[rec.Index] = rec.Reason
		}
	}
	for _, idx := range []float64{1, 2, 3} {
		if reported[idx] == "" {
			t.Errorf("policy log entry %v not reported at Error level with a reason; reported: %v", idx, reported)
		}
	}
}

// lockedBuffer is a bytes.Buffer that a logger may write to from many
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
