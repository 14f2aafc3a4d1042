package logserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

func TestReady(t *testing.T) {
	l, _ := openTest(t)
	if err := l.Ready(); err != nil {
		t.Fatalf("Ready of an open log: %v", err)
	}
	if h := l.Health(); h.State != tilestore.Healthy {
		t.Fatalf("Health of an open log = %+v, want healthy", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	err := l.Ready()
	if !errors.Is(err, ErrUnavailable) || backoff.RetryAfterOf(err) <= 0 {
		t.Fatalf("Ready of a closed log = %v (retry after %v), want ErrUnavailable with a Retry-After", err, backoff.RetryAfterOf(err))
	}
}

func TestUnavailableError(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &UnavailableError{Log: "example.com/access-zurich", Health: tilestore.Health{
		State: tilestore.Broken, Since: since, Reason: "log storage failed: sync point: no space left on device",
		NextAttempt: time.Now().Add(9 * time.Second),
	}}
	if !errors.Is(e, ErrUnavailable) {
		t.Error("UnavailableError is not ErrUnavailable")
	}
	if got := e.RetryAfter(); got < 8*time.Second || got > 9*time.Second {
		t.Errorf("RetryAfter = %v, want about 9s (the next recovery attempt)", got)
	}
	for _, want := range []string{"example.com/access-zurich", "log unavailable", "broken since 2025-01-02T03:04:05Z", "no space left on device"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("Error() = %q, want it to say %q", e.Error(), want)
		}
	}
}
