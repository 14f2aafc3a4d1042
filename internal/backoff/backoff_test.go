package backoff

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/client"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: time.Second, Max: 30 * time.Second}
	tests := []struct {
		failures   int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{0, 0, 0, 0},
		{0, 5 * time.Second, 0, 0}, // a success resets, whatever was asked before
		{1, 0, 0, time.Second},
		{2, 0, 0, 2 * time.Second},
		{3, 0, 0, 4 * time.Second},
		{5, 0, 0, 16 * time.Second},
		{6, 0, 0, 30 * time.Second}, // capped
		{1000, 0, 0, 30 * time.Second},
		{3, 0, 0.5, 3 * time.Second},                         // jitter takes up to half away
		{3, 0, 0.999999, 2*time.Second + 2*time.Microsecond}, // never below half
		{6, 0, 1, 15 * time.Second},                          // jitter clamped to [0, 1]
		{1, 0, -3, time.Second},                              // likewise
		{1, 7 * time.Second, 0, 7 * time.Second},             // Retry-After is a floor
		{6, 7 * time.Second, 0, 30 * time.Second},            // but the backoff may be longer
		{2, 300 * time.Second, 0.9, 300 * time.Second},       // honoured beyond Max
		{2, 48 * time.Hour, 0, MaxRetryAfter},                // within reason
		{1, -time.Second, 0, time.Second},                    // nonsense ignored
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v/%v", tt.failures, tt.retryAfter, tt.jitter), func(t *testing.T) {
			got := p.Delay(tt.failures, tt.retryAfter, tt.jitter)
			if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("Delay(%d, %v, %v) = %v, want %v", tt.failures, tt.retryAfter, tt.jitter, got, tt.want)
			}
		})
	}
}

func TestDelayDefaults(t *testing.T) {
	var p Policy
	if got := p.Delay(1, 0, 0); got != time.Second {
		t.Errorf("zero Policy: first wait %v, want 1s", got)
	}
	if got := p.Delay(100, 0, 0); got != 30*time.Second {
		t.Errorf("zero Policy: longest wait %v, want 30s", got)
	}
	if got := (Policy{Min: time.Minute, Max: time.Second}).Delay(3, 0, 0); got != time.Minute {
		t.Errorf("Max below Min: wait %v, want Min (1m)", got)
	}
}

func TestStateNext(t *testing.T) {
	p := Policy{Min: time.Second, Max: 8 * time.Second}
	var s State
	fail := errors.New("refused")
	busy := fmt.Errorf("pulling: %w", &client.StatusError{Status: 503, Wait: 20 * time.Second})
	steps := []struct {
		err  error
		want time.Duration
	}{
		{fail, time.Second},
		{fail, 2 * time.Second},
		{busy, 20 * time.Second},
		{fail, 8 * time.Second},
		{nil, 0},
		{fail, time.Second},
	}
	for i, st := range steps {
		if got := s.Next(p, st.err, 0); got != st.want {
			t.Errorf("step %d (err %v): wait %v, want %v", i, st.err, got, st.want)
		}
	}
}
