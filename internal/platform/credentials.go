package platform

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/gateway"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/principal"
)

// grantLog is where the principal registry logs grants and revocations:
// the access log of each region.
type grantLog map[string]appendLog

func (g grantLog) Append(ctx context.Context, region string, entry []byte) error {
	l := g["access-"+region]
	if l == nil {
		return fmt.Errorf("region %s has no access log", region)
	}
	_, err := l.Append(ctx, entry)
	return err
}

// admittedLog is a region's access log as its gateway appends to it:
// through the principal registry's Admit, so that no granted access of a
// principal enters the log after its revocation or expiry.
type admittedLog struct {
	appendLog
	principals *principal.Registry
}

func (l admittedLog) Append(ctx context.Context, entry []byte) (uint64, error) {
	return l.principals.Admit(ctx, entry, l.appendLog.Append)
}

// The gateway hands admittedLog the record with its encoding.
var _ gateway.RecordLog = admittedLog{}

func (l admittedLog) AppendRecord(ctx context.Context, rec *access.Record, entry []byte) (uint64, error) {
	return l.principals.AdmitRecord(ctx, rec, entry, l.appendLog.Append)
}

// openEndpointIssuer returns the endpoint token issuer, whose verifiers —
// every region's and the front door's — refuse the tokens of the endpoints
// revoked in the revocation list it returns too.
func openEndpointIssuer(data, name string) (*endpoint.Issuer, *endpoint.Revocations, error) {
	iss, err := endpoint.LoadOrCreateIssuer(filepath.Join(data, "endpoint.key"), filepath.Join(data, "endpoint.vkey"), name+"/endpoints")
	if err != nil {
		return nil, nil, err
	}
	revoked, err := endpoint.OpenRevocations(filepath.Join(data, "endpoints-revoked.json"))
	if err != nil {
		return nil, nil, err
	}
	return iss.WithRevocations(revoked), revoked, nil
}

// serveEndpointRevoke serves DELETE /v1/endpoints/{id}: with the operator
// token, it revokes the endpoint durably, and from the 200 on every region
// answers its tokens 401. The endpoint registers again for a new id and
// token.
func (p *Platform) serveEndpointRevoke(w http.ResponseWriter, r *http.Request) {
	if !keys.BearerEqual(r, p.operatorToken) {
		httpapi.Unauthorized(w, "revoking endpoints needs the operator token")
		return
	}
	id := r.PathValue("id")
	if !endpoint.ValidID(id) {
		httpapi.Error(w, http.StatusBadRequest, fmt.Sprintf("%q is not an endpoint id (ep_ and 26 base32 characters)", id))
		return
	}
	if err := p.regions.revoked.Revoke(id, time.Now()); err != nil {
		if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
			p.logger.ErrorContext(r.Context(), "revoking endpoint", "endpoint", id, "err", err)
		}
		httpapi.Fail(w, p.logger, backoff.WithRetryAfter(err, 5*time.Second), "revoking endpoint "+id+" failed: the revocation could not be stored; its tokens still work")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, struct {
		Revoked string `json:"revoked"`
	}{id})
}
