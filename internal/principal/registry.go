package principal

import (
	"bytes"
	"context"
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

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/residency"
)

// Registry holds principals and the hashes of their tokens, in memory and
// in its file. It is safe for concurrent use.
type Registry struct {
	path        string
	knownRegion func(string) bool
	log         Log
	now         func() time.Time

	// mu guards byID and byHash. It is held while the file is written and
	// grants are logged, and for reading by Admit around a gateway's
	// append, so that a revocation and an access are in the same order
	// in a log as they took effect.
	mu     sync.RWMutex
	byID   map[string]*entry
	byHash map[[sha256.Size]byte]*entry
}

// Log records grants and revocations: the access logs of the regions.
type Log interface {
	// Append appends entry to the access log of region and returns once
	// the log has durably sequenced it.
	Append(ctx context.Context, region string, entry []byte) error
}

// Option configures a [Registry].
type Option func(*Registry)

// WithLog makes the registry record each creation and revocation in log,
// as an [access.Grant] in the log of each of the principal's regions,
// before it takes effect. Without it nothing is recorded (for tests and
// tools that hold no log).
func WithLog(log Log) Option { return func(r *Registry) { r.log = log } }

// WithClock sets the clock that creation times and expiry are read from
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Registry) { r.now = now } }

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
	Expires  time.Time `json:"expires,omitzero"`
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
func Open(path string, knownRegion func(string) bool, opts ...Option) (*Registry, error) {
	if knownRegion == nil {
		return nil, errors.New("opening principal registry: no knownRegion function")
	}
	r := &Registry{
		path:        path,
		knownRegion: knownRegion,
		now:         time.Now,
		byID:        make(map[string]*entry),
		byHash:      make(map[[sha256.Size]byte]*entry),
	}
	for _, o := range opts {
		o(r)
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.save(nil, ""); err != nil {
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
		p := &Principal{ID: s.ID, Role: s.Role, Location: s.Location, Regions: s.Regions, Created: s.Created, Expires: s.Expires}
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

// save writes the registry with the principals of r.byID and extra, but
// without the principal with the id without, to its file, atomically and
// durably. The caller holds r.mu or owns r.
func (r *Registry) save(extra *entry, without string) error {
	f := registryFile{Version: fileVersion, Principals: []storedPrincipal{}}
	for id, e := range r.byID {
		if id != without {
			f.Principals = append(f.Principals, stored(e))
		}
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
		Expires:     e.p.Expires,
		TokenSHA256: hex.EncodeToString(e.hash[:]),
	}
}

// Create adds p to the registry and returns its token, which is not kept
// and cannot be recovered. The registry sets p.Created to the current
// time; p.Expires, if not zero, must be after it. The grant is logged
// first (see [WithLog]), then the principal is durably stored, and only
// then does its token work. On any error nothing is stored and the token
// never works, though a log may hold the grant: an entry once appended
// stays. An invalid principal is an error matching [ErrInvalid] whose
// message says what is wrong, a taken id matches [ErrExists], and a log
// that did not take the grant [ErrLogUnavailable].
func (r *Registry) Create(ctx context.Context, p Principal) (token string, err error) {
	p.Regions = slices.Clone(p.Regions)
	if err := validate(&p, r.knownRegion); err != nil {
		return "", fmt.Errorf("creating principal: %w", err)
	}
	p.Created = r.now().UTC().Truncate(time.Millisecond)
	if !p.Expires.IsZero() {
		p.Expires = p.Expires.UTC().Truncate(time.Millisecond)
		if !p.Expires.After(p.Created) {
			return "", fmt.Errorf("creating principal: %w", invalid("expires %s is not in the future", p.Expires.Format(time.RFC3339)))
		}
	}

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
	if logged, err := r.record(ctx, access.GrantAction, e, p.Created); err != nil {
		if len(logged) > 0 {
			return "", fmt.Errorf("creating principal %q: %w; nothing was stored (the logs of %v hold a grant that never took effect)", p.ID, err, logged)
		}
		return "", fmt.Errorf("creating principal %q: %w; nothing was stored", p.ID, err)
	}
	if err := r.save(e, ""); err != nil {
		return "", fmt.Errorf("creating principal %q: storing the registry: %w", p.ID, fault.Mark(fault.ErrUnavailable, err))
	}
	r.byID[p.ID], r.byHash[h] = e, e
	return tok, nil
}

// Revoke ends the principal with the given id at once: from its return,
// its token authenticates nothing and [Registry.Admit] refuses its access
// records. It first removes the principal from the file, durably, then
// logs the revocation (see [WithLog]) and then drops the principal from
// memory, all under the registry's lock, so that every access record of
// the principal that a log holds is before the revocation in it.
//
// If no log takes the revocation, Revoke restores the file and returns an
// error matching [ErrLogUnavailable]: nothing changed. If some logs took
// it and others did not, the principal is revoked all the same (a log
// that says "revoked" must never see the principal act again) and the
// error, matching ErrLogUnavailable, names the regions whose logs lack
// the revocation. An unknown id matches [ErrNotFound].
func (r *Registry) Revoke(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byID[id]
	if e == nil {
		return fmt.Errorf("revoking principal %q: %w", id, ErrNotFound)
	}
	// Durable first: a revocation in a log must survive a crash.
	if err := r.save(nil, id); err != nil {
		return fmt.Errorf("revoking principal %q: storing the registry: %w", id, fault.Mark(fault.ErrUnavailable, err))
	}
	logged, err := r.record(ctx, access.RevokeAction, e, r.now())
	if err != nil && len(logged) == 0 {
		if serr := r.save(nil, ""); serr != nil {
			// The file says revoked; so does memory from now on.
			r.drop(e)
			return fmt.Errorf("revoking principal %q: %w; the principal is revoked, but its revocation is in no log (restoring the registry failed: %v)", id, err, serr)
		}
		return fmt.Errorf("revoking principal %q: %w; nothing changed", id, err)
	}
	r.drop(e)
	if err != nil {
		return fmt.Errorf("revoking principal %q: %w; the principal is revoked, but only the logs of %v hold its revocation", id, err, logged)
	}
	return nil
}

// has reports whether the principal id is known (and not revoked).
func (r *Registry) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id] != nil
}

// drop removes e from memory. The caller holds r.mu.
func (r *Registry) drop(e *entry) {
	delete(r.byID, e.p.ID)
	delete(r.byHash, e.hash)
}

// record appends the grant entry of e with action, at time at, to the log
// of each of e's regions, in order, and returns the regions whose logs
// took it. It stops at the first log that does not: the error matches
// [ErrLogUnavailable].
func (r *Registry) record(ctx context.Context, action string, e *entry, at time.Time) (logged []string, err error) {
	if r.log == nil {
		return nil, nil
	}
	g := &access.Grant{
		Time:      at,
		Action:    action,
		Principal: access.Principal{ID: e.p.ID, Role: string(e.p.Role), Location: e.p.Location},
		Regions:   e.p.Regions,
		Token:     "sha256:" + hex.EncodeToString(e.hash[:]),
		Expires:   e.p.Expires,
	}
	for _, region := range slices.Sorted(slices.Values(e.p.Regions)) {
		g.Region = region
		b, err := g.Marshal()
		if err != nil {
			return logged, fmt.Errorf("building the %s entry: %w", action, err)
		}
		if err := r.log.Append(ctx, region, b); err != nil {
			return logged, fmt.Errorf("%w: logging the %s in region %s: %v", ErrLogUnavailable, action, region, err)
		}
		logged = append(logged, region)
	}
	return logged, nil
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
	if e.p.expired(r.now()) {
		return nil, fmt.Errorf("authenticating principal: %w", errExpired)
	}
	return e.p.clone(), nil
}

// Admit appends entry, an entry for the access log of a region, with
// appendEntry, unless it is a granted access record whose principal holds
// no valid credential: one revoked, expired (now, or at the record's
// time), granted after the record's time, or of another role or
// location. The check and the append happen under the registry's read
// lock, which [Registry.Revoke] takes for writing, so that a log holds no
// granted access record of a principal after its revocation, however the
// two raced. Other entries (denied records, summaries, commitments) are
// appended as they are. A refused record is an error matching
// [ErrBadCredential], or [ErrExpired] too; it is not appended.
func (r *Registry) Admit(ctx context.Context, entry []byte, appendEntry func(context.Context, []byte) (uint64, error)) (uint64, error) {
	if access.EntryKind(entry) != access.KindAccess {
		return appendEntry(ctx, entry)
	}
	rec, err := access.Parse(entry)
	if err != nil {
		return appendEntry(ctx, entry) // the log's owner refuses what is malformed
	}
	return r.AdmitRecord(ctx, rec, entry, appendEntry)
}

// AdmitRecord is [Registry.Admit] for an entry whose record the caller
// has: rec, which entry encodes. It does not parse entry.
func (r *Registry) AdmitRecord(ctx context.Context, rec *access.Record, entry []byte, appendEntry func(context.Context, []byte) (uint64, error)) (uint64, error) {
	if rec.Outcome != "granted" {
		return appendEntry(ctx, entry)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.byID[rec.Principal.ID]
	switch {
	case e == nil:
		return 0, fmt.Errorf("admitting access record of principal %q: %w: the principal was revoked", rec.Principal.ID, ErrBadCredential)
	case string(e.p.Role) != rec.Principal.Role || e.p.Location != rec.Principal.Location:
		return 0, fmt.Errorf("admitting access record of principal %q: %w: the record names role %s and location %s", rec.Principal.ID, ErrBadCredential, rec.Principal.Role, rec.Principal.Location)
	case rec.Time.Before(e.p.Created):
		return 0, fmt.Errorf("admitting access record of principal %q: %w: the record is older than the principal's grant", rec.Principal.ID, ErrBadCredential)
	case e.p.expired(r.now()) || e.p.expired(rec.Time):
		return 0, fmt.Errorf("admitting access record of principal %q: %w", rec.Principal.ID, errExpired)
	}
	return appendEntry(ctx, entry)
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
