// Package certfile serves TLS with a certificate and key read from PEM
// files, and read again when they change, so that a certificate is
// rotated by replacing its files: no restart.
//
// # Rotation
//
// [Certificate.GetCertificate] looks at the files' modification times and
// sizes at most once a second, on a handshake, and reads them again when
// either changed; SIGHUP ([Certificate.ReloadOnSIGHUP]) reads them at
// once. A pair that does not load (a key that does not match, a file
// half written) leaves the last good certificate in use and is logged;
// the next change or SIGHUP tries again.
package certfile

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// checkEvery is how often a handshake looks at the files.
const checkEvery = time.Second

// Certificate is a TLS certificate kept up to date with its files. Its
// methods are safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	logger            *slog.Logger

	cert    atomic.Pointer[tls.Certificate]
	checked atomic.Int64 // when the files were last looked at, Unix ns

	mu     sync.Mutex // serialises reloads
	stamps [2]stamp   // the files as last loaded
}

// stamp is what tells that a file changed.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// Load reads the certificate chain in certFile and its private key in
// keyFile (PEM). It fails if they do not load as a pair.
func Load(certFile, keyFile string, logger *slog.Logger) (*Certificate, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, logger: logger}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again now. On failure the certificate in use
// stays.
func (c *Certificate) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reload()
}

func (c *Certificate) reload() error {
	c.checked.Store(time.Now().UnixNano())
	// The stamps are taken before reading, so that a file that changes
	// while it is read is read again on the next look.
	var stamps [2]stamp
	for i, p := range []string{c.certFile, c.keyFile} {
		s, err := stampOf(p)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		stamps[i] = s
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading the TLS certificate from %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	c.stamps = stamps
	if leaf := cert.Leaf; leaf != nil {
		c.logger.Info("TLS certificate loaded", "file", c.certFile, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	}
	return nil
}

// GetCertificate returns the certificate, read again first if its files
// changed since they were last looked at (at most once a second): the
// tls.Config.GetCertificate of a server.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if now := time.Now().UnixNano(); now-c.checked.Load() >= int64(checkEvery) && c.mu.TryLock() {
		c.checkFiles()
		c.mu.Unlock()
	}
	return c.cert.Load(), nil
}

// checkFiles reloads the certificate if a file changed. The caller holds
// c.mu.
func (c *Certificate) checkFiles() {
	c.checked.Store(time.Now().UnixNano())
	for i, p := range []string{c.certFile, c.keyFile} {
		if s, err := stampOf(p); err != nil || !s.mod.Equal(c.stamps[i].mod) || s.size != c.stamps[i].size {
			if err := c.reload(); err != nil {
				c.logger.Warn("TLS certificate files changed but do not load; the last good certificate stays", "err", err)
			}
			return
		}
	}
}

// ReloadOnSIGHUP reads the files again on every SIGHUP until ctx ends.
func (c *Certificate) ReloadOnSIGHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := c.Reload(); err != nil {
					c.logger.Warn("SIGHUP: the TLS certificate does not load; the last good certificate stays", "err", err)
				}
			}
		}
	}()
}

// Config returns a server's TLS configuration serving c: TLS 1.2 at
// least, HTTP/2 and HTTP/1.1.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}
