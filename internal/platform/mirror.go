package platform

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/residency"
)

// mirror is what a process beside the platform's (a region's, or the
// front door's) keeps of it: the active residency policy, checked under
// the platform's policy key, and the endpoint revocations, both read from
// the platform's internal routes every refresh. Work that depends on them
// is refused once they are regionStale old.
type mirror struct {
	hc              *http.Client
	platform, token string
	logger          *slog.Logger
	policy          atomic.Pointer[residency.Policy]
	policyV         note.Verifier
	revoked         *endpoint.Revocations
	// refreshed is when the policy and revocations were last read.
	refreshed atomic.Int64
}

func newMirror(platform, token string, hc *http.Client, logger *slog.Logger) mirror {
	return mirror{hc: hc, platform: platform, token: token, logger: logger, revoked: endpoint.Mirror()}
}

// start takes the platform's policy key from its discovery document d,
// reads the policy and the revocations once, and returns the verifier of
// endpoint tokens under d's key that refuses the revoked ones.
func (m *mirror) start(ctx context.Context, d *client.Discovery) (*endpoint.Verifier, error) {
	var err error
	if m.policyV, err = note.NewVerifier(d.PolicyKey); err != nil {
		return nil, fmt.Errorf("the platform's policy key: %w", err)
	}
	tokens, err := endpoint.NewVerifier(d.EndpointKey)
	if err != nil {
		return nil, err
	}
	if err := m.refresh(ctx); err != nil {
		return nil, err
	}
	return tokens.WithRevocations(m.revoked), nil
}

// fresh reports how old the policy and revocations are, and whether that
// is within regionStale.
func (m *mirror) fresh() (time.Duration, bool) {
	age := time.Since(time.Unix(0, m.refreshed.Load()))
	return age, age <= regionStale
}

// whileFresh answers 503 instead of h while the policy and the endpoint
// revocations may be stale.
func (m *mirror) whileFresh(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if age, ok := m.fresh(); !ok {
			w.Header().Set("Retry-After", "1")
			httpapi.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("this process last read the residency policy and the endpoint revocations %s ago; try again", age.Round(time.Second)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (m *mirror) serveReadyz(w http.ResponseWriter, r *http.Request) {
	age, ok := m.fresh()
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.Header().Set("Retry-After", "1")
		httpapi.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("the policy and the endpoint revocations were last read from the platform %s ago", age.Round(time.Second)))
		return
	}
	httpapi.JSON(w, map[string]any{"ready": true})
}

// refreshLoop reads the active policy and the revocations every interval
// until ctx ends.
func (m *mirror) refreshLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
			m.logger.WarnContext(ctx, "reading the policy and revocations from the platform", "err", err)
		}
	}
}

// refresh reads the active policy, checking its signature with the
// platform's policy key, and the endpoint revocations.
func (m *mirror) refresh(ctx context.Context) error {
	signed, err := m.get(ctx, internalPrefix+"policy", 1<<20)
	if err != nil {
		return err
	}
	pol, err := residency.Open(signed, m.policyV)
	if err != nil {
		return fmt.Errorf("the platform's active policy: %w", err)
	}
	if cur := m.policy.Load(); cur != nil && pol.Version < cur.Version {
		return fmt.Errorf("the platform's active policy is version %d, older than version %d in force here", pol.Version, cur.Version)
	}
	revoked, err := m.get(ctx, internalPrefix+"endpoints/revoked", 64<<20)
	if err != nil {
		return err
	}
	if err := m.revoked.Replace(revoked); err != nil {
		return err
	}
	m.policy.Store(pol)
	m.refreshed.Store(time.Now().UnixNano())
	return nil
}

// get reads an internal route of the platform.
func (m *mirror) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.platform+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	return client.Send(m.hc, req, limit)
}
