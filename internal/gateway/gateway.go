// Package gateway is a region's access gateway: the only way to read,
// export or delete stored telemetry, and the only way its personal fields
// are ever opened.
//
// For every request the gateway authenticates the principal, checks its
// role and region, requires a justification, and builds the access record
// of docs/architecture.md ("Access records"; package access): who, what was
// asked, how many records and which (a digest of their ids), the pseudonyms
// of the data subjects, and the ids of the data keys the answer needs. It
// appends the record to the region's access log and releases nothing until
// the log has durably sequenced it. To open personal fields it then waits
// for a checkpoint the supervisor's witness cosigned, proves the entry in
// it, and asks the supervisor's key custody to unwrap the data keys the
// entry names. So the data can be read only through a logged access, by
// construction: custody does not unwrap for an entry that is not in the
// witnessed log.
//
// A refused attempt (no credential, wrong role, wrong region, no
// justification, a bad query) is logged too, with the outcome "denied".
// Attempts without a valid credential, which anyone can make, are logged
// one by one up to a small rate per source network ([Limits]); beyond it
// they are counted by action, reason and network, and [Gateway.Run] writes
// the counts to the log as denied summaries, so that the log accounts for
// every attempt without anyone being able to grow it at will.
// When the log, the store or custody cannot do their part, the answer is
// 503 and no data.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/tlog"
)

// RecordLog is a Log that also takes an access record with its encoding:
// a log that checks what it admits (the platform's refuses a revoked
// principal's access) reads rec instead of parsing entry again, which
// cost a sixth of a logged read's CPU. The gateway uses it when its Log
// has it.
type RecordLog interface {
	Log
	// AppendRecord appends entry, the encoding of rec, as Append does.
	AppendRecord(ctx context.Context, rec *access.Record, entry []byte) (uint64, error)
}

// Log is the region's access log (a *logserver.Log).
type Log interface {
	// Append returns the entry's index once it is durably sequenced.
	Append(ctx context.Context, entry []byte) (uint64, error)
	// Prove waits until index is in a witnessed checkpoint and proves it.
	Prove(ctx context.Context, index uint64) (*tlog.Proof, error)
	// Origin is the log's origin line.
	Origin() string
}

// Custody unwraps data keys for proven access entries (a
// *custody.Service, or a *custody.Client of one in another process).
type Custody interface {
	Unwrap(ctx context.Context, req *custody.UnwrapRequest) (*custody.UnwrapResponse, error)
}

// Principals authenticates the principal of a request (a
// *principal.Registry).
type Principals interface {
	Authenticate(r *http.Request) (*principal.Principal, error)
}

// Config configures a region's gateway.
type Config struct {
	// Region is the region's name; principals must be allowed to act in
	// it.
	Region     string
	Store      store.Store
	Log        Log
	Custody    Custody
	Principals Principals
	// Pseudonyms gives the pseudonyms of endpoints, as the region's
	// ingest has them: a query by endpoint is a query by its pseudonym.
	Pseudonyms endpoint.Pseudonyms
	// WitnessTimeout bounds how long a read waits for a witnessed
	// checkpoint that covers its access entry (default 10s).
	WitnessTimeout time.Duration
	// Unauthenticated limits the individual access records of attempts
	// without a valid credential; beyond them, attempts are counted in
	// denied summaries. See [Limits].
	Unauthenticated Limits
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics, if set, counts the gateway's decisions.
	Metrics *metrics.Gateway
}

// Gateway serves a region's access routes.
type Gateway struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics.Gateway
	denials *denials
	// appendRecord appends an access record with its encoding: through
	// cfg.Log's AppendRecord when it has one, chosen once here.
	appendRecord func(ctx context.Context, rec *access.Record, entry []byte) (uint64, error)
}

// New returns the gateway described by cfg. Its [Gateway.Run] must run
// for the attempts it counts to reach the access log.
func New(cfg Config) *Gateway {
	if cfg.Store == nil || cfg.Log == nil || cfg.Custody == nil || cfg.Principals == nil || cfg.Pseudonyms == nil {
		panic("gateway.New: Store, Log, Custody, Principals and Pseudonyms are required")
	}
	if cfg.WitnessTimeout == 0 {
		cfg.WitnessTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{cfg: cfg, logger: cfg.Logger.With("region", cfg.Region, "part", "gateway"), denials: newDenials(cfg.Unauthenticated), metrics: cfg.Metrics}
	if rl, ok := cfg.Log.(RecordLog); ok {
		g.appendRecord = rl.AppendRecord
	} else {
		g.appendRecord = func(ctx context.Context, _ *access.Record, entry []byte) (uint64, error) {
			return cfg.Log.Append(ctx, entry)
		}
	}
	return g
}

// Handler serves, relative to where it is mounted (/regions/<region>/ in
// the platform):
//
//	GET    /v1/records                read records (JSON)
//	GET    /v1/records/export         export records (NDJSON)
//	DELETE /v1/records                delete records
//	GET    /v1/access/{index}/proof   C2SP tlog-proof of an access entry (public)
//
// The record routes take the query parameters sha256, endpoint, from, to
// (RFC 3339), after (a record id: the next page), limit and personal
// (false: the threat halves alone, without asking custody), a principal's
// bearer token and a [access.Header] justification. An answer carries the
// [access.ReceiptHeader] of its access record, or, for an attempt without
// a valid credential that was counted instead, the [CountedHeader].
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/records", func(w http.ResponseWriter, r *http.Request) { g.serveAccess(w, r, read) })
	mux.HandleFunc("GET /v1/records/export", func(w http.ResponseWriter, r *http.Request) { g.serveAccess(w, r, export) })
	mux.HandleFunc("DELETE /v1/records", func(w http.ResponseWriter, r *http.Request) { g.serveAccess(w, r, del) })
	mux.HandleFunc("GET /v1/access/{index}/proof", g.serveProof)
	return mux
}

// action is one kind of access through the gateway.
type action struct {
	name   string
	roles  []principal.Role // who may do it
	open   bool             // whether it releases personal fields
	metric metrics.Action
}

var (
	read   = &action{name: "read", roles: []principal.Role{principal.Analyst, principal.Supervisor}, open: true, metric: metrics.ActionRead}
	export = &action{name: "export", roles: []principal.Role{principal.Analyst, principal.Supervisor}, open: true, metric: metrics.ActionExport}
	del    = &action{name: "delete", roles: []principal.Role{principal.Operator, principal.Analyst}, metric: metrics.ActionDelete}
)

// Errors the gateway answers 503 for (kind fault.ErrUnavailable): the
// access was not completed and nothing was released.
var (
	errLog        = fault.New(fault.ErrUnavailable, "the access log could not take the access record")
	errWitness    = fault.New(fault.ErrUnavailable, "the access record is not yet in a checkpoint the supervisor's witness cosigned")
	errCustody    = fault.New(fault.ErrUnavailable, "key custody did not unwrap the data keys")
	errPseudonyms = fault.New(fault.ErrUnavailable, "the endpoint's pseudonym could not be had from the supervisor")
	errStore      = fault.New(fault.ErrUnavailable, "the region's store could not answer")
	errPrincipals = fault.New(fault.ErrUnavailable, "the principal could not be authenticated: the registry of principals could not be reached")
)

// requestID returns a fresh random request id.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// receipt is the value of the [access.ReceiptHeader] header.
func (g *Gateway) receipt(index uint64) string {
	return fmt.Sprintf("%s %d", g.cfg.Log.Origin(), index)
}

// unavailable answers err, one of the err* above, wrapped, through
// httpapi.Fail (503 for these), saying which part failed but not how.
func (g *Gateway) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
		g.logger.ErrorContext(r.Context(), "access failed closed", "err", err)
	}
	msg := "the access failed"
	for _, e := range []error{errLog, errWitness, errCustody, errStore, errPseudonyms, errPrincipals} {
		if errors.Is(err, e) {
			msg = e.Error()
		}
	}
	httpapi.Fail(w, g.logger, err, msg+"; no data was released, retry later")
}
