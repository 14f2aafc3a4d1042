package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// Fail answers a request that failed with err, with the status err's kind
// (package fault) calls for. msg is what the answer tells a person: what
// failed and what was (not) done.
//
//   - fault.ErrUnavailable: 503 with a Retry-After of the wait err asks for
//     (an error with a RetryAfter() time.Duration method in its chain), at
//     least a second; msg alone, since what broke inside is not the
//     caller's business.
//   - fault.ErrBusy: 503 with a Retry-After of a second; msg alone.
//   - fault.ErrInvalid, NotFound, Conflict, Forbidden: 400, 404, 409, 403,
//     with msg and err's text, which for these kinds is written for the
//     caller ("bad query: …").
//   - any other error is unexpected: 500, msg and an incident id, and
//     err is logged under that id at Error level. Its text never reaches
//     the answer: it may hold paths, SQL or keys' names.
func Fail(w http.ResponseWriter, logger *slog.Logger, err error, msg string) {
	withErr := func() string {
		if msg == "" {
			return err.Error()
		}
		return msg + ": " + err.Error()
	}
	switch fault.Kind(err) {
	case fault.ErrUnavailable:
		wait := time.Second
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			wait = max(wait, ra.RetryAfter())
		}
		Unavailable(w, wait, msg)
	case fault.ErrBusy:
		Unavailable(w, time.Second, msg)
	case fault.ErrInvalid:
		Error(w, http.StatusBadRequest, withErr())
	case fault.ErrNotFound:
		Error(w, http.StatusNotFound, withErr())
	case fault.ErrConflict:
		Error(w, http.StatusConflict, withErr())
	case fault.ErrForbidden:
		Error(w, http.StatusForbidden, withErr())
	default:
		var b [6]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		if logger == nil {
			logger = slog.Default()
		}
		logger.Error(msg, "err", err, "incident", id)
		if msg == "" {
			msg = "internal error"
		}
		Error(w, http.StatusInternalServerError, msg+" (internal error "+id+"; the server's log has the details)")
	}
}
