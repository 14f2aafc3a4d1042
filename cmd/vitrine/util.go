package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
)

func decodeHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("a hash must be 64 hex digits")
	}
	return b, nil
}

// userDir is a directory of Vitrine's under the user's configuration
// directory ($XDG_CONFIG_HOME/vitrine/NAME, ~/.config/vitrine/NAME): where
// commands keep keys and state by default, outside any working tree.
// Where the user has no configuration directory, it is ./vitrine-NAME.
func userDir(name string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "./vitrine-" + name
	}
	return filepath.Join(dir, "vitrine", name)
}

// newOfflineDir is a fresh directory for new TUF root keys: under the
// user's configuration directory, so that they land neither in the
// platform's data directory (which is online, and copied with it) nor in
// a working tree, and named after the deployment and the time, so that a
// platform started over never finds the keys of an earlier one there.
func newOfflineDir(name string) string {
	return filepath.Join(userDir("tuf-offline"), name+"-"+time.Now().UTC().Format("20060102T150405Z"))
}

// plural is "1 file" or "2 files".
func plural[N int | uint64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// elapsed formats d as minutes and seconds, "3:07", for progress lines.
func elapsed(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// call sends a request with a bearer token and, if body is not nil, a JSON
// body, and decodes the 2xx JSON answer into out. Another answer is a
// *client.StatusError that keeps the server's message.
func call(ctx context.Context, method, u, token string, body []byte, out any) error {
	return callWith(ctx, httpClient, method, u, token, body, out)
}

// callWith is call with another HTTP client.
func callWith(ctx context.Context, hc *http.Client, method, u, token string, body []byte, out any) error {
	return vclient.Call(ctx, hc, method, u, token, body, 16<<20, out)
}
