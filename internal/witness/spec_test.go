package witness

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "vitrine.test/logs/a"

// splitBody returns the checkpoint of an add-checkpoint body.
func splitBody(body string) []byte {
	_, cp, _ := strings.Cut(body, "\n\n")
	return []byte(cp)
}

// forked returns a log with l's key whose first size leaves are l's and
// whose later ones differ.
func (l *testLog) forked(size int64, more int) *testLog {
	f := &testLog{t: l.t, origin: l.origin, vkey: l.vkey, signer: l.signer}
	f.stored = append(f.stored, l.stored[:tlog.StoredHashCount(size)]...)
	f.leaves = size
	f.grow(more, "fork")
	return f
}

// TestAddCheckpointSpec drives every answer c2sp.org/tlog-witness defines
// for add-checkpoint.
func TestAddCheckpointSpec(t *testing.T) {
	l := newTestLog(t, origin, 20)
	other := newTestLog(t, "vitrine.test/logs/other", 5)
	impostor := newTestLog(t, origin, 20) // same origin, another key
	fork := l.forked(3, 17)               // differs from l from size 4 on

	tampered := func(cp []byte) string {
		b := bytes.Clone(cp)
		i := len(b) - 10 // inside the signature's base64
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return addBody(0, nil, b)
	}
	tooLong := "old 5\n" + strings.Repeat(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 64) + "\n" + string(l.checkpoint(20))
	badCheckpoint, err := note.Sign(&note.Note{Text: origin + "\nten\nroot\n"}, l.signer)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		seed     bool   // first cosign l at size 5
		body     string // the request
		want     int
		wantBody string // exact body for 409
		wantMsg  string // substring of the message for other errors
	}{
		{name: "first checkpoint", body: l.request(0, 5), want: http.StatusOK},
		{name: "first checkpoint of the empty tree", body: l.request(0, 0), want: http.StatusOK},
		{name: "advance with proof", seed: true, body: l.request(5, 12), want: http.StatusOK},
		{name: "same checkpoint again", seed: true, body: l.request(5, 5), want: http.StatusOK},

		{name: "unknown origin", body: other.request(0, 5), want: http.StatusNotFound, wantMsg: "unknown log origin"},
		{name: "untrusted key", body: impostor.request(0, 5), want: http.StatusForbidden, wantMsg: "no signature by the trusted key"},
		{name: "tampered signature", body: tampered(l.checkpoint(5)), want: http.StatusForbidden, wantMsg: "does not verify"},
		{name: "tampered checkpoint", body: addBody(0, nil, bytes.Replace(l.checkpoint(5), []byte("\n5\n"), []byte("\n6\n"), 1)), want: http.StatusForbidden, wantMsg: "does not verify"},

		{name: "old size above checkpoint size", seed: true, body: addBody(10, nil, l.checkpoint(8)), want: http.StatusBadRequest, wantMsg: "larger than the checkpoint size"},
		{name: "old size above checkpoint size, never cosigned", body: addBody(10, nil, l.checkpoint(8)), want: http.StatusBadRequest, wantMsg: "larger than the checkpoint size"},

		{name: "stale old size", seed: true, body: l.request(3, 12), want: http.StatusConflict, wantBody: "5\n"},
		{name: "old size ahead of cosigned", seed: true, body: l.request(8, 12), want: http.StatusConflict, wantBody: "5\n"},
		{name: "nonzero old size, never cosigned", body: l.request(3, 12), want: http.StatusConflict, wantBody: "0\n"},
		{name: "old size 0 after cosigning", seed: true, body: l.request(0, 12), want: http.StatusConflict, wantBody: "5\n"},
		{name: "different root at cosigned size", seed: true, body: addBody(5, nil, fork.checkpoint(5)), want: http.StatusConflict, wantBody: "5\n"},

		{name: "proof from the wrong size", seed: true, body: addBody(5, l.proof(4, 12), l.checkpoint(12)), want: http.StatusUnprocessableEntity, wantMsg: "does not verify"},
		{name: "no proof", seed: true, body: addBody(5, nil, l.checkpoint(12)), want: http.StatusUnprocessableEntity, wantMsg: "does not verify"},
		{name: "forked tree", seed: true, body: addBody(5, fork.proof(5, 20), fork.checkpoint(20)), want: http.StatusUnprocessableEntity, wantMsg: "does not verify"},
		{name: "proof with old size 0", body: addBody(0, l.proof(3, 12), l.checkpoint(12)), want: http.StatusUnprocessableEntity, wantMsg: "must be empty"},
		{name: "size 0 with a nonempty root", body: addBody(0, nil, l.sign(log.Checkpoint{Origin: origin, Size: 0, Hash: l.root(5)}, l.signer)), want: http.StatusUnprocessableEntity, wantMsg: "empty tree"},

		{name: "empty body", body: "", want: http.StatusBadRequest, wantMsg: "old size line"},
		{name: "no old line", body: "hello\n\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "is not \"old <size>\""},
		{name: "old size with leading zero", body: "old 05\n\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "leading zeros"},
		{name: "negative old size", body: "old -1\n\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "old size"},
		{name: "old size out of range", body: "old 18446744073709551616\n\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "out of range"},
		{name: "two spaces", body: "old  0\n\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "old size"},
		{name: "no empty line", body: "old 0\nAAAA", want: http.StatusBadRequest, wantMsg: "no empty line"},
		{name: "proof line not base64", body: "old 0\n" + string(l.checkpoint(5)), want: http.StatusBadRequest, wantMsg: "line 1 is not a base64 hash"},
		{name: "proof line with CR", body: "old 5\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\r\n\n" + string(l.checkpoint(12)), want: http.StatusBadRequest, wantMsg: "not a base64 hash"},
		{name: "short hash", body: "old 5\n" + base64.StdEncoding.EncodeToString(make([]byte, 31)) + "\n\n" + string(l.checkpoint(12)), want: http.StatusBadRequest, wantMsg: "31-byte hash"},
		{name: "64 proof lines", body: tooLong, want: http.StatusBadRequest, wantMsg: "more than 63"},
		{name: "no checkpoint", body: "old 0\n\n", want: http.StatusBadRequest, wantMsg: "no checkpoint"},
		{name: "checkpoint not a note", body: "old 0\n\n" + origin + "\n5\nnot a note", want: http.StatusBadRequest, wantMsg: "not a signed note"},
		{name: "signed text not a checkpoint", body: addBody(0, nil, badCheckpoint), want: http.StatusBadRequest, wantMsg: "size invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := openTestWitness(t, "", l.key())
			h := w.Handler()
			if tt.seed {
				mustPost(t, h, l.request(0, 5), http.StatusOK)
			}
			got := post(h, tt.body)
			if got.status != tt.want {
				t.Fatalf("status = %d (%q), want %d", got.status, got.body, tt.want)
			}
			switch {
			case tt.want == http.StatusOK:
				checkCosigned(t, w, splitBody(tt.body), got.body)
			case tt.want == http.StatusConflict:
				if got.body != tt.wantBody || got.contentType != "text/x.tlog.size" {
					t.Errorf("409 answer = %q with Content-Type %q, want %q with text/x.tlog.size", got.body, got.contentType, tt.wantBody)
				}
			default:
				if !strings.HasPrefix(got.contentType, "text/plain") || !strings.Contains(got.body, tt.wantMsg) {
					t.Errorf("error answer = %q (%s), want a text message containing %q", got.body, got.contentType, tt.wantMsg)
				}
			}
		})
	}
}

// TestAddCheckpointSequence follows a log through several checkpoints and
// checks that what the witness serves is what it cosigned last.
func TestAddCheckpointSequence(t *testing.T) {
	l := newTestLog(t, origin, 1)
	w := openTestWitness(t, "", l.key())
	h := w.Handler()
	var old int64
	for _, size := range []int64{0, 1, 2, 7, 8, 100, 100, 1000} {
		l.grow(int(size-l.leaves), "leaf")
		r := mustPost(t, h, l.request(old, size), http.StatusOK)
		checkCosigned(t, w, l.checkpoint(size), r.body)
		cp, err := w.Checkpoint(t.Context(), origin)
		if err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
		var c log.Checkpoint
		if _, err := c.Unmarshal(cp); err != nil || c.Size != uint64(size) {
			t.Fatalf("stored checkpoint size = %d (%v), want %d", c.Size, err, size)
		}
		old = size
	}
}

// TestAddLog checks trusting logs at run time.
func TestAddLog(t *testing.T) {
	l := newTestLog(t, origin, 5)
	_, otherKey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	_, misnamed, err := note.GenerateKey(rand.Reader, "vitrine.test/logs/b")
	if err != nil {
		t.Fatal(err)
	}
	w := openTestWitness(t, "")
	h := w.Handler()
	mustPost(t, h, l.request(0, 5), http.StatusNotFound)

	tests := []struct {
		name    string
		key     LogKey
		wantErr bool
	}{
		{name: "new log", key: l.key()},
		{name: "same log again", key: l.key()},
		{name: "same origin, other key", key: LogKey{Origin: origin, VKey: otherKey}, wantErr: true},
		{name: "key named otherwise", key: LogKey{Origin: origin, VKey: misnamed}, wantErr: true},
		{name: "malformed key", key: LogKey{Origin: origin, VKey: "vitrine.test/logs/a+00000000+AAAA"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := w.AddLog(t.Context(), tt.key)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("AddLog = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
	r := mustPost(t, h, l.request(0, 5), http.StatusOK)
	checkCosigned(t, w, l.checkpoint(5), r.body)
}
