package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"1", time.Second},
		{" 120 ", 2 * time.Minute},
		{"999999999", MaxRetryAfter},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(1000 * time.Hour).Format(http.TimeFormat), MaxRetryAfter},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewStatusError(t *testing.T) {
	resp := &http.Response{Status: "503 Service Unavailable", StatusCode: 503, Header: http.Header{"Retry-After": {"7"}}}
	err := error(NewStatusError(resp, []byte(" {\"error\":\"log unavailable\"}\n")))
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(fmt.Errorf("pulling aggregates: %w", err), &ra) || ra.RetryAfter() != 7*time.Second {
		t.Errorf("the wrapped error's RetryAfter: %v, want 7s", ra)
	}
	if got, want := err.Error(), `503 Service Unavailable: log unavailable`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestStatusErrorPrintable: a server's message is cut and has no control
// characters left, so that it cannot rewrite what a terminal shows.
func TestStatusErrorPrintable(t *testing.T) {
	resp := &http.Response{StatusCode: 500, Header: http.Header{}}
	evil := "\r\x1b[2KOK: every key reconciles\x1b[0m" + strings.Repeat("x", 1000)
	body, _ := json.Marshal(map[string]string{"error": evil})
	msg := NewStatusError(resp, body).Message
	if strings.ContainsAny(msg, "\r\x1b") || len(msg) > 310 || !strings.Contains(msg, "OK: every key") {
		t.Errorf("message %q: want it cut, without control characters", msg)
	}
}
