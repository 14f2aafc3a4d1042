package main

import (
	"io"
	"log/slog"
	"testing"
)

// TestDebugListenLoopbackOnly: --debug-listen said "loopback only" and
// listened wherever it was told; the unauthenticated profiling endpoints
// now refuse any other address.
func TestDebugListenLoopbackOnly(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "example.com:6060", "10.0.0.1:6060", "127.0.0.1"} {
		if err := serveDebug(addr, quiet); err == nil {
			t.Errorf("serveDebug(%q) listened; want it refused", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:0", "localhost:0"} {
		if err := loopbackOnly(addr); err != nil {
			t.Errorf("loopbackOnly(%q) = %v, want it accepted", addr, err)
		}
	}
}
