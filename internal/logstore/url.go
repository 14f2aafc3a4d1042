// Package logstore chooses where a transparency log's tiles, entry bundles
// and checkpoints are stored, and opens Tessera storage drivers other than
// the embedded one.
//
// # Locations
//
// A log's store is named by a location string, from the configuration's
// `log_stores` or `vitrine log serve --storage`:
//
//	journal                       the embedded journaled tiles (package tilestore), under the log's directory
//	mysql://USER@HOST:PORT/DB     Tessera's MySQL driver on a MySQL or MariaDB database
//
// A MySQL location never holds a password: [ParseLocation] refuses one.
// The password comes from the file named by the location's password_file
// parameter, or else from the environment variable VITRINE_MYSQL_PASSWORD
// ([PasswordEnv]); neither means no password.
//
// # MySQL
//
// [OpenMySQL] creates Tessera's schema when it is missing, checks that the
// server makes commits durable, and returns a [MySQL] driver: Tessera's own,
// with the read side trimmed to the width a tlog-tiles request names and a
// health report for readiness. Several processes may append to one database
// at once; Tessera serializes their batches on the tree state row.
package logstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/transparency-dev/tessera"
)

// PasswordEnv is the environment variable a MySQL location's password is
// read from when the location names no password_file.
const PasswordEnv = "VITRINE_MYSQL_PASSWORD"

// Journal is the location of the embedded journaled tiles.
const Journal = "journal"

// Location is a parsed store location.
type Location struct {
	// Kind is "journal" or "mysql".
	Kind string
	// User, Host, Port and Database name a MySQL database.
	User     string
	Host     string
	Port     int
	Database string
	// PasswordFile, if set, is the file holding the MySQL password.
	PasswordFile string
	// TLS is the go-sql-driver tls mode: "", "true", "skip-verify" or
	// "preferred".
	TLS string
}

// ErrPasswordInLocation is returned for a location that carries a password.
var ErrPasswordInLocation = errors.New("a password does not belong in a store location (it would show in process lists and logs): put it in a file named by ?password_file=PATH or in $" + PasswordEnv)

// maxLocation bounds a location string.
const maxLocation = 1024

// ParseLocation reads a store location (see the package documentation). It
// refuses anything it does not know rather than guessing: a password in the
// URL, a missing user, host, port or database, an unknown parameter.
func ParseLocation(s string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf("log store %q: %s", redact(s), fmt.Sprintf(format, args...))
	}
	if len(s) > maxLocation {
		return bad("longer than %d bytes", maxLocation)
	}
	if s == Journal {
		return Location{Kind: Journal}, nil
	}
	if !strings.HasPrefix(s, "mysql://") {
		return bad(`want %q or mysql://USER@HOST:PORT/DB`, Journal)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL: %v", errors.Unwrap(err))
	}
	if u.User == nil || u.User.Username() == "" {
		return bad("no user: want mysql://USER@HOST:PORT/DB")
	}
	if _, ok := u.User.Password(); ok {
		return Location{}, fmt.Errorf("log store %q: %w", redact(s), ErrPasswordInLocation)
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return bad("want mysql://USER@HOST:PORT/DB")
	}
	host, portText, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return bad("want HOST:PORT after the user")
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != portText {
		return bad("port %q is not a number from 1 to 65535", portText)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || !validName(db) || u.RawPath != "" {
		return bad("database name %q: want 1 to 64 letters, digits, _ or $", db)
	}
	if !validUser(u.User.Username()) {
		return bad("user %q: want 1 to 80 printable characters without spaces", u.User.Username())
	}
	loc := Location{Kind: "mysql", User: u.User.Username(), Host: host, Port: port, Database: db}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("parameters: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad("parameter %q given %d times", k, len(v))
		}
		switch k {
		case "password_file":
			if v[0] == "" || !strings.HasPrefix(v[0], "/") {
				return bad("password_file must be an absolute path")
			}
			loc.PasswordFile = v[0]
		case "tls":
			switch v[0] {
			case "true", "skip-verify", "preferred", "false":
				loc.TLS = v[0]
			default:
				return bad("tls=%q: want true, skip-verify, preferred or false", v[0])
			}
		default:
			return bad("unknown parameter %q (known: password_file, tls)", k)
		}
	}
	return loc, nil
}

// String returns the location in the form ParseLocation reads; it holds no
// secret.
func (l Location) String() string {
	if l.Kind != "mysql" {
		return l.Kind
	}
	u := url.URL{Scheme: "mysql", User: url.User(l.User), Host: net.JoinHostPort(l.Host, strconv.Itoa(l.Port)), Path: "/" + l.Database}
	q := url.Values{}
	if l.PasswordFile != "" {
		q.Set("password_file", l.PasswordFile)
	}
	if l.TLS != "" {
		q.Set("tls", l.TLS)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// validName reports whether s is a database name we accept: unquoted
// MySQL identifier characters only, so that it can be used in statements
// without quoting doubts.
func validName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
			return false
		}
	}
	return s != ""
}

func validUser(s string) bool {
	if s == "" || len(s) > 80 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// redact hides a password that a location carries, for error messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	if i := strings.Index(s, "@"); i >= 0 && strings.Contains(s[:i], ":") && strings.HasPrefix(s, "mysql://") {
		return "mysql://…" + s[i:]
	}
	return s
}

// Open opens the storage driver loc names, for logserver.Config.Storage:
// nil for the journaled tiles (the log makes them under its directory),
// a *MySQL for a MySQL database.
func Open(ctx context.Context, loc Location) (tessera.Driver, error) {
	switch loc.Kind {
	case Journal, "":
		return nil, nil
	case "mysql":
		return OpenMySQL(ctx, loc)
	}
	return nil, fmt.Errorf("log store %s: unknown kind %q", loc, loc.Kind)
}
