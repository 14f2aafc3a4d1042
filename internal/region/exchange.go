package region

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/store"
)

// AggregatesPage is the answer to GET /v1/aggregates: the region's
// aggregates changed after the cursor asked for. It holds no personal data.
type AggregatesPage struct {
	Region     string            `json:"region"`
	Aggregates []store.Aggregate `json:"aggregates"`
	Cursor     int64             `json:"cursor"`
}

const maxPage = 5000

func (r *Region) serveAggregates(w http.ResponseWriter, req *http.Request) {
	if !keys.BearerEqual(req, r.cfg.PeerToken) {
		httpapi.Unauthorized(w, "aggregates are for peer regions (peer token)")
		return
	}
	cursor, err := strconv.ParseInt(req.URL.Query().Get("cursor"), 10, 64)
	if err != nil || cursor < 0 {
		httpapi.Error(w, http.StatusBadRequest, "cursor must be a non-negative decimal")
		return
	}
	aggs, next, err := r.cfg.Store.ChangedAggregates(req.Context(), cursor, maxPage)
	if err != nil {
		r.logger.ErrorContext(req.Context(), "reading aggregates", "err", err)
		httpapi.Unavailable(w, time.Second, "aggregates are unavailable")
		return
	}
	if aggs == nil {
		aggs = []store.Aggregate{}
	}
	// Compact, unlike the answers meant for people: pages are large and
	// frequent.
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(AggregatesPage{Region: r.cfg.Name, Aggregates: aggs, Cursor: next})
}

// pull fetches a peer's aggregates changed after cursor, page by page,
// stores them as that region's remote aggregates and returns the new
// cursor.
func (r *Region) pull(ctx context.Context, name, base string, cursor int64) (int64, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/aggregates?cursor="+strconv.FormatInt(cursor, 10), nil)
		if err != nil {
			return cursor, err
		}
		req.Header.Set("Authorization", "Bearer "+r.cfg.PeerToken)
		resp, err := r.cfg.PeerClient.Do(req)
		if err != nil {
			return cursor, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return cursor, err
		}
		if resp.StatusCode != http.StatusOK {
			return cursor, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		var page AggregatesPage
		if err := json.Unmarshal(body, &page); err != nil {
			return cursor, fmt.Errorf("parsing aggregates page: %w", err)
		}
		if page.Region != name {
			return cursor, fmt.Errorf("peer at %s says it is region %q, not %q", base, page.Region, name)
		}
		if page.Cursor < cursor {
			return cursor, errors.New("peer's cursor went backwards")
		}
		if len(page.Aggregates) > 0 || page.Cursor != cursor {
			if err := r.cfg.Store.PutRemote(ctx, name, page.Aggregates, page.Cursor); err != nil {
				return cursor, err
			}
		}
		cursor = page.Cursor
		if len(page.Aggregates) < maxPage {
			return cursor, nil
		}
	}
}

// strictJSON decodes one JSON value into v, refusing unknown fields and
// trailing data.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
