package principal

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/residency"
)

// Registry holds principals and the hashes of their tokens, in memory and
// in its file. It is safe for concurrent use.
type Registry struct {
	path        string
	knownRegion func(string) bool

	mu     sync.RWMutex // guards byID and byHash; held while the file is written
	byID   map[string]*entry
	byHash map[[sha256.Size]byte]*entry
}

type entry struct {
	p    *Principal
	hash [sha256.Size]byte
}

// fileVersion is the version of the registry file format.
const fileVersion = 1

// registryFile is the registry file: a JSON object, principals sorted by
// id.
type registryFile struct {
	Version    int               `json:"version"`
	Principals []storedPrincipal `json:"principals"`
}

type storedPrincipal struct {
	ID       string    `json:"id"`
	Role     Role      `json:"role"`
	Location string    `json:"location"`
	Regions  []string  `json:"regions"`
	Created  time.Time `json:"created"`
	// TokenSHA256 is the lower-case hex SHA-256 of the token.
	TokenSHA256 string `json:"token_sha256"`
}

// Open returns the registry stored at path, creating an empty one (mode
// 0600) if the file does not exist. knownRegion tells [Registry.Create]
// which regions exist; it must be safe for concurrent use.
//
// Open does not ask knownRegion about the principals already stored, so a
// region that leaves the residency policy does not keep the registry from
// opening; such a principal simply has nowhere to act.
func Open(path string, knownRegion func(string) bool) (*Registry, error) {
	if knownRegion == nil {
		return nil, errors.New("opening principal registry: no knownRegion function")
	}
	r := &Registry{
		path:        path,
		knownRegion: knownRegion,
		byID:        make(map[string]*entry),
		byHash:      make(map[[sha256.Size]byte]*entry),
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.save(nil); err != nil {
			return nil, fmt.Errorf("creating principal registry: %w", err)
		}
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("opening principal registry: %w", err)
	}
	if err := r.load(b); err != nil {
		return nil, fmt.Errorf("opening principal registry %s: %w", path, err)
	}
	return r, nil
}

// load fills r from the contents of its file.
func (r *Registry) load(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var f registryFile
	if err := d.Decode(&f); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the registry")
	}
	if f.Version != fileVersion {
		return fmt.Errorf("version %d, want %d", f.Version, fileVersion)
	}
	for _, s := range f.Principals {
		p := &Principal{ID: s.ID, Role: s.Role, Location: s.Location, Regions: s.Regions, Created: s.Created}
		if err := validate(p, residency.ValidRegionName); err != nil {
			return err
		}
		if p.Created.IsZero() {
			return fmt.Errorf("principal %q has no creation time", p.ID)
		}
		var h [sha256.Size]byte
		if len(s.TokenSHA256) != hex.EncodedLen(len(h)) || strings.ToLower(s.TokenSHA256) != s.TokenSHA256 {
			return fmt.Errorf("principal %q: token_sha256 is not 64 lower-case hex digits", p.ID)
		}
		if _, err := hex.Decode(h[:], []byte(s.TokenSHA256)); err != nil {
			return fmt.Errorf("principal %q: token_sha256 is not 64 lower-case hex digits", p.ID)
		}
		if _, ok := r.byID[p.ID]; ok {
			return fmt.Errorf("principal %q is listed twice", p.ID)
		}
		if _, ok := r.byHash[h]; ok {
			return fmt.Errorf("principal %q has the token of another principal", p.ID)
		}
		e := &entry{p: p, hash: h}
		r.byID[p.ID], r.byHash[h] = e, e
	}
	return nil
}

// save writes the registry with the principals of r.byID and extra to its
// file, atomically and durably. The caller holds r.mu or owns r.
func (r *Registry) save(extra *entry) error {
	f := registryFile{Version: fileVersion, Principals: []storedPrincipal{}}
	for _, e := range r.byID {
		f.Principals = append(f.Principals, stored(e))
	}
	if extra != nil {
		f.Principals = append(f.Principals, stored(extra))
	}
	slices.SortFunc(f.Principals, func(a, b storedPrincipal) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(r.path, append(b, '\n'), 0o600)
}

func stored(e *entry) storedPrincipal {
	return storedPrincipal{
		ID:          e.p.ID,
		Role:        e.p.Role,
		Location:    e.p.Location,
		Regions:     e.p.Regions,
		Created:     e.p.Created,
		TokenSHA256: hex.EncodeToString(e.hash[:]),
	}
}

// Create adds p to the registry and returns its token, which is not kept
// and cannot be recovered. The registry sets p.Created to the current
// time. When Create returns, the principal is durably stored; on any error
// nothing is stored. An invalid principal is an error matching
// [ErrInvalid] whose message says what is wrong; a taken id matches
// [ErrExists].
func (r *Registry) Create(p Principal) (token string, err error) {
	p.Regions = slices.Clone(p.Regions)
	if err := validate(&p, r.knownRegion); err != nil {
		return "", fmt.Errorf("creating principal: %w", err)
	}
	p.Created = time.Now().UTC().Truncate(time.Second)

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[p.ID]; ok {
		return "", fmt.Errorf("creating principal %q: %w", p.ID, ErrExists)
	}
	tok, h := newToken()
	for r.byHash[h] != nil { // 2^-256; the check keeps "one token, one principal" unconditional
		tok, h = newToken()
	}
	e := &entry{p: &p, hash: h}
	if err := r.save(e); err != nil {
		return "", fmt.Errorf("creating principal %q: storing the registry: %w", p.ID, err)
	}
	r.byID[p.ID], r.byHash[h] = e, e
	return tok, nil
}

// Authenticate returns the principal whose token r carries in an
// "Authorization: Bearer <token>" header. Without such a header the error
// matches [ErrNoCredential]; a malformed or unknown token matches
// [ErrBadCredential]. Errors never contain the token.
func (r *Registry) Authenticate(req *http.Request) (*Principal, error) {
	tok, err := bearer(req)
	if err != nil {
		return nil, fmt.Errorf("authenticating principal: %w", err)
	}
	h := sha256.Sum256([]byte(tok))
	r.mu.RLock()
	e := r.byHash[h]
	r.mu.RUnlock()
	// The map finds the entry by hash; the comparison that admits the
	// caller takes constant time all the same.
	if e == nil || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		return nil, fmt.Errorf("authenticating principal: %w", errUnknownToken)
	}
	return e.p.clone(), nil
}

// Get returns the principal with the given id. The result is a copy.
func (r *Registry) Get(id string) (*Principal, bool) {
	r.mu.RLock()
	e := r.byID[id]
	r.mu.RUnlock()
	if e == nil {
		return nil, false
	}
	return e.p.clone(), true
}
