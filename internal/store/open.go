package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// ErrSchemaNewer is returned when a database was last written by a newer
// Vitrine, whose schema this one does not know. Opening it would risk
// corrupting it, so the store refuses; upgrade Vitrine instead.
var ErrSchemaNewer = errors.New("database schema is newer than this vitrine")

// An Opener opens the store that target names: a path for "sqlite", the
// whole URL for "postgres".
type Opener func(ctx context.Context, target string) (Store, error)

var (
	driversMu sync.RWMutex
	drivers   = map[string]Opener{}
)

// Register makes a store implementation available to [Open] under kind
// ("sqlite" or "postgres"). Implementations call it from an init function,
// because this package cannot import them: they import it. It panics if
// kind is registered twice.
func Register(kind string, open Opener) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[kind]; dup {
		panic("store: Register called twice for " + kind)
	}
	drivers[kind] = open
}

// Open opens the store that spec names, as a region's configuration gives
// it: "sqlite:PATH" for an embedded SQLite database at PATH (created if
// absent), or a "postgres://" or "postgresql://" URL for PostgreSQL. Opening
// migrates an older schema to the current one and refuses a newer one with
// [ErrSchemaNewer].
//
// The implementation must be linked in: import
// github.com/vitrine-dev/vitrine/internal/store/sqlite or …/postgres,
// blank if need be.
func Open(ctx context.Context, spec string) (Store, error) {
	kind, target, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	driversMu.RLock()
	open := drivers[kind]
	driversMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("opening store %s: the %s store is not linked into this program (import github.com/vitrine-dev/vitrine/internal/store/%s)", kind, kind, kind)
	}
	s, err := open(ctx, target)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ParseSpec splits a store spec into the implementation's kind ("sqlite" or
// "postgres") and its target: the file path for SQLite, the unchanged URL
// for PostgreSQL. It rejects anything else with an error that shows the two
// accepted forms.
func ParseSpec(spec string) (kind, target string, err error) {
	switch {
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return "", "", fmt.Errorf("parsing store %q: sqlite: needs a file path, as in sqlite:/var/lib/vitrine/zurich.db", spec)
		}
		return "sqlite", path, nil
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return "postgres", spec, nil
	}
	return "", "", fmt.Errorf("parsing store %q: want sqlite:PATH or a postgres:// URL", redact(spec))
}

// redact hides a password that a mistyped URL may carry, since specs end up
// in error messages and logs.
func redact(spec string) string {
	at := strings.LastIndexByte(spec, '@')
	scheme := strings.Index(spec, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return spec
	}
	userinfo := spec[scheme+3 : at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return spec[:scheme+3] + user + ":xxxxx" + spec[at:]
	}
	return spec
}
