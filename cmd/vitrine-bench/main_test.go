package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logserver"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := program.Dispatch(context.Background(), &env{Stdout: &out, Stderr: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, args)
	return out.String(), err
}

// TestHelp: every measurement is listed, and a name that is none is an
// error that lists them.
func TestHelp(t *testing.T) {
	out, err := run(t, "help")
	if err != nil {
		t.Fatal(err)
	}
	for name := range program.Commands {
		if !strings.Contains(out, "  "+name+" ") {
			t.Errorf("help does not list %q:\n%s", name, out)
		}
	}
	if out, err := run(t, "hammer"); err == nil || !strings.Contains(out, "appends") {
		t.Errorf("an unknown measurement: %v\n%s", err, out)
	}
}

// TestAppends measures appends against a real log (the one `vitrine log
// serve` runs), for a short while, and checks that the table has a row
// of appends that all succeeded, each covered by a checkpoint.
func TestAppends(t *testing.T) {
	dir := t.TempDir()
	l, err := logserver.Open(context.Background(), logserver.Config{Dir: dir, Origin: "bench.example/log", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	srv := httptest.NewServer(l.Handler(func(*http.Request) bool { return true }))
	defer srv.Close()
	token := filepath.Join(dir, "add.token")
	if err := os.WriteFile(token, []byte("any\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "appends", "--url", "log="+srv.URL, "--token", "log="+token, "--clients", "1,4", "--duration", "500ms", "--warmup", "100ms")
	if err != nil {
		t.Fatalf("appends: %v\n%s", err, out)
	}
	// target clients appends/s p50 p99 max errors checkpoint-p50 checkpoint-p99
	row := regexp.MustCompile(`(?m)^log +4 +([0-9]+) +\S+ +\S+ +\S+ +0 +\S+ms +\S+ms$`)
	if m := row.FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("no row of appends by 4 clients without errors:\n%s", out)
	}
}
