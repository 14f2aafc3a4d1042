// Package logstore chooses where a transparency log's tiles, entry bundles
// and checkpoints are stored, and opens Tessera storage drivers other than
// the embedded one.
//
// # Locations
//
// A log's store is named by a location string, from the configuration's
// `log_stores` or `vitrine log serve --storage`:
//
//	journal                                  the embedded journaled tiles (package tilestore), under the log's directory
//	mysql://USER@HOST:PORT/DB                Tessera's MySQL driver on a MySQL or MariaDB database
//	s3://BUCKET[/PREFIX]?mysql=USER@HOST:PORT/DB[&endpoint=URL]
//	                                         Tessera's AWS driver: tiles, bundles and checkpoints in an S3
//	                                         bucket, sequencing in a MySQL or MariaDB database
//
// A location never holds a secret: [ParseLocation] refuses a password or
// S3 credentials in it. The MySQL password comes from the file named by the
// location's password_file parameter, or else from the environment
// variable VITRINE_MYSQL_PASSWORD ([PasswordEnv]); neither means no
// password. S3 credentials come from the AWS SDK's usual places: the
// shared credentials file named by credentials_file, else
// $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, else ~/.aws/credentials
// (and, for AWS itself, without an endpoint, the rest of the SDK's chain).
//
// # MySQL
//
// [OpenMySQL] creates Tessera's schema when it is missing, checks that the
// server makes commits durable, and returns a [MySQL] driver: Tessera's own,
// with the read side trimmed to the width a tlog-tiles request names and a
// health report for readiness. Several processes may append to one database
// at once; Tessera serializes their batches on the tree state row.
//
// # S3 and MySQL
//
// [OpenAWS] opens Tessera's AWS driver on any S3-compatible server (the
// endpoint parameter, path-style addressing) or on AWS itself, with the
// same checks on its MySQL half. An append is durable once its batch is
// sequenced in MySQL; Tessera integrates sequenced entries into the
// bucket's tiles once a second.
//
// # Batches
//
// Both drivers cut batches with a timer; the appenders they return hand
// them everything queued at once whenever the previous batch is done, so
// that batches follow load (see followLoad).
package logstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
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
	// Kind is "journal", "mysql" or "aws".
	Kind string
	// User, Host, Port and Database name a MySQL database: the log's
	// (mysql), or the one that sequences its appends (aws).
	User     string
	Host     string
	Port     int
	Database string
	// PasswordFile, if set, is the file holding the MySQL password.
	PasswordFile string
	// TLS is the go-sql-driver tls mode: "", "true", "skip-verify" or
	// "preferred".
	TLS string

	// Bucket and Prefix say where in S3 an aws log keeps its resources:
	// under Prefix (no leading or trailing slash; "" for the bucket's
	// root).
	Bucket string
	Prefix string
	// Endpoint is the base URL of an S3-compatible server
	// (http[s]://HOST[:PORT]), reached with path-style addressing; "" is
	// AWS's own S3.
	Endpoint string
	// Region is the S3 region; "" takes the SDK's ($AWS_REGION), else
	// us-east-1 for an Endpoint.
	Region string
	// CredentialsFile, if set, is a shared credentials file (the AWS
	// SDK's INI format) holding the S3 access key.
	CredentialsFile string
}

// ErrPasswordInLocation is returned for a location that carries a password
// or S3 credentials.
var ErrPasswordInLocation = errors.New("a password does not belong in a store location, nor an S3 key (they would show in process lists and logs): put the MySQL password in a file named by ?password_file=PATH or in $" + PasswordEnv + ", S3 credentials in ?credentials_file=PATH or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY")

// maxLocation bounds a location string.
const maxLocation = 1024

// ParseLocation reads a store location (see the package documentation). It
// refuses anything it does not know rather than guessing: a password or key
// in the URL, a missing user, host, port, database or bucket, an unknown
// parameter.
func ParseLocation(s string) (Location, error) {
	loc, err := parseLocation(s)
	if err != nil {
		return Location{}, fmt.Errorf("log store %q: %w", redact(s), err)
	}
	return loc, nil
}

func parseLocation(s string) (Location, error) {
	switch {
	case len(s) > maxLocation:
		return Location{}, fmt.Errorf("longer than %d bytes", maxLocation)
	case s == Journal:
		return Location{Kind: Journal}, nil
	case strings.HasPrefix(s, "s3://"):
		return parseS3(s)
	case strings.HasPrefix(s, "mysql://"):
		return parseMySQL(s, true)
	}
	return Location{}, fmt.Errorf(`want %q, mysql://USER@HOST:PORT/DB or s3://BUCKET?mysql=USER@HOST:PORT/DB`, Journal)
}

// parseMySQL reads a mysql:// location; with params false, it refuses
// any parameter (the MySQL half of an s3:// location carries its
// parameters in the outer one).
func parseMySQL(s string, params bool) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf(format, args...)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL: %v", errors.Unwrap(err))
	}
	if u.User == nil || u.User.Username() == "" {
		return bad("no user: want USER@HOST:PORT/DB")
	}
	if _, ok := u.User.Password(); ok {
		return Location{}, ErrPasswordInLocation
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return bad("want USER@HOST:PORT/DB")
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
	if !params {
		if u.RawQuery != "" || u.ForceQuery {
			return bad("no parameters here: password_file and tls are the s3:// location's")
		}
		return loc, nil
	}
	q, err := parseParams(u.RawQuery)
	if err != nil {
		return Location{}, err
	}
	for k, v := range q {
		if err := loc.setMySQLParam(k, v); err != nil {
			return Location{}, err
		}
	}
	return loc, nil
}

// parseParams reads a location's parameters, each given once.
func parseParams(raw string) (map[string]string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("parameters: %v", err)
	}
	out := make(map[string]string, len(q))
	for k, v := range q {
		if len(v) != 1 {
			return nil, fmt.Errorf("parameter %q given %d times", k, len(v))
		}
		out[k] = v[0]
	}
	return out, nil
}

// errUnknownParam is setMySQLParam's answer for a parameter that is not
// the MySQL half's.
var errUnknownParam = errors.New("unknown parameter")

// setMySQLParam sets a parameter of the MySQL half of a location.
func (l *Location) setMySQLParam(k, v string) error {
	switch k {
	case "password_file":
		if v == "" || !strings.HasPrefix(v, "/") {
			return errors.New("password_file must be an absolute path")
		}
		l.PasswordFile = v
	case "tls":
		switch v {
		case "true", "skip-verify", "preferred", "false":
			l.TLS = v
		default:
			return fmt.Errorf("tls=%q: want true, skip-verify, preferred or false", v)
		}
	default:
		return fmt.Errorf("%w %q (known: password_file, tls)", errUnknownParam, k)
	}
	return nil
}

// String returns the location in the form ParseLocation reads; it holds no
// secret.
func (l Location) String() string {
	switch l.Kind {
	case "mysql":
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
	case "aws":
		return l.s3String()
	}
	return l.Kind
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
	if strings.HasPrefix(s, "s3://") {
		return redactS3(s)
	}
	return s
}

// Open opens the storage driver loc names, for logserver.Config.Storage:
// nil for the journaled tiles (the log makes them under its directory),
// a *MySQL for a MySQL database, an *AWS for S3 and MySQL.
func Open(ctx context.Context, loc Location) (tessera.Driver, error) {
	switch loc.Kind {
	case Journal, "":
		return nil, nil
	case "mysql":
		return OpenMySQL(ctx, loc)
	case "aws":
		return OpenAWS(ctx, loc)
	}
	return nil, fmt.Errorf("log store %s: unknown kind %q", loc, loc.Kind)
}

// parseS3 reads an s3:// location: s3://BUCKET[/PREFIX]?mysql=USER@HOST:PORT/DB
// with the optional parameters endpoint, region, credentials_file,
// password_file and tls.
func parseS3(s string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf(format, args...)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL: %v", errors.Unwrap(err))
	}
	if u.User != nil {
		return Location{}, ErrPasswordInLocation
	}
	if u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" {
		return bad("want s3://BUCKET[/PREFIX]?mysql=USER@HOST:PORT/DB")
	}
	if !validBucket(u.Host) {
		return bad("bucket %q: want 3 to 63 lower-case letters, digits, dots and hyphens (the S3 server goes in endpoint=)", u.Host)
	}
	loc := Location{Kind: "aws", Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}
	if u.RawPath != "" || !validPrefix(loc.Prefix) {
		return bad("prefix %q: want /-separated names of letters, digits, '.', '_' and '-', without a trailing /", loc.Prefix)
	}
	q, err := parseParams(u.RawQuery)
	if err != nil {
		return Location{}, err
	}
	for k, v := range q {
		switch k {
		case "mysql":
			if strings.ContainsAny(v, "?#") {
				return bad("mysql=%q: want USER@HOST:PORT/DB (password_file and tls are parameters of the s3:// location)", redactValue(v))
			}
			m, err := parseMySQL("mysql://"+v, false)
			if err != nil {
				return bad("mysql=: %w", err)
			}
			loc.User, loc.Host, loc.Port, loc.Database = m.User, m.Host, m.Port, m.Database
		case "endpoint":
			e, err := parseEndpoint(v)
			if err != nil {
				return bad("endpoint=: %w", err)
			}
			loc.Endpoint = e
		case "region":
			if !validRegion(v) {
				return bad("region=%q: want 1 to 32 lower-case letters, digits and hyphens", v)
			}
			loc.Region = v
		case "credentials_file":
			if v == "" || !strings.HasPrefix(v, "/") {
				return bad("credentials_file must be an absolute path")
			}
			loc.CredentialsFile = v
		default:
			if err := loc.setMySQLParam(k, v); errors.Is(err, errUnknownParam) {
				return bad("unknown parameter %q (known: mysql, endpoint, region, credentials_file, password_file, tls)", k)
			} else if err != nil {
				return Location{}, err
			}
		}
	}
	if loc.Database == "" {
		return bad("no mysql=USER@HOST:PORT/DB: Tessera's AWS driver sequences appends in a MySQL or MariaDB database")
	}
	return loc, nil
}

// parseEndpoint reads an S3-compatible server's base URL and returns it
// as scheme://host[:port].
func parseEndpoint(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("not a URL: %v", errors.Unwrap(err))
	}
	if u.User != nil {
		return "", ErrPasswordInLocation
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return "", errors.New("want http://HOST[:PORT] or https://HOST[:PORT]")
	}
	if u.Hostname() == "" || strings.ContainsAny(u.Hostname(), "%") {
		return "", errors.New("want http://HOST[:PORT] or https://HOST[:PORT]")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return "", fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", errors.New("empty port")
	}
	return u.Scheme + "://" + u.Host, nil
}

// s3String is String for an s3:// location.
func (l Location) s3String() string {
	var b strings.Builder
	b.WriteString("s3://" + l.Bucket)
	if l.Prefix != "" {
		b.WriteString("/" + l.Prefix)
	}
	m := url.URL{User: url.User(l.User), Host: net.JoinHostPort(l.Host, strconv.Itoa(l.Port)), Path: "/" + l.Database}
	params := []struct{ k, v string }{
		{"mysql", strings.TrimPrefix(m.String(), "//")},
		{"endpoint", l.Endpoint}, {"region", l.Region}, {"credentials_file", l.CredentialsFile},
		{"password_file", l.PasswordFile}, {"tls", l.TLS},
	}
	sep := "?"
	for _, p := range params {
		if p.v != "" {
			b.WriteString(sep + p.k + "=" + queryEscape(p.v))
			sep = "&"
		}
	}
	return b.String()
}

// queryEscape escapes a parameter value, leaving the ':', '/' and '@'
// that a query may hold as they are, for legibility.
func queryEscape(v string) string {
	return strings.NewReplacer("%3A", ":", "%2F", "/", "%40", "@").Replace(url.QueryEscape(v))
}

// validBucket reports whether s is an S3 bucket name: 3 to 63 lower-case
// letters, digits, dots and hyphens, starting and ending with a letter or
// digit.
func validBucket(s string) bool {
	if len(s) < 3 || len(s) > 63 || strings.Contains(s, "..") {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '.' && c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validPrefix reports whether s is a key prefix we accept: "" or
// /-separated names of letters, digits, '.', '_' and '-', none of them
// "." or "..", at most 256 bytes.
func validPrefix(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > 256 {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validRegion(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// redactS3 hides, for error messages, the credentials an s3:// location
// might carry: user information before the bucket, and a password in any
// parameter of the form USER:PASSWORD@….
func redactS3(s string) string {
	rest := strings.TrimPrefix(s, "s3://")
	auth, query, hasQuery := strings.Cut(rest, "?")
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		auth = "…" + auth[i:]
	}
	out := "s3://" + auth
	if !hasQuery {
		return out
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return out + "?…"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			parts = append(parts, url.QueryEscape(k)+"="+queryEscape(redactValue(v)))
		}
	}
	return out + "?" + strings.Join(parts, "&")
}

// redactValue hides the password of a USER:PASSWORD@… or
// SCHEME://USER:PASSWORD@… value.
func redactValue(v string) string {
	at := strings.LastIndex(v, "@")
	if at < 0 {
		return v
	}
	start := 0
	if i := strings.Index(v[:at], "//"); i >= 0 {
		start = i + 2
	}
	if c := strings.Index(v[start:at], ":"); c >= 0 {
		return v[:start+c] + ":…" + v[at:]
	}
	return v
}
