package custody

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"testing"
)

func TestUnwrapRoundTrip(t *testing.T) {
	e := newEnv(t)
	dataKeys, wrapped := e.wrap("zurich", 3)
	idx, proofs := e.prove("zurich", record("zurich", "read", "granted", wrapped))

	resp, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: record("zurich", "read", "granted", wrapped), Proof: proofs[0], Keys: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Keys) != len(dataKeys) {
		t.Fatalf("got %d keys, want %d", len(resp.Keys), len(dataKeys))
	}
	for i := range dataKeys {
		if !bytes.Equal(resp.Keys[i], dataKeys[i]) {
			t.Errorf("key %d = %x, want %x", i, resp.Keys[i], dataKeys[i])
		}
	}
	// A subset of the listed keys, in another order, is fine too.
	resp, err = e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: record("zurich", "read", "granted", wrapped), Proof: proofs[0], Keys: [][]byte{wrapped[2], wrapped[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.Keys[0], dataKeys[2]) || !bytes.Equal(resp.Keys[1], dataKeys[0]) {
		t.Error("keys not returned in request order")
	}
	got, err := e.svc.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[uint64]int64{"zurich": {idx[0]: 5}}
	if !equalCounts(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
}

func equalCounts(a, b map[string]map[uint64]int64) bool {
	return maps.EqualFunc(a, b, func(x, y map[uint64]int64) bool { return maps.Equal(x, y) })
}

// TestRefusals checks every rule of Unwrap against real proofs: each case
// differs from a request that succeeds (checked last) in one way, and none
// releases a key or counts.
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	_, wrapped := e.wrap("zurich", 2)
	_, other := e.wrap("zurich", 1)
	_, moscowKeys := e.wrap("moscow", 1)
	truncated := wrapped[0][:len(wrapped[0])-1]

	good := record("zurich", "read", "granted", wrapped)
	replace := func(old, new string) []byte { return bytes.Replace(good, []byte(old), []byte(new), 1) }
	entries := map[string][]byte{
		"good":               good,
		"another entry":      record("zurich", "read", "granted", other),
		"denied outcome":     record("zurich", "read", "denied", wrapped),
		"denied action":      record("zurich", "denied", "granted", wrapped),
		"unknown action":     record("zurich", "browse", "granted", wrapped),
		"other region":       record("moscow", "read", "granted", wrapped),
		"kind":               replace(`"kind":"access"`, `"kind":"release"`),
		"version":            replace(`"v":1`, `"v":2`),
		"no version":         replace(`"v":1,`, ``),
		"no keys member":     replace(`"keys":`, `"keyz":`),
		"keys not array":     replace(`"keys":[`, `"keys":"x","k":[`),
		"case folded":        replace(`"outcome":"granted"`, `"Outcome":"granted"`),
		"duplicate":          replace(`"kind":"access"`, `"outcome":"denied","kind":"access"`),
		"null outcome":       replace(`"outcome":"granted"`, `"outcome":null`),
		"trailing data":      append(bytes.Clone(good), `{}`...),
		"not json":           []byte("read zurich granted"),
		"relocate":           record("zurich", "relocate", "granted", wrapped),
		"relocate to zurich": bytes.Replace(record("zurich", "relocate", "granted", wrapped), []byte("to=moscow"), []byte("to=zurich"), 1),
		"foreign key":        record("zurich", "read", "granted", [][]byte{wrapped[0], moscowKeys[0]}),
		"truncated key":      record("zurich", "read", "granted", [][]byte{wrapped[0], truncated}),
	}
	var names []string
	var list [][]byte
	for name, entry := range entries {
		names = append(names, name)
		list = append(list, entry)
	}
	_, proofList := e.prove("zurich", list...)
	proofs := make(map[string][]byte)
	for i, name := range names {
		proofs[name] = proofList[i]
	}
	// A moscow log entry that claims to be a zurich access.
	_, moscowProofs := e.prove("moscow", good)

	req := func(entry string, edit func(*UnwrapRequest)) *UnwrapRequest {
		r := &UnwrapRequest{Region: "zurich", Entry: entries[entry], Proof: proofs[entry], Keys: wrapped}
		if edit != nil {
			edit(r)
		}
		return r
	}
	tests := []struct {
		name string
		req  *UnwrapRequest
		want error
	}{
		// Rule 1: the proof.
		{"no proof", req("good", func(r *UnwrapRequest) { r.Proof = nil }), ErrRefused},
		{"garbage proof", req("good", func(r *UnwrapRequest) { r.Proof = []byte("c2sp.org/tlog-proof@v1\nnonsense\n") }), ErrRefused},
		{"proof of another entry", req("good", func(r *UnwrapRequest) { r.Proof = proofs["another entry"] }), ErrRefused},
		{"entry changed after proof", req("good", func(r *UnwrapRequest) { r.Entry = append(bytes.Clone(good), ' ') }), ErrRefused},
		{"checkpoint not cosigned", req("good", func(r *UnwrapRequest) { r.Proof = stripCosignatures(t, proofs["good"], logOrigin("zurich")) }), ErrRefused},
		{"proof from another region's log", req("good", func(r *UnwrapRequest) { r.Proof = moscowProofs[0] }), ErrRefused},
		{"unknown region", req("good", func(r *UnwrapRequest) { r.Region = "paris" }), ErrRefused},
		// Rule 2: the access record.
		{"outcome denied", req("denied outcome", nil), ErrRefused},
		{"action denied", req("denied action", nil), ErrRefused},
		{"unknown action", req("unknown action", nil), ErrRefused},
		{"record of another region", req("other region", nil), ErrRefused},
		{"not an access", req("kind", nil), ErrRefused},
		{"version 2", req("version", nil), ErrRefused},
		{"no version", req("no version", nil), ErrRefused},
		{"no keys member", req("no keys member", nil), ErrRefused},
		{"keys not an array", req("keys not array", nil), ErrRefused},
		{"member name case", req("case folded", nil), ErrRefused},
		{"duplicate member", req("duplicate", nil), ErrRefused},
		{"null outcome", req("null outcome", nil), ErrRefused},
		{"trailing data", req("trailing data", nil), ErrRefused},
		{"not json", req("not json", nil), ErrRefused},
		{"key not listed", req("good", func(r *UnwrapRequest) { r.Keys = append(r.Keys, other[0]) }), ErrRefused},
		{"rewrap without relocate", req("good", func(r *UnwrapRequest) { r.RewrapFor = "moscow" }), ErrRefused},
		{"rewrap for same region", req("relocate", func(r *UnwrapRequest) { r.RewrapFor = "zurich" }), ErrRefused},
		{"rewrap for unknown region", req("relocate", func(r *UnwrapRequest) { r.RewrapFor = "paris" }), ErrRefused},
		{"rewrap for a region the entry does not name", req("relocate to zurich", func(r *UnwrapRequest) { r.RewrapFor = "moscow" }), ErrRefused},
		// Rule 4: keys that do not unwrap.
		{"key of another region", req("foreign key", func(r *UnwrapRequest) { r.Keys = [][]byte{wrapped[0], moscowKeys[0]} }), ErrRefused},
		{"truncated key", req("truncated key", func(r *UnwrapRequest) { r.Keys = [][]byte{wrapped[0], truncated} }), ErrRefused},
		// Malformed requests.
		{"no keys", req("good", func(r *UnwrapRequest) { r.Keys = nil }), ErrMalformed},
		{"too many keys", req("good", func(r *UnwrapRequest) { r.Keys = make([][]byte, MaxKeys+1) }), ErrMalformed},
		{"no region", req("good", func(r *UnwrapRequest) { r.Region = "" }), ErrMalformed},
		{"nil request", nil, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.svc.Unwrap(t.Context(), tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unwrap error = %v, want %v", err, tc.want)
			}
			if resp != nil {
				t.Errorf("Unwrap returned keys with error %v", err)
			}
			t.Log(err)
		})
	}
	if got, err := e.svc.Counts(); err != nil || len(got) != 0 {
		t.Fatalf("after refusals, Counts = %v, %v; want none", got, err)
	}

	// The unchanged request, and the relocate one with rewrapping, succeed:
	// the refusals above are for the reason each case names.
	for _, r := range []*UnwrapRequest{req("good", nil), req("relocate", func(r *UnwrapRequest) { r.RewrapFor = "moscow" })} {
		if _, err := e.svc.Unwrap(t.Context(), r); err != nil {
			t.Fatalf("control request: %v", err)
		}
	}
}

// TestRelocate moves keys from zurich to moscow: a relocate access in
// zurich's log rewraps them for moscow, and an access in moscow's log then
// unwraps them there.
func TestRelocate(t *testing.T) {
	e := newEnv(t)
	dataKeys, wrapped := e.wrap("zurich", 2)
	relocate := record("zurich", "relocate", "granted", wrapped)
	zidx, zproofs := e.prove("zurich", relocate)
	resp, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: relocate, Proof: zproofs[0], Keys: wrapped, RewrapFor: "moscow"})
	if err != nil {
		t.Fatal(err)
	}
	moved := resp.Keys
	for i, w := range moved {
		if len(w) != WrappedKeySize || bytes.Equal(w, dataKeys[i]) || bytes.Equal(w, wrapped[i]) {
			t.Fatalf("rewrapped key %d is not a new wrapped key", i)
		}
	}

	// Zurich's proof does not open moscow's keys, and zurich cannot unwrap
	// them under its own key.
	if _, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "moscow", Entry: relocate, Proof: zproofs[0], Keys: moved}); !errors.Is(err, ErrRefused) {
		t.Errorf("unwrapping in moscow with zurich's proof: %v, want refusal", err)
	}
	reloc2 := record("zurich", "relocate", "granted", moved)
	_, zp2 := e.prove("zurich", reloc2)
	if _, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: reloc2, Proof: zp2[0], Keys: moved}); !errors.Is(err, ErrRefused) {
		t.Errorf("unwrapping moscow's keys as zurich: %v, want refusal", err)
	}

	arrive := record("moscow", "relocate", "granted", moved)
	midx, mproofs := e.prove("moscow", arrive)
	resp, err = e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "moscow", Entry: arrive, Proof: mproofs[0], Keys: moved})
	if err != nil {
		t.Fatal(err)
	}
	for i := range dataKeys {
		if !bytes.Equal(resp.Keys[i], dataKeys[i]) {
			t.Errorf("relocated key %d = %x, want %x", i, resp.Keys[i], dataKeys[i])
		}
	}
	got, err := e.svc.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[uint64]int64{"zurich": {zidx[0]: 2}, "moscow": {midx[0]: 2}}
	if !equalCounts(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
}

// TestCountsDurable unwraps, reopens custody on the same directory, and
// finds the same keys and the counts of every unwrap, reuse included.
func TestCountsDurable(t *testing.T) {
	e := newEnv(t)
	dataKeys, wrapped := e.wrap("zurich", 3)
	_, mwrapped := e.wrap("moscow", 1)
	r1 := record("zurich", "read", "granted", wrapped)
	r2 := record("zurich", "export", "granted", wrapped[:1])
	zidx, zp := e.prove("zurich", r1, r2)
	m1 := record("moscow", "process", "granted", mwrapped)
	midx, mp := e.prove("moscow", m1)

	reqs := []*UnwrapRequest{
		{Region: "zurich", Entry: r1, Proof: zp[0], Keys: wrapped},
		{Region: "zurich", Entry: r1, Proof: zp[0], Keys: wrapped[1:2]}, // the same entry again
		{Region: "zurich", Entry: r2, Proof: zp[1], Keys: wrapped[:1]},
		{Region: "moscow", Entry: m1, Proof: mp[0], Keys: mwrapped},
	}
	for _, r := range reqs {
		if _, err := e.svc.Unwrap(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	pub := e.svc.regions["zurich"].key.pub.String()
	if err := e.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Unwrap(t.Context(), reqs[0]); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Unwrap after Close = %v, want ErrUnavailable", err)
	}

	s := e.open()
	want := map[string]map[uint64]int64{"zurich": {zidx[0]: 4, zidx[1]: 1}, "moscow": {midx[0]: 1}}
	got, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if !equalCounts(got, want) {
		t.Errorf("Counts after reopening = %v, want %v", got, want)
	}
	if k, _ := s.PublicKey("zurich"); k.String() != pub {
		t.Error("zurich's key changed across Open")
	}
	resp, err := s.Unwrap(t.Context(), reqs[0])
	if err != nil || !bytes.Equal(resp.Keys[0], dataKeys[0]) {
		t.Fatalf("unwrap after reopening: %v", err)
	}
}

// TestCountFailureReleasesNothing makes the count database fail for real
// and checks that no key leaves.
func TestCountFailureReleasesNothing(t *testing.T) {
	defer func(old int) { busyTimeoutMillis = old }(busyTimeoutMillis)
	busyTimeoutMillis = 200
	e := newEnv(t)
	_, wrapped := e.wrap("zurich", 1)
	entry := record("zurich", "read", "granted", wrapped)
	idx, proofs := e.prove("zurich", entry)
	req := &UnwrapRequest{Region: "zurich", Entry: entry, Proof: proofs[0], Keys: wrapped}

	t.Run("locked", func(t *testing.T) {
		// Another process holds the database's write lock.
		other, err := openCounts(context.Background(), e.cfg.Dir+"/counts.db")
		if err != nil {
			t.Fatal(err)
		}
		defer other.close()
		conn, err := other.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		resp, err := e.svc.Unwrap(t.Context(), req)
		if !errors.Is(err, ErrUnavailable) || resp != nil {
			t.Fatalf("Unwrap with the count database locked = %v, %v; want ErrUnavailable and no keys", resp, err)
		}
		t.Log(err)
		if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Unwrap(t.Context(), req); err != nil {
			t.Fatalf("Unwrap once the lock is released: %v", err)
		}
		got, err := e.svc.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if want := (map[string]map[uint64]int64{"zurich": {idx[0]: 1}}); !equalCounts(got, want) {
			t.Errorf("Counts = %v, want %v (the failed unwrap must not count)", got, want)
		}
	})
	t.Run("closed", func(t *testing.T) {
		// The database handle is gone under a running service.
		if err := e.svc.counts.db.Close(); err != nil {
			t.Fatal(err)
		}
		resp, err := e.svc.Unwrap(t.Context(), req)
		if !errors.Is(err, ErrUnavailable) || resp != nil {
			t.Fatalf("Unwrap with the count database closed = %v, %v; want ErrUnavailable and no keys", resp, err)
		}
	})
}

func TestParseAccess(t *testing.T) {
	entry := record("zurich", "read", "granted", [][]byte{[]byte("a"), []byte("b")})
	a, err := parseAccess(entry)
	if err != nil {
		t.Fatal(err)
	}
	want := access{v: "1", kind: "access", region: "zurich", action: "read", outcome: "granted", keys: []string{KeyID([]byte("a")), KeyID([]byte("b"))}}
	if a.v != want.v || a.kind != want.kind || a.region != want.region || a.action != want.action || a.outcome != want.outcome ||
		len(a.keys) != 2 || a.keys[0] != want.keys[0] || a.keys[1] != want.keys[1] {
		t.Errorf("parseAccess = %+v, want %+v", *a, want)
	}
	// Trailing white space (a newline-terminated entry) is fine.
	if _, err := parseAccess(append(bytes.Clone(entry), '\n')); err != nil {
		t.Errorf("entry with a trailing newline: %v", err)
	}
	for _, bad := range []string{"", "{", "[]", "null", `{"v":1}`, `{"v":1,"kind":"access"`, "{} x"} {
		if _, err := parseAccess([]byte(bad)); err == nil {
			t.Errorf("parseAccess(%q) succeeded", bad)
		}
	}
}
