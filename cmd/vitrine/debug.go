package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/vitrine-dev/vitrine/internal/cli"
)

// serveDebug serves Go's profiling endpoints on addr, which must be a
// loopback address (they are unauthenticated, and a profile shows memory).
// An empty addr serves nothing.
func serveDebug(addr string, logger *slog.Logger) error {
	if addr == "" {
		return nil
	}
	if err := loopbackOnly(addr); err != nil {
		return fmt.Errorf("--debug-listen: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("profiling endpoints", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// loopbackOnly refuses an address to listen on that is not on loopback:
// "localhost", or an IP address in 127.0.0.0/8 or ::1. An empty host
// (":6060") would listen on every interface.
func loopbackOnly(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return err
	}
	if cli.Loopback(addr) {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT): the profiling endpoints are unauthenticated", addr)
}
