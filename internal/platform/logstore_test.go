package platform

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
)

// TestLogStoresMySQL runs the platform with one access log on MariaDB
// (log_stores) and the others on the journaled tiles: the log takes
// appends, publishes checkpoints cosigned by the platform's witness, serves
// them over the tlog-tiles routes, and counts in readiness.
func TestLogStoresMySQL(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	ctx := context.Background()
	p, err := Start(ctx, Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		BuildSourceRoots: gotest.SourceRoots(t), LogStores: map[string]string{"access-zurich": loc.String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, p)
	l := p.logs["access-zurich"]
	idx, err := l.Append(ctx, []byte("an access record on MariaDB"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cp, err := l.AwaitWitnessed(wctx, idx)
	if err != nil {
		t.Fatalf("no witnessed checkpoint for the MariaDB log: %v", err)
	}
	if len(cp.Cosigners) == 0 {
		t.Fatalf("checkpoint not cosigned: %+v", cp)
	}
	code, body := httpDo(t, "GET", p.URL()+"/logs/access-zurich/checkpoint", "", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "/logs/access-zurich") {
		t.Fatalf("GET checkpoint: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", p.URL()+"/logs/access-zurich/tile/entries/000.p/"+strconv.FormatUint(cp.Size, 10), "", nil); code != http.StatusOK {
		t.Fatalf("GET entry bundle: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", p.URL()+"/readyz", "", nil); code != http.StatusOK {
		t.Fatalf("GET /readyz: %d %s", code, body)
	}
}
