package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/vitrine-dev/vitrine/internal/certfile"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
)

// ServeFlags are the flags of every command that serves HTTP: its
// certificate files and where it serves its metrics.
type ServeFlags struct {
	// TLSCert and TLSKey are PEM files of the server's certificate
	// chain and private key; without them it serves plain HTTP.
	TLSCert, TLSKey string
	// MetricsListen is the address of the metrics listener; empty
	// serves no metrics.
	MetricsListen string
}

// AddServeFlags defines --tls-cert, --tls-key and --metrics-listen on fs.
func AddServeFlags(fs *flag.FlagSet) *ServeFlags {
	f := new(ServeFlags)
	fs.StringVar(&f.TLSCert, "tls-cert", "", "serve HTTPS with the certificate chain in `FILE` (PEM; with --tls-key); the files are read again when they change and on SIGHUP")
	fs.StringVar(&f.TLSKey, "tls-key", "", "the private key of --tls-cert, in `FILE` (PEM)")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at GET /metrics on `ADDR`: open on a loopback address, with the bearer token in DATA/metrics.token on any other")
	return f
}

// TLS returns the TLS configuration of a server with the certificate in
// certFile and its key in keyFile, both PEM, read again when they change
// and on SIGHUP until ctx ends; nil (plain HTTP) without either.
func TLS(ctx context.Context, certFile, keyFile string, logger *slog.Logger) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("TLS needs both a certificate file and a key file (--tls-cert and --tls-key)")
	}
	c, err := certfile.Load(certFile, keyFile, logger)
	if err != nil {
		return nil, err
	}
	c.ReloadOnSIGHUP(ctx)
	return c.Config(), nil
}

// Listen listens on addr, with TLS under conf unless it is nil, and
// returns the listener and its base URL: https://ADDR with TLS,
// http://ADDR without.
func Listen(addr string, conf *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	if conf == nil {
		return ln, "http://" + ln.Addr().String(), nil
	}
	return tls.NewListener(ln, conf), "https://" + ln.Addr().String(), nil
}

// Loopback reports whether addr (host:port) listens on loopback only:
// "localhost", or an IP address in 127.0.0.0/8 or ::1. An empty host
// (":9100") would listen on every interface.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeMetrics serves reg's metrics at GET /metrics on addr, with TLS
// under conf unless it is nil, until ctx ends, and prints its URL to e's
// standard output. On a loopback address anyone on the machine may read
// them; on any other, only with the bearer token in tokenFile (made on
// first use), as Prometheus's authorization.credentials_file sends it.
// An empty addr serves nothing.
func ServeMetrics(ctx context.Context, e *Env, addr string, reg *metrics.Registry, conf *tls.Config, tokenFile string) error {
	if addr == "" {
		return nil
	}
	h := reg.Handler()
	auth := ""
	if !Loopback(addr) {
		token, err := keys.LoadOrCreateToken(tokenFile)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !keys.BearerEqual(r, token) {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "metrics need the bearer token of "+tokenFile, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
		auth = ", bearer token in " + tokenFile
	}
	ln, base, err := Listen(addr, conf)
	if err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(e.Logger.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(e.Stdout, "metrics at %s/metrics%s\n", base, auth)
	return nil
}
