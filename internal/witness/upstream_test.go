package witness

import (
	"context"
	"crypto/rand"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/sqlite"
	upstream "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"
)

// TestUpstreamDeviations records where the upstream witness's own
// add-checkpoint handler answers differently from c2sp.org/tlog-witness, which
// is why this package corrects it (specState, Witness.addCheckpoint). If it
// fails, upstream has changed: check whether the corrections are still
// needed.
func TestUpstreamDeviations(t *testing.T) {
	l := newTestLog(t, origin, 12)
	impostor := newTestLog(t, origin, 5)
	fork := l.forked(3, 9)

	tests := []struct {
		name     string
		seed     bool
		body     string
		upstream int // what upstream answers
		spec     int // what the spec, and this package, answer
	}{
		{name: "different root at cosigned size", seed: true, body: addBody(5, nil, fork.checkpoint(5)), upstream: http.StatusUnprocessableEntity, spec: http.StatusConflict},
		{name: "nonzero old size, never cosigned", body: l.request(3, 12), upstream: http.StatusOK, spec: http.StatusConflict},
		{name: "old size above checkpoint size, never cosigned", body: addBody(10, nil, l.checkpoint(8)), upstream: http.StatusOK, spec: http.StatusBadRequest},
		{name: "untrusted key", body: impostor.request(0, 5), upstream: http.StatusInternalServerError, spec: http.StatusForbidden},
		{name: "checkpoint not a note", body: "old 0\n\n" + origin + "\n5\nnot a note", upstream: http.StatusInternalServerError, spec: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := openUpstream(t, l.key())
			ours := openTestWitness(t, "", l.key()).Handler()
			if tt.seed {
				mustPost(t, up, l.request(0, 5), http.StatusOK)
				mustPost(t, ours, l.request(0, 5), http.StatusOK)
			}
			if got := post(up, tt.body); got.status != tt.upstream {
				t.Errorf("upstream answered %d (%q), expected its known %d", got.status, got.body, tt.upstream)
			}
			if got := post(ours, tt.body); got.status != tt.spec {
				t.Errorf("witness answered %d (%q), want %d", got.status, got.body, tt.spec)
			}
		})
	}

	t.Run("400 without a message", func(t *testing.T) {
		up := openUpstream(t, l.key())
		if got := post(up, "old 05\n"); got.status != http.StatusBadRequest || strings.TrimSpace(got.body) != "" {
			t.Errorf("upstream answered %d %q, expected its known empty 400", got.status, got.body)
		}
	})
}

// openUpstream returns the upstream witness's add-checkpoint handler over
// the upstream SQLite persistence, trusting log.
func openUpstream(t *testing.T, log LogKey) http.Handler {
	t.Helper()
	ctx := t.Context()
	db, closeDB, err := sqlite.New(ctx, sqlite.Opts{Path: filepath.Join(t.TempDir(), "state.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeDB() })
	skey, _, err := note.GenerateKey(rand.Reader, "vitrine.test/upstream")
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(log.VKey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := upstream.New(ctx, upstream.Opts{
		Persistence: db,
		Signers:     []note.Signer{s},
		VerifierForLog: func(_ context.Context, o string) (note.Verifier, bool, error) {
			return v, o == log.Origin, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", upstream.NewHTTPHandler(w).AddCheckpoint)
	return mux
}
