package witness

import (
	"bytes"
	"net/http"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// FuzzAddCheckpoint drives add-checkpoint with arbitrary bodies. The handler
// must not crash, must answer only with the spec's codes (never 5xx), and
// must cosign only a checkpoint that carries the trusted log's signature,
// with a cosignature that verifies.
func FuzzAddCheckpoint(f *testing.F) {
	l := newTestLog(f, origin, 16)
	w := openTestWitness(f, "", l.key())
	h := w.Handler()
	logVerifier, err := note.NewVerifier(l.vkey)
	if err != nil {
		f.Fatal(err)
	}

	for _, body := range []string{
		l.request(0, 3),
		l.request(3, 8),
		l.request(8, 8),
		l.request(8, 16),
		l.request(0, 0),
		addBody(5, l.proof(4, 16), l.checkpoint(16)),
		addBody(0, l.proof(3, 16), l.checkpoint(16)),
		"old 0\n\n",
		"old 18446744073709551615\n\n" + string(l.checkpoint(1)),
		"old 1\nAAAA\n\n" + string(l.checkpoint(1)),
		"old 0\n\n" + origin + "\n1\nAAAA\n\n— " + origin + " AAAA\n",
		"",
		"\n\n\n",
	} {
		f.Add([]byte(body))
	}

	allowed := map[int]bool{
		http.StatusOK: true, http.StatusBadRequest: true, http.StatusForbidden: true,
		http.StatusNotFound: true, http.StatusConflict: true, http.StatusRequestEntityTooLarge: true,
		http.StatusUnprocessableEntity: true,
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := post(h, string(body))
		if !allowed[r.status] {
			t.Fatalf("status %d (%q) for body %q", r.status, r.body, body)
		}
		if r.status != http.StatusOK {
			return
		}
		// The checkpoint follows the first empty line: the old size line
		// and proof lines are never empty.
		_, cp, ok := bytes.Cut(body, []byte("\n\n"))
		if !ok {
			t.Fatalf("200 for a body without an empty line: %q", body)
		}
		if _, err := note.Open(cp, note.VerifierList(logVerifier)); err != nil {
			t.Fatalf("200 for a checkpoint the log did not sign (%v): %q", err, body)
		}
		checkCosigned(t, w, cp, r.body)
	})
}
