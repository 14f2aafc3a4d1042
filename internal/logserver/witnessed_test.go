package logserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestWitnessFailClosed runs a log whose policy needs a witness reached over
// real HTTP. While the witness answers, checkpoints carry its cosignature;
// while it is down, appends are still durable but no newer checkpoint is
// published; once it is back, the log catches up.
func TestWitnessFailClosed(t *testing.T) {
	for _, st := range testStorages {
		t.Run(st.name, func(t *testing.T) { testWitnessFailClosed(t, st) })
	}
}

// downWitness runs, until the test ends, a witness over HTTP of the log
// origin whose key is in dir, and returns a witness policy that names it
// "w" and a switch that makes it answer 503 while set.
func downWitness(t *testing.T, dir, origin string) (policy []byte, down *atomic.Bool) {
	t.Helper()
	vkey, err := LoadOrCreateKey(dir, origin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(t.Context(), witness.Config{Dir: t.TempDir(), Name: "example.com/witness", Logs: []witness.LogKey{{Origin: origin, VKey: vkey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	down = new(atomic.Bool)
	wsrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(rw, "witness down", http.StatusServiceUnavailable)
			return
		}
		w.Handler().ServeHTTP(rw, r)
	}))
	t.Cleanup(wsrv.Close)
	policy, err = tlog.SingleWitnessPolicy("w", w.VKey(), wsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return policy, down
}

func testWitnessFailClosed(t *testing.T, st testStorage) {
	ctx := context.Background()
	dir := t.TempDir()
	const origin = "example.com/witnessed"
	policy, down := downWitness(t, dir, origin)
	driver, interval := st.open(t)
	l, err := Open(ctx, Config{Dir: dir, Origin: origin, WitnessPolicy: policy, Storage: driver, CheckpointInterval: interval, WitnessTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())

	i0, err := l.Append(ctx, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cp, err := l.AwaitWitnessed(wctx, i0)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.Cosigners) != 1 || cp.Cosigners[0] != "w" {
		t.Fatalf("checkpoint cosigners = %v, want [w]", cp.Cosigners)
	}

	down.Store(true)
	i1, err := l.Append(ctx, []byte("second"))
	if err != nil {
		t.Fatalf("append while the witness is down must still be durable: %v", err)
	}
	wctx, cancel = context.WithTimeout(ctx, 1500*time.Millisecond)
	_, err = l.AwaitWitnessed(wctx, i1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitWitnessed with the witness down = %v, want a timeout", err)
	}
	cur, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Size > i1 {
		t.Fatalf("a checkpoint of size %d covering entry %d was published without the witness", cur.Size, i1)
	}

	down.Store(false)
	wctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	cp, err = l.AwaitWitnessed(wctx, i1)
	cancel()
	if err != nil {
		t.Fatalf("log did not catch up once the witness was back: %v", err)
	}
	if cp.Size < i1+1 {
		t.Fatalf("checkpoint size %d, want at least %d", cp.Size, i1+1)
	}
}
