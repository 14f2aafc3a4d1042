package gateway

import (
	"net/http"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/logserver"
)

// logReady reports whether the access log can take a record now, if it
// can tell (a *logserver.Log can). When it cannot, logReady answers 503
// with the log's Retry-After and returns false, so that an access that
// cannot be logged costs no store read. It logs nothing per request: the
// log's store logged once that it broke, and recovers by itself.
func (g *Gateway) logReady(w http.ResponseWriter) bool {
	err := logserver.ReadyOf(g.cfg.Log)
	if err == nil {
		return true
	}
	httpapi.Fail(w, g.logger, err, errLog.Error()+" (its storage is recovering); no data was released, retry after the Retry-After")
	return false
}
