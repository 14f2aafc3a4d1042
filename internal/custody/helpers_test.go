package custody

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// env is a custody service in front of real access logs, one per region,
// each cosigned by a real witness over HTTP, as in a deployment.
type env struct {
	t    testing.TB
	cfg  Config
	svc  *Service
	logs map[string]*logserver.Log
}

var testRegions = []string{"zurich", "moscow"}

func logOrigin(region string) string { return "vitrine.test/access-" + region }

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	logDirs := make(map[string]string)
	var trusted []witness.LogKey
	for _, r := range testRegions {
		logDirs[r] = t.TempDir()
		vkey, err := logserver.LoadOrCreateKey(logDirs[r], logOrigin(r))
		if err != nil {
			t.Fatal(err)
		}
		trusted = append(trusted, witness.LogKey{Origin: logOrigin(r), VKey: vkey})
	}
	w, err := witness.Open(ctx, witness.Config{Dir: t.TempDir(), Name: "vitrine.test/supervisor", Logs: trusted})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	wsrv := httptest.NewServer(w.Handler())
	t.Cleanup(wsrv.Close)
	policyText, err := tlog.SingleWitnessPolicy("supervisor", w.VKey(), wsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy(policyText)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, logs: make(map[string]*logserver.Log), cfg: Config{Dir: t.TempDir()}}
	for _, r := range testRegions {
		l, err := logserver.Open(ctx, logserver.Config{
			Dir: logDirs[r], Origin: logOrigin(r), WitnessPolicy: policyText,
			CheckpointInterval: 100 * time.Millisecond, WitnessTimeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l.Close(ctx)
		})
		e.logs[r] = l
		e.cfg.Regions = append(e.cfg.Regions, RegionConfig{Name: r, AccessLogVerifier: l.Verifier(), WitnessPolicy: policy})
	}
	e.svc = e.open()
	return e
}

// open opens the service on the env's configuration and closes it when
// the test ends.
func (e *env) open() *Service {
	e.t.Helper()
	s, err := Open(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// wrap makes n data keys and wraps them for region.
func (e *env) wrap(region string, n int) (dataKeys, wrapped [][]byte) {
	e.t.Helper()
	pk, ok := e.svc.PublicKey(region)
	if !ok {
		e.t.Fatalf("no public key for %s", region)
	}
	for range n {
		dk := make([]byte, DataKeySize)
		rand.Read(dk)
		w, err := pk.Wrap(dk)
		if err != nil {
			e.t.Fatal(err)
		}
		dataKeys = append(dataKeys, dk)
		wrapped = append(wrapped, w)
	}
	return dataKeys, wrapped
}

// record returns an access record in the form of docs/architecture.md
// ("Access records") that lists the KeyIDs of wrapped.
func record(region, action, outcome string, wrapped [][]byte) []byte {
	ids := make([]string, len(wrapped))
	for i, w := range wrapped {
		ids[i] = KeyID(w)
	}
	idsJSON, _ := json.Marshal(ids)
	var b bytes.Buffer
	b.WriteString(`{"v":1,"kind":"access","time":"2026-11-22T10:00:00.123Z","region":"` + region + `",`)
	b.WriteString(`"principal":{"id":"analyst:jdoe","role":"analyst","location":"CH"},`)
	query := "sha256=00"
	if action == "relocate" {
		// A relocation names where the keys go.
		query = "relocation job=rel-1 to=" + map[string]string{"zurich": "moscow", "moscow": "zurich"}[region]
	}
	b.WriteString(`"action":"` + action + `","resource":{"dataset":"telemetry","query":"` + query + `","count":1,"digest":"sha256:00"},`)
	b.WriteString(`"justification":{"code":"CUSTOMER_INITIATED_SUPPORT","detail":"case 1234"},`)
	b.WriteString(`"subjects":["hmac-sha256:00"],"keys":` + string(idsJSON) + `,"request":"r1","outcome":"` + outcome + `"}`)
	return b.Bytes()
}

// prove appends entries to region's access log and returns their indexes
// and C2SP tlog-proofs under a witnessed checkpoint.
func (e *env) prove(region string, entries ...[]byte) (indexes []uint64, proofs [][]byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := e.logs[region]
	for _, entry := range entries {
		i, err := l.Append(ctx, entry)
		if err != nil {
			e.t.Fatal(err)
		}
		indexes = append(indexes, i)
	}
	for _, i := range indexes {
		p, err := l.Prove(ctx, i)
		if err != nil {
			e.t.Fatal(err)
		}
		proofs = append(proofs, p.Marshal())
	}
	return indexes, proofs
}

// stripCosignatures returns proof with every checkpoint signature other
// than the log's own removed: a checkpoint the witness never saw.
func stripCosignatures(t *testing.T, proof []byte, origin string) []byte {
	t.Helper()
	p, err := tlog.ParseProof(proof)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(p.Checkpoint, []byte("\n\n"))
	var out []byte
	out = append(out, p.Checkpoint[:i+2]...)
	n := 0
	for _, line := range bytes.SplitAfter(p.Checkpoint[i+2:], []byte("\n")) {
		if bytes.HasPrefix(line, []byte("— "+origin+" ")) {
			out = append(out, line...)
			n++
		}
	}
	if n != 1 || bytes.Equal(out, p.Checkpoint) {
		t.Fatalf("stripping cosignatures: kept %d log signatures of\n%s", n, p.Checkpoint)
	}
	p.Checkpoint = out
	return p.Marshal()
}
