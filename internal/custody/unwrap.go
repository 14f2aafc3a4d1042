package custody

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/tlog"
)

// MaxKeys is the most wrapped keys one unwrap request may carry. An access
// record, at most 64 KiB, cannot list many more.
const MaxKeys = 1024

// UnwrapRequest asks custody for data keys on the strength of an access
// record in the region's access log.
type UnwrapRequest struct {
	// Region is the region whose key wrapped Keys and whose access log
	// holds Entry.
	Region string `json:"region"`
	// Entry is the access-log entry, verbatim.
	Entry []byte `json:"entry"`
	// Proof is a C2SP tlog-proof of Entry in the region's access log.
	Proof []byte `json:"proof"`
	// Keys are the wrapped data keys to unwrap; the access record must
	// list the KeyID of each.
	Keys [][]byte `json:"keys"`
	// RewrapFor, for a relocation, names the region whose public key the
	// keys are to be wrapped to instead of being returned in the clear.
	RewrapFor string `json:"rewrap_for,omitempty"`
}

// UnwrapResponse carries the data keys, in the order of the request: in the
// clear, or wrapped for the region the request named in RewrapFor.
type UnwrapResponse struct {
	Keys [][]byte `json:"keys"`
}

// Unwrap returns the data keys req asks for if the access record in
// req.Entry allows it:
//
//   - req.Proof verifies for req.Entry against the region's access log key
//     and the witness policy;
//   - the entry is a granted access record of req.Region whose action is
//     read, export, delete, relocate or process;
//   - the entry lists the KeyID of every requested key;
//   - RewrapFor, if set, names another region custody holds, and the action
//     is relocate;
//   - every key unwraps under the region's key.
//
// A key unwrapped before under the same region's key (the same wrapped
// bytes, by SHA-256) is taken from a bounded cache of data keys instead of
// being decapsulated again; every rule above except the last is checked
// for it all the same, and it is counted all the same.
//
// The same entry may be used again; every use is counted. The count of
// (region, proof index) grows by len(req.Keys) and is durable before Unwrap
// returns any key.
//
// Refusals wrap ErrRefused, bad requests ErrMalformed, and a count that
// could not be stored ErrUnavailable; then no key is returned.
func (s *Service) Unwrap(ctx context.Context, req *UnwrapRequest) (*UnwrapResponse, error) {
	if err := checkShape(req); err != nil {
		s.count(req, err)
		return nil, err
	}
	resp, index, err := s.unwrap(ctx, req)
	s.count(req, err)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			s.logger.WarnContext(ctx, "unwrap refused", slog.String("region", req.Region), slog.String("reason", err.Error()))
		} else {
			s.logger.ErrorContext(ctx, "unwrap failed", slog.String("region", req.Region), slog.String("err", err.Error()))
		}
		return nil, err
	}
	s.logger.InfoContext(ctx, "unwrapped", slog.String("region", req.Region), slog.Uint64("index", index),
		slog.Int("keys", len(req.Keys)), slog.String("rewrap_for", req.RewrapFor))
	return resp, nil
}

// count counts an unwrap that ended with err in its region's metrics.
func (s *Service) count(req *UnwrapRequest, err error) {
	m := s.unknown
	if req != nil {
		if r, ok := s.regions[req.Region]; ok {
			m = r.metrics
		}
	}
	switch {
	case err == nil:
		m.Unwrapped(metrics.UnwrapGranted, len(req.Keys))
	case errors.Is(err, ErrRefused):
		m.Unwrapped(metrics.UnwrapRefused, 0)
	case errors.Is(err, ErrMalformed):
		m.Unwrapped(metrics.UnwrapMalformed, 0)
	default:
		m.Unwrapped(metrics.UnwrapUnavailable, 0)
	}
}

// checkShape checks what a request must have before custody looks at it.
func checkShape(req *UnwrapRequest) error {
	switch {
	case req == nil:
		return fmt.Errorf("%w: no request", ErrMalformed)
	case req.Region == "":
		return fmt.Errorf("%w: no region", ErrMalformed)
	case len(req.Keys) == 0:
		return fmt.Errorf("%w: no keys to unwrap", ErrMalformed)
	case len(req.Keys) > MaxKeys:
		return fmt.Errorf("%w: %d keys, at most %d per request", ErrMalformed, len(req.Keys), MaxKeys)
	}
	return nil
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

func (s *Service) unwrap(ctx context.Context, req *UnwrapRequest) (*UnwrapResponse, uint64, error) {
	r, ok := s.regions[req.Region]
	if !ok {
		return nil, 0, refuse("custody holds no key for region %q", req.Region)
	}

	// Rule 1: the access is in the region's access log, witnessed.
	if len(req.Proof) == 0 {
		return nil, 0, refuse("no proof that the access record is in the access log of %s", r.Name)
	}
	proof, err := tlog.ParseProof(req.Proof)
	if err != nil {
		return nil, 0, refuse("proof: %v", err)
	}
	cp, err := proof.Verify(tlog.LeafHash(req.Entry), r.AccessLogVerifier, r.WitnessPolicy)
	if err != nil {
		return nil, 0, refuse("proof of the access record in the access log of %s does not verify: %v", r.Name, err)
	}

	// Rule 2: the entry is a granted access of this region to these keys.
	a, err := parseAccess(req.Entry)
	if err != nil {
		return nil, 0, refuse("entry %d of the access log of %s: %v", proof.Index, r.Name, err)
	}
	refs := make([]keyRef, len(req.Keys))
	for i, w := range req.Keys {
		refs[i] = keyRef{region: r.Name, sum: sha256.Sum256(w)}
	}
	if err := a.allows(req, refs); err != nil {
		return nil, 0, refuse("access record %d of %s: %v", proof.Index, r.Name, err)
	}
	var target *region
	if req.RewrapFor != "" {
		target, ok = s.regions[req.RewrapFor]
		switch {
		case req.RewrapFor == r.Name:
			return nil, 0, refuse("rewrap_for names the region the keys are in, %s", r.Name)
		case !ok:
			return nil, 0, refuse("rewrap_for: custody holds no key for region %q", req.RewrapFor)
		}
	}

	// Rule 4: every key unwraps, or none is released. Keys stay in memory
	// until they are counted. A key unwrapped before comes from the cache,
	// which is only ever asked for keys that rules 1 and 2 allow.
	clearKeys := make([][]byte, len(req.Keys))
	released := false
	defer func() {
		if !released {
			for _, k := range clearKeys {
				clear(k)
			}
		}
	}()
	s.keys.lookup(refs, clearKeys)
	for i, w := range req.Keys {
		if clearKeys[i] != nil {
			continue
		}
		dk, err := r.key.unwrap(w)
		if err != nil {
			return nil, 0, refuse("key %d (%s) was not wrapped to the key of region %s", i, KeyID(w), r.Name)
		}
		clearKeys[i] = dk
		s.keys.put(refs[i], dk)
	}
	out := clearKeys
	if target != nil {
		out = make([][]byte, len(clearKeys))
		for i, dk := range clearKeys {
			if out[i], err = target.key.pub.Wrap(dk); err != nil {
				return nil, 0, fmt.Errorf("rewrapping key %d for %s: %w", i, target.Name, err)
			}
			clear(dk)
		}
	}

	// Rule 3: counted durably before any key leaves.
	if err := s.counts.add(ctx, r.Name, proof.Index, len(req.Keys)); err != nil {
		return nil, 0, fmt.Errorf("%w: counting %d keys for entry %d of %s (checkpoint size %d): %v",
			ErrUnavailable, len(req.Keys), proof.Index, r.Name, cp.Size, err)
	}
	released = true
	return &UnwrapResponse{Keys: out}, proof.Index, nil
}

// access holds the fields of an access record that custody checks.
type access struct {
	v       string
	kind    string
	region  string
	action  string
	outcome string
	keys    []string
	query   string // resource.query
}

// actions are the access actions that may unwrap data keys. "denied" is
// not one: a denied attempt is logged but releases nothing.
var actions = map[string]bool{"read": true, "export": true, "delete": true, "relocate": true, "process": true}

// allows reports why the access record does not allow req, or nil. refs
// are the region and SHA-256 of each of req.Keys.
func (a *access) allows(req *UnwrapRequest, refs []keyRef) error {
	switch {
	case a.v != "1":
		return fmt.Errorf("version %s, want 1", a.v)
	case a.kind != "access":
		return fmt.Errorf("kind %q is not \"access\"", a.kind)
	case a.region != req.Region:
		return fmt.Errorf("records an access in region %q, not %q", a.region, req.Region)
	case a.outcome != "granted":
		return fmt.Errorf("outcome %q is not \"granted\"", a.outcome)
	case !actions[a.action]:
		return fmt.Errorf("action %q does not release data keys", a.action)
	case req.RewrapFor != "" && a.action != "relocate":
		return fmt.Errorf("rewrap_for needs a relocate access, not %q", a.action)
	case req.RewrapFor != "" && !slices.Contains(strings.Fields(a.query), "to="+req.RewrapFor):
		// The relocation's entry names its destination; a key is
		// rewrapped for that region and no other.
		return fmt.Errorf("the relocate access does not name to=%s in its query", req.RewrapFor)
	}
	listed := make(map[string]bool, len(a.keys))
	for _, id := range a.keys {
		listed[id] = true
	}
	for i, ref := range refs {
		// KeyID spelled out from the hash already computed.
		if id := "sha256:" + hex.EncodeToString(ref.sum[:]); !listed[id] {
			return fmt.Errorf("key %d (%s) is not among the keys it lists", i, id)
		}
	}
	return nil
}

// accessFields are the members of an access record that custody reads.
var accessFields = []string{"v", "kind", "region", "action", "outcome", "keys"}

// parseAccess reads the fields custody needs from an access record. It is
// stricter than encoding/json: the entry is one JSON object whose member
// names match exactly and appear once, so that custody cannot read a
// different record than a monitor that takes the first of two "outcome"
// members, or than one that matches names without regard to case, as
// encoding/json does ("Outcome" is refused). Other members are not checked.
func parseAccess(entry []byte) (*access, error) {
	dec := json.NewDecoder(bytes.NewReader(entry))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	a := new(access)
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("not valid JSON: %v", err)
		}
		name, _ := t.(string)
		if seen[name] {
			return nil, fmt.Errorf("member %q appears twice", name)
		}
		for _, f := range accessFields {
			if name != f && strings.EqualFold(name, f) {
				return nil, fmt.Errorf("member %q is not %q", name, f)
			}
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("not valid JSON: %v", err)
		}
		switch name {
		case "v":
			a.v = string(raw)
		case "kind":
			err = jsonString(raw, &a.kind)
		case "region":
			err = jsonString(raw, &a.region)
		case "action":
			err = jsonString(raw, &a.action)
		case "outcome":
			err = jsonString(raw, &a.outcome)
		case "resource":
			var r struct {
				Query string `json:"query"`
			}
			if raw[0] != '{' {
				err = errors.New("not an object")
			} else if err = json.Unmarshal(raw, &r); err == nil {
				a.query = r.Query
			}
		case "keys":
			if raw[0] != '[' {
				err = errors.New("not an array")
			} else {
				err = json.Unmarshal(raw, &a.keys)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("member %q: %v", name, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	for _, f := range accessFields {
		if !seen[f] {
			return nil, fmt.Errorf("no %q member", f)
		}
	}
	return a, nil
}

// jsonString decodes a JSON string, refusing null and other types.
func jsonString(raw json.RawMessage, s *string) error {
	if raw[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(raw, s)
}
