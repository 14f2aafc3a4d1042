package logserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/tlog"
)

// answerTransport answers POST …/add with add and every other request
// with prove, each a 200.
type answerTransport struct{ add, prove []byte }

func (a answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body := a.prove
	if strings.HasSuffix(r.URL.Path, "/add") {
		body = a.add
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

// FuzzRemoteAnswers: whatever the logs' process answers to an append and
// to a proof, the Remote does not panic, and takes no proof whose
// checkpoint is not signed by the log's key under its policy and does not
// cover the entry.
func FuzzRemoteAnswers(f *testing.F) {
	_, vkey, err := note.GenerateKey(nil, "fuzz.test/logs/access-zurich")
	if err != nil {
		f.Fatal(err)
	}
	_, wkey, err := note.GenerateKey(nil, "fuzz.test/witness")
	if err != nil {
		f.Fatal(err)
	}
	cwkey, err := fnote.VKeyToCosignatureV1(wkey)
	if err != nil {
		f.Fatal(err)
	}
	policy, err := tlog.SingleWitnessPolicy("w", cwkey, "http://witness.invalid")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("0"), []byte("c2sp.org/tlog-proof@v1\nindex 0\n\nfuzz.test/logs/access-zurich\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— fuzz.test/logs/access-zurich AAAA\n"))
	f.Add([]byte("18446744073709551615"), []byte(""))
	f.Add([]byte(" 7\n"), []byte("c2sp.org/tlog-proof@v1\nindex 7\n"))
	f.Fuzz(func(t *testing.T, add, prove []byte) {
		r, err := NewRemote("http://logs.invalid/logs/access-zurich/", vkey, policy, "token", &http.Client{Transport: answerTransport{add, prove}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		idx, err := r.Append(ctx, []byte("entry"))
		if err != nil {
			return
		}
		p, err := r.Prove(ctx, idx)
		if err != nil {
			if r.Ready() == nil {
				t.Fatal("a refused proof left the log ready")
			}
			return
		}
		cp, verr := r.Policy().VerifyCheckpoint(p.Checkpoint, r.Verifier())
		if verr != nil || p.Index != idx || cp.Size <= idx {
			t.Fatalf("a proof taken: index %d for %d, checkpoint %v", p.Index, idx, verr)
		}
	})
}
