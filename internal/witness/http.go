package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/transparency-dev/formats/log"
	upstream "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

const (
	// maxBodyBytes bounds an add-checkpoint body: 63 proof lines take under
	// 3 KiB, which leaves room for a checkpoint carrying several
	// post-quantum signatures.
	maxBodyBytes = 64 << 10
	// maxProofLines is the spec's limit; a proof for a 2⁶⁴-leaf tree is
	// shorter.
	maxProofLines = 63
	// hashSize is the size of a SHA-256 tree hash.
	hashSize = 32
)

// Handler returns the witness's HTTP interface, relative to where it is
// mounted (http.StripPrefix it under a prefix):
//
//	POST add-checkpoint        c2sp.org/tlog-witness
//	GET  checkpoint/<origin>   the latest cosigned checkpoint; <origin> may be path-escaped
//
// Other methods are answered 405 and bodies over 64 KiB 413.
func (w *Witness) Handler() http.Handler {
	return http.HandlerFunc(w.serveHTTP)
}

func (w *Witness) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	// Accept the path with or without its leading slash, so that both
	// StripPrefix("/witness") and StripPrefix("/witness/") mount us.
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	switch {
	case path == "add-checkpoint":
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			textError(rw, http.StatusMethodNotAllowed, "add-checkpoint takes POST")
			return
		}
		w.serveAddCheckpoint(rw, r)
	case strings.HasPrefix(path, "checkpoint/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			textError(rw, http.StatusMethodNotAllowed, "checkpoint takes GET")
			return
		}
		w.serveCheckpoint(rw, r, strings.TrimPrefix(path, "checkpoint/"))
	default:
		textError(rw, http.StatusNotFound, "no such witness resource; try POST add-checkpoint")
	}
}

func (w *Witness) serveCheckpoint(rw http.ResponseWriter, r *http.Request, escaped string) {
	origin, err := url.PathUnescape(escaped)
	if err != nil {
		textError(rw, http.StatusBadRequest, "checkpoint: malformed origin in path: %v", err)
		return
	}
	cp, err := w.Checkpoint(r.Context(), origin)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		textError(rw, http.StatusNotFound, "no checkpoint cosigned for origin %q", origin)
		return
	case err != nil:
		textError(rw, http.StatusInternalServerError, "reading the cosigned checkpoint failed (%s)",
			httpapi.Incident(w.logger, fmt.Errorf("origin %q: %w", origin, err), "reading cosigned checkpoint"))
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	_, _ = rw.Write(cp)
}

func (w *Witness) serveAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			textError(rw, http.StatusRequestEntityTooLarge, "add-checkpoint: body is larger than %d bytes", maxBodyBytes)
			return
		}
		textError(rw, http.StatusBadRequest, "add-checkpoint: reading body: %v", err)
		return
	}
	req, err := parseAddCheckpoint(body)
	if err != nil {
		textError(rw, http.StatusBadRequest, "add-checkpoint: %v", err)
		return
	}
	a := w.addCheckpoint(r.Context(), req)
	switch {
	case a.status == http.StatusOK:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(a.sigs)
	case a.status == http.StatusConflict:
		// The body is the spec's and nothing else: clients parse it.
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		_, _ = fmt.Fprintf(rw, "%d\n", a.size)
	case a.status == http.StatusTooManyRequests:
		rw.Header().Set("Retry-After", "1")
		textError(rw, a.status, "add-checkpoint: %s", a.msg)
	default:
		textError(rw, a.status, "add-checkpoint: %s", a.msg)
	}
}

// addRequest is a parsed add-checkpoint body.
type addRequest struct {
	oldSize    uint64
	proof      [][]byte
	checkpoint []byte
}

// parseAddCheckpoint parses an add-checkpoint body: "old <size>\n", up to 63
// base64 hash lines, an empty line, and the checkpoint. It checks the syntax
// only; the checkpoint is not parsed.
func parseAddCheckpoint(b []byte) (addRequest, error) {
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return addRequest{}, errors.New("body does not start with an old size line")
	}
	size, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return addRequest{}, fmt.Errorf("first line %.40q is not \"old <size>\"", line)
	}
	oldSize, err := parseDecimal(string(size))
	if err != nil {
		return addRequest{}, fmt.Errorf("old size: %w", err)
	}
	req := addRequest{oldSize: oldSize}
	for n := 1; ; n++ {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return addRequest{}, errors.New("no empty line between the consistency proof and the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if n > maxProofLines {
			return addRequest{}, fmt.Errorf("more than %d consistency proof lines", maxProofLines)
		}
		h, err := base64.StdEncoding.DecodeString(string(line))
		// Round-trip so that only the canonical encoding passes: the
		// decoder skips '\r' and accepts nonzero padding bits.
		if err != nil || base64.StdEncoding.EncodeToString(h) != string(line) {
			return addRequest{}, fmt.Errorf("consistency proof line %d is not a base64 hash", n)
		}
		if len(h) != hashSize {
			return addRequest{}, fmt.Errorf("consistency proof line %d is a %d-byte hash, want %d", n, len(h), hashSize)
		}
		req.proof = append(req.proof, h)
	}
	if len(rest) == 0 {
		return addRequest{}, errors.New("no checkpoint after the empty line")
	}
	req.checkpoint = rest
	return req, nil
}

// parseDecimal parses a tree size: ASCII digits, no leading zero unless the
// size is 0.
func parseDecimal(s string) (uint64, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%.30q is not a decimal without leading zeros", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%.30q is out of range", s)
	}
	return n, nil
}

// answer is the outcome of an add-checkpoint request.
type answer struct {
	status int
	sigs   []byte // with 200: the cosignature lines
	size   uint64 // with 409: the cosigned size
	msg    string // otherwise: what is wrong
}

func fail(status int, format string, args ...any) answer {
	return answer{status: status, msg: fmt.Sprintf(format, args...)}
}

// addCheckpoint verifies the checkpoint's signature itself, to answer 404,
// 403 and 400 where upstream answers 500, then hands the request to the
// upstream witness and maps its result to the spec's status codes.
func (w *Witness) addCheckpoint(ctx context.Context, req addRequest) answer {
	originLine, _, _ := bytes.Cut(req.checkpoint, []byte("\n"))
	origin := string(originLine)
	v, known, _ := w.verifierForLog(ctx, origin)
	if !known {
		return fail(http.StatusNotFound, "unknown log origin %.200q", origin)
	}
	n, err := note.Open(req.checkpoint, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return fail(http.StatusForbidden, "checkpoint carries no signature by the trusted key of %q", origin)
		case errors.As(err, &invalid):
			return fail(http.StatusForbidden, "checkpoint signature by %s does not verify", invalid.Name)
		default:
			return fail(http.StatusBadRequest, "checkpoint is not a signed note: %v", err)
		}
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		return fail(http.StatusBadRequest, "checkpoint: %v", err)
	}

	sigs, size, err := w.core.Update(ctx, req.oldSize, req.checkpoint, req.proof)
	var fork *forkError
	switch {
	case err == nil:
		w.logger.DebugContext(ctx, "cosigned checkpoint", "origin", origin, "size", c.Size)
		return answer{status: http.StatusOK, sigs: sigs}
	case errors.Is(err, upstream.ErrCheckpointStale):
		return answer{status: http.StatusConflict, size: size}
	case errors.As(err, &fork):
		w.logger.WarnContext(ctx, "log presented a different root for a cosigned size", "origin", origin, "size", fork.size, "checkpoint", string(req.checkpoint))
		return answer{status: http.StatusConflict, size: fork.size}
	case errors.Is(err, upstream.ErrOldSizeInvalid):
		return fail(http.StatusBadRequest, "old size %d is larger than the checkpoint size %d", req.oldSize, c.Size)
	case errors.Is(err, upstream.ErrInvalidProof):
		if req.oldSize == 0 {
			return fail(http.StatusUnprocessableEntity, "consistency proof must be empty when the old size is 0")
		}
		w.logger.WarnContext(ctx, "consistency proof does not verify", "origin", origin, "old", req.oldSize, "size", c.Size)
		return fail(http.StatusUnprocessableEntity, "consistency proof from size %d to %d does not verify", req.oldSize, c.Size)
	case errors.Is(err, upstream.ErrRootMismatch):
		// Outside the transaction upstream raises this only for a size-0
		// checkpoint whose root is not the empty tree's.
		return fail(http.StatusUnprocessableEntity, "checkpoint of size 0 does not have the empty tree's root")
	case errors.Is(err, upstream.ErrUnknownLog):
		return fail(http.StatusNotFound, "unknown log origin %.200q", origin)
	case errors.Is(err, upstream.ErrNoValidSignature):
		return fail(http.StatusForbidden, "checkpoint carries no signature by the trusted key of %q", origin)
	case errors.Is(err, upstream.ErrPushback):
		return fail(http.StatusTooManyRequests, "witness is busy; retry")
	default:
		return fail(http.StatusInternalServerError, "witness failed to record the checkpoint (%s)",
			httpapi.Incident(w.logger, fmt.Errorf("origin %q: %w", origin, err), "add-checkpoint failed"))
	}
}

// textError writes a plain-text error answer.
func textError(rw http.ResponseWriter, status int, format string, args ...any) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_, _ = fmt.Fprintf(rw, format+"\n", args...)
}
