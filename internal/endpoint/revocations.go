package endpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
)

// Revocations is the list of revoked endpoint ids, in memory and in one
// JSON file that is replaced atomically and synced on every change. A
// verifier that holds it ([Verifier.WithRevocations]) refuses the tokens
// of a revoked id from the moment [Revocations.Revoke] returns, in every
// region of the process. It is safe for concurrent use.
//
// A revoked id stays revoked: the endpoint registers again, under a new
// id, for a new token.
type Revocations struct {
	path string
	mu   sync.RWMutex // guards ids; held while the file is written
	ids  map[string]time.Time
}

// revocationsVersion is the version of the revocation file format.
const revocationsVersion = 1

// revocationsFile is the revocation file: a JSON object, ids sorted.
type revocationsFile struct {
	Version int               `json:"version"`
	Revoked []revokedEndpoint `json:"revoked"`
}

type revokedEndpoint struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"` // when it was revoked
}

// OpenRevocations returns the revocations stored at path, creating an
// empty list (mode 0600) if the file does not exist. A file that is not
// exactly such a list is an error: a revocation must never be lost to a
// file read leniently.
func OpenRevocations(path string) (*Revocations, error) {
	r := &Revocations{path: path, ids: map[string]time.Time{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.save(); err != nil {
			return nil, fmt.Errorf("creating endpoint revocations: %w", err)
		}
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("opening endpoint revocations: %w", err)
	}
	if err := r.load(b); err != nil {
		return nil, fmt.Errorf("opening endpoint revocations %s: %w", path, err)
	}
	return r, nil
}

// load adds the revocations of b, a list in the file's format, to r,
// which the caller owns.
func (r *Revocations) load(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var f revocationsFile
	if err := d.Decode(&f); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the list")
	}
	if f.Version != revocationsVersion {
		return fmt.Errorf("version %d, want %d", f.Version, revocationsVersion)
	}
	for _, e := range f.Revoked {
		if !ValidID(e.ID) {
			return fmt.Errorf("%q is not an endpoint id", e.ID)
		}
		r.ids[e.ID] = e.Time
	}
	return nil
}

// Revoke revokes the endpoint id at time at, durably: when Revoke returns
// nil, the id is in the file and every verifier holding r refuses its
// tokens. Revoking an id again keeps the first time. An id that is not
// well formed is an error; on any error nothing changes.
func (r *Revocations) Revoke(id string, at time.Time) error {
	if !ValidID(id) {
		return fault.New(fault.ErrInvalid, fmt.Sprintf("revoking endpoint: %q is not an endpoint id (ep_ and 26 base32 characters)", id))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ids[id]; ok {
		return nil
	}
	r.ids[id] = at.UTC().Truncate(time.Second)
	if err := r.save(); err != nil {
		delete(r.ids, id)
		return fmt.Errorf("revoking endpoint %s: storing the revocations: %w", id, fault.Mark(fault.ErrUnavailable, err))
	}
	return nil
}

// Revoked reports whether id is revoked. A nil r revokes nothing.
func (r *Revocations) Revoked(id string) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	_, ok := r.ids[id]
	r.mu.RUnlock()
	return ok
}

// save writes r.ids to the file. The caller holds r.mu or owns r.
func (r *Revocations) save() error {
	if r.path == "" {
		return errors.New("a mirror of revocations takes no revocation of its own")
	}
	b, err := r.marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(r.path, append(b, '\n'), 0o600)
}

// marshal encodes r.ids in the file's format. The caller holds r.mu or
// owns r.
func (r *Revocations) marshal() ([]byte, error) {
	f := revocationsFile{Version: revocationsVersion, Revoked: []revokedEndpoint{}}
	for id, t := range r.ids {
		f.Revoked = append(f.Revoked, revokedEndpoint{id, t})
	}
	slices.SortFunc(f.Revoked, func(a, b revokedEndpoint) int { return strings.Compare(a.ID, b.ID) })
	return json.MarshalIndent(f, "", "  ")
}

// MarshalJSON returns the revocations in the file's format: what a
// [Mirror] of them takes.
func (r *Revocations) MarshalJSON() ([]byte, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.marshal()
}

// Mirror returns revocations held in memory only, which [Revocations.Replace]
// replaces whole: a copy, in a region's own process, of the list the
// platform's process keeps (it refuses [Revocations.Revoke]).
func Mirror() *Revocations { return &Revocations{ids: map[string]time.Time{}} }

// Replace replaces r's revocations with those of b, a list in the file's
// format, unless b is not exactly such a list or drops a revocation r
// holds: a revoked id stays revoked.
func (r *Revocations) Replace(b []byte) error {
	next := &Revocations{ids: map[string]time.Time{}}
	if err := next.load(b); err != nil {
		return fmt.Errorf("replacing endpoint revocations: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.ids {
		if _, ok := next.ids[id]; !ok {
			return fmt.Errorf("replacing endpoint revocations: the new list drops %s, which was revoked", id)
		}
	}
	r.ids = next.ids
	return nil
}
