package logserver

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// Cache lifetimes of the tlog-tiles resources. Full tiles and bundles never
// change; partial ones are replaced by full ones and then deleted, and the
// checkpoint moves on every publication.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cachePartial    = "public, max-age=10"
	cacheCheckpoint = "no-cache"
)

// Handler serves the log's tlog-tiles read API and POST /add relative to
// where it is mounted. authorized decides whether a request may append;
// a request it refuses gets 401 and changes nothing.
func (l *Log) Handler(authorized func(*http.Request) bool) http.Handler {
	mux := http.NewServeMux()
	l.readRoutes(mux)
	mux.Handle("POST /add", l.AddHandler(authorized))
	return mux
}

// ReadHandler serves the log's tlog-tiles read API alone, relative to where
// it is mounted: for a log that only its owner appends to, through
// [Log.Append], after checking what it appends.
func (l *Log) ReadHandler() http.Handler {
	mux := http.NewServeMux()
	l.readRoutes(mux)
	return mux
}

func (l *Log) readRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /checkpoint", l.serveCheckpoint)
	mux.HandleFunc("GET /tile/", l.serveTile)
}

// AddHandler serves POST /add alone. A server mounting many logs routes
// appends, its hot path, straight to it.
func (l *Log) AddHandler(authorized func(*http.Request) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			httpapi.Unauthorized(w, "appending needs the log's bearer token (Authorization: Bearer <token>)")
			return
		}
		l.serveAdd(w, r)
	}
}

func (l *Log) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := l.reader.ReadCheckpoint(r.Context())
	if err != nil {
		err = readError(err, "none has been witnessed and published yet")
		if fault.Kind(err) == fault.ErrNotFound {
			w.Header().Set("Retry-After", "1")
		} else {
			l.logger.ErrorContext(r.Context(), "reading checkpoint", "err", err)
		}
		httpapi.Fail(w, l.logger, err, "reading the checkpoint failed")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = w.Write(cp)
}

func (l *Log) serveTile(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/tile/")
	res, err := ParseTilePath(rest)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if res.Width == 0 && l.serveFullFile(w, r, res) {
		return
	}
	var data []byte
	if res.Entries {
		data, err = l.reader.ReadEntryBundle(r.Context(), res.Index, res.Width)
	} else {
		data, err = l.reader.ReadTile(r.Context(), res.Level, res.Index, res.Width)
	}
	if err != nil {
		err = readError(err, "no such tile")
		if fault.Kind(err) != fault.ErrNotFound {
			l.logger.ErrorContext(r.Context(), "reading tile", "path", rest, "err", err)
		}
		httpapi.Fail(w, l.logger, err, "reading tile "+rest+" failed")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if res.Width == 0 {
		w.Header().Set("Cache-Control", cacheImmutable)
	} else {
		w.Header().Set("Cache-Control", cachePartial)
	}
	_, _ = w.Write(data)
}

// fullFileReader is implemented by storage that keeps full tiles and
// bundles as files.
type fullFileReader interface {
	FullResourceFile(entries bool, level, index uint64) (*os.File, error)
}

// serveFullFile sends a full tile or bundle straight from its file, which
// lets the kernel copy it (sendfile). It reports false if the storage does
// not keep files or the file is not there, leaving the answer to the caller.
func (l *Log) serveFullFile(w http.ResponseWriter, r *http.Request, res TileResource) bool {
	fr, ok := l.reader.(fullFileReader)
	if !ok {
		return false
	}
	f, err := fr.FullResourceFile(res.Entries, res.Level, res.Index)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	w.Header().Set("Cache-Control", cacheImmutable)
	if r.Method == http.MethodHead {
		return true
	}
	_, _ = io.Copy(w, f)
	return true
}

// busyMessage answers an append the log pushed back (a 503): a Remote
// tells it from a log that cannot be reached by it.
const busyMessage = "the log is busy; nothing was stored, retry shortly"

func (l *Log) serveAdd(w http.ResponseWriter, r *http.Request) {
	body, ok := httpapi.ReadLimited(w, r, MaxEntrySize)
	if !ok {
		return
	}
	idx, err := l.Append(r.Context(), body)
	switch {
	case err == nil:
	case errors.Is(err, ErrEmptyEntry):
		httpapi.Error(w, http.StatusBadRequest, "the entry is empty: send the entry bytes as the request body")
		return
	case errors.Is(err, ErrEntryTooLarge):
		httpapi.Error(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, ErrBusy):
		httpapi.Fail(w, l.logger, err, busyMessage)
		return
	default:
		// Unavailable: 503 with the wait a recovering store asks for.
		httpapi.Fail(w, l.logger, err, "the log could not take the entry; nothing was stored")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(strconv.AppendUint(nil, idx, 10))
}

// TileResource names one tlog-tiles resource.
type TileResource struct {
	Entries bool   // an entry bundle rather than a hash tile
	Level   uint64 // hash tile level (0 for bundles)
	Index   uint64
	Width   uint8 // 0 for a full tile, 1..255 for a partial one
}

// ParseTilePath parses the part of a tlog-tiles URL after "tile/":
// "<L>/<N>[.p/<W>]" or "entries/<N>[.p/<W>]". Only the canonical spelling
// is accepted, so every resource has exactly one URL.
func ParseTilePath(p string) (TileResource, error) {
	bad := func(why string) (TileResource, error) {
		return TileResource{}, errors.New("bad tile path " + strconv.Quote(p) + ": " + why)
	}
	if len(p) > 128 {
		return bad("too long")
	}
	level, index, ok := strings.Cut(p, "/")
	if !ok || index == "" {
		return bad(`want "<level>/<index>[.p/<width>]" or "entries/<index>[.p/<width>]"`)
	}
	var res TileResource
	if level == "entries" {
		res.Entries = true
	} else {
		l, err := layout.ParseTileLevel(level)
		if err != nil || strconv.FormatUint(l, 10) != level {
			return bad("level must be a decimal from 0 to 63 without leading zeros")
		}
		res.Level = l
	}
	i, w, err := layout.ParseTileIndexPartial(index)
	if err != nil {
		return bad(`index must be zero-padded 3-digit elements, all but the last prefixed "x", optionally followed by ".p/<width>"`)
	}
	res.Index, res.Width = i, w
	var canon string
	if res.Entries {
		canon = layout.EntriesPath(i, w)
	} else {
		canon = layout.TilePath(res.Level, i, w)
	}
	if canon != "tile/"+p {
		return bad("not in canonical form (want " + strings.TrimPrefix(canon, "tile/") + ")")
	}
	return res, nil
}

// readError groups an error of the log's reader (its files, through
// Tessera): see fault.File.
func readError(err error, notFound string) error { return fault.File(err, notFound) }
