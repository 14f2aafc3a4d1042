package agent_test

// The attacks TUF and Vitrine defend against, each against a real platform
// and a registered agent, with the attacker where that attack happens: in
// the network between the agent and the update repository (an
// http.RoundTripper on the agent's client), or holding keys read from the
// platform's data directory (a compromised server). Each test shows the
// update refused with the sentinel and the check that refused it, nothing
// new installed, and, where it can, that the same setup without the
// attacker installs: the attack is real, the check is what stops it.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/agent"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/update"
)

// attacker is a machine in the middle between an agent and the platform.
// While attack is set, it answers the requests it returns a response for;
// it passes the others on and remembers the last body served at each path.
type attacker struct {
	mu     sync.Mutex
	attack func(path string) *http.Response
	last   map[string][]byte
}

// intercept puts an attacker on a's connection.
func intercept(a *agent.Agent) *attacker {
	m := &attacker{last: map[string][]byte{}}
	a.HTTP.Transport = m
	return m
}

func (m *attacker) set(f func(path string) *http.Response) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attack = f
}

// serve answers the given paths with the given bodies.
func (m *attacker) serve(files map[string][]byte) {
	m.set(func(path string) *http.Response {
		if b, ok := files[path]; ok {
			return answer(b)
		}
		return nil
	})
}

func (m *attacker) lastServed(path string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last[path]
}

func (m *attacker) RoundTrip(r *http.Request) (*http.Response, error) {
	m.mu.Lock()
	attack := m.attack
	m.mu.Unlock()
	if attack != nil {
		if resp := attack(r.URL.Path); resp != nil {
			resp.Request = r
			return resp, nil
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(r.URL.Path, "/updates/") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.last[r.URL.Path] = b
	m.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func answer(b []byte) *http.Response {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(b)), Body: io.NopCloser(bytes.NewReader(b))}
}

// endless is a body that never ends; n counts the bytes read from it.
type endless struct{ n *atomic.Int64 }

func (e endless) Read(p []byte) (int, error) {
	clear(p)
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// installed summarises what a has installed, e.g. "sample-ruledb 1".
func installed(t *testing.T, a *agent.Agent) string {
	t.Helper()
	in, err := a.Installed()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, i := range in {
		s = append(s, i.Release+" "+i.Version)
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// refused runs an update that must fail with sentinel and an error naming
// every one of words, and install nothing. It returns the error.
func refused(t *testing.T, a *agent.Agent, sentinel error, words ...string) error {
	t.Helper()
	before := installed(t, a)
	done, err := a.Update(context.Background())
	if err == nil {
		t.Fatalf("the update succeeded (installed %+v); want it refused", done)
	}
	t.Logf("refused: %v", err)
	if !errors.Is(err, sentinel) {
		t.Errorf("error %q does not match %v", err, sentinel)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if len(done) != 0 {
		t.Errorf("installed %+v during a refused update", done)
	}
	if after := installed(t, a); after != before {
		t.Errorf("installed %q, was %q: the attack changed the installation", after, before)
	}
	return err
}

// updated runs an update that must install want ("release version").
func updated(t *testing.T, a *agent.Agent, want string) {
	t.Helper()
	done, err := a.Update(context.Background())
	if err != nil {
		t.Fatalf("update without the attacker: %v", err)
	}
	var got []string
	for _, d := range done {
		got = append(got, d.Release+" "+d.Version)
	}
	if strings.Join(got, ", ") != want {
		t.Fatalf("installed %v, want %s", got, want)
	}
}

// startPlatform is testPlatform with a TUF expiry; it also returns the
// directory of the offline root keys.
func startPlatform(t *testing.T, exp tufrepo.Expiry) (p *platform.Platform, data, offline string) {
	t.Helper()
	data, offline = filepath.Join(t.TempDir(), "vitrine-data"), filepath.Join(t.TempDir(), "offline")
	p, err := platform.Start(context.Background(), platform.Config{Data: data, Listen: "127.0.0.1:0",
		CheckpointInterval: 100 * time.Millisecond, TUFOfflineDir: offline, TUFExpiry: exp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p, data, offline
}

// publishDB publishes version v of the rule database sample-ruledb, with
// rules text as a.hdb, and returns its bytes.
func publishDB(t *testing.T, p *platform.Platform, v uint64, rules string) []byte {
	t.Helper()
	db := compile(t, v, map[string]string{"a.hdb": rules})
	publish(t, p, "sample-ruledb", fmt.Sprint(v), map[string][]byte{"sample": db})
	return db
}

// get fetches a file of the update repository from the platform itself.
func get(t *testing.T, p *platform.Platform, name string) []byte {
	t.Helper()
	resp, err := http.Get(p.URL() + "/updates/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /updates/%s: %s %s %v", name, resp.Status, b, err)
	}
	return b
}

// repoState is the metadata the platform serves now.
type repoState struct {
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   *metadata.Metadata[metadata.TargetsType]
	// raw bytes by URL path
	raw map[string][]byte
}

func (s *repoState) snapshotPath() string {
	return fmt.Sprintf("/updates/%d.snapshot.json", s.snapshot.Signed.Version)
}

func (s *repoState) targetsPath() string {
	return fmt.Sprintf("/updates/%d.targets.json", s.targets.Signed.Version)
}

func served(t *testing.T, p *platform.Platform) *repoState {
	t.Helper()
	s := &repoState{raw: map[string][]byte{}}
	var err error
	tb := get(t, p, "timestamp.json")
	if s.timestamp, err = metadata.Timestamp().FromBytes(tb); err != nil {
		t.Fatal(err)
	}
	s.raw["/updates/timestamp.json"] = tb
	sn := fmt.Sprintf("%d.snapshot.json", s.timestamp.Signed.Meta["snapshot.json"].Version)
	sb := get(t, p, sn)
	if s.snapshot, err = metadata.Snapshot().FromBytes(sb); err != nil {
		t.Fatal(err)
	}
	s.raw["/updates/"+sn] = sb
	tn := fmt.Sprintf("%d.targets.json", s.snapshot.Signed.Meta["targets.json"].Version)
	tgb := get(t, p, tn)
	if s.targets, err = metadata.Targets().FromBytes(tgb); err != nil {
		t.Fatal(err)
	}
	s.raw["/updates/"+tn] = tgb
	return s
}

// targetURL is the path the agent fetches a target's bytes from.
func targetURL(name string, tf *metadata.TargetFiles) string {
	dir, base := filepath.Split(name)
	return "/updates/targets/" + dir + hex.EncodeToString(tf.Hashes["sha256"]) + "." + base
}

// customOf returns a target's Vitrine custom metadata.
func customOf(t *testing.T, tf *metadata.TargetFiles) *update.Custom {
	t.Helper()
	c, err := update.ParseCustom(*tf.Custom)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stolen are the platform's online keys as an attacker who read its data
// directory holds them.
type stolen struct {
	targets, snapshot, timestamp ed25519.PrivateKey
	release                      *release.Ed25519Key
}

func steal(t *testing.T, data string) *stolen {
	t.Helper()
	var s stolen
	var err error
	for path, k := range map[string]*ed25519.PrivateKey{"release.key": &s.targets, "updates/snapshot.key": &s.snapshot, "updates/timestamp.key": &s.timestamp} {
		if *k, err = tufrepo.LoadKey(filepath.Join(data, path)); err != nil {
			t.Fatal(err)
		}
	}
	if s.release, err = release.LoadOrCreateKey(filepath.Join(data, "release.key")); err != nil {
		t.Fatal(err)
	}
	return &s
}

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], key ed25519.PrivateKey) []byte {
	t.Helper()
	s, err := signature.LoadED25519Signer(key)
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	if _, err := md.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func metaFile(version int64, b []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(b)
	return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

// forge signs, with the stolen keys, the repository's next targets (the
// current ones changed by edit), snapshot and timestamp, and returns them
// by URL path for the attacker to serve.
func (k *stolen) forge(t *testing.T, cur *repoState, edit func(map[string]*metadata.TargetFiles)) map[string][]byte {
	t.Helper()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	targets := metadata.Targets(exp)
	targets.Signed.Version = cur.targets.Signed.Version + 1
	for n, tf := range cur.targets.Signed.Targets {
		targets.Signed.Targets[n] = tf
	}
	edit(targets.Signed.Targets)
	tb := sign(t, targets, k.targets)
	snap := metadata.Snapshot(exp)
	snap.Signed.Version = cur.snapshot.Signed.Version + 1
	snap.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, tb)
	sb := sign(t, snap, k.snapshot)
	ts := metadata.Timestamp(exp)
	ts.Signed.Version = cur.timestamp.Signed.Version + 1
	ts.Signed.Meta["snapshot.json"] = metaFile(snap.Signed.Version, sb)
	return map[string][]byte{
		"/updates/timestamp.json":                                       sign(t, ts, k.timestamp),
		fmt.Sprintf("/updates/%d.snapshot.json", snap.Signed.Version):   sb,
		fmt.Sprintf("/updates/%d.targets.json", targets.Signed.Version): tb,
	}
}

// TestAttackRollback: an attacker replays metadata older than what the
// agent has seen, or, holding the online keys, signs a repository that
// offers only a release older than the installed one.
func TestAttackRollback(t *testing.T) {
	p, data := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	old := served(t, p)
	publishDB(t, p, 2, rulesV2)
	a := register(t, p, "DE")
	atk := intercept(a)
	updated(t, a, "sample-ruledb 2")

	t.Run("timestamp", func(t *testing.T) {
		atk.serve(old.raw)
		defer atk.set(nil)
		refused(t, a, agent.ErrTUF, "timestamp version", "must be >=")
		// The replayed metadata is validly signed and unexpired: an agent
		// that never saw the newer one takes it. Only the version the
		// agent remembers refuses it.
		fresh := register(t, p, "DE")
		intercept(fresh).serve(old.raw)
		updated(t, fresh, "sample-ruledb 1")
	})
	t.Run("snapshot", func(t *testing.T) {
		// With the timestamp key, a new timestamp naming the old snapshot.
		k := steal(t, data)
		cur := served(t, p)
		ts := metadata.Timestamp(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
		ts.Signed.Version = cur.timestamp.Signed.Version + 1
		ts.Signed.Meta["snapshot.json"] = old.timestamp.Signed.Meta["snapshot.json"]
		atk.serve(map[string][]byte{"/updates/timestamp.json": sign(t, ts, k.timestamp), old.snapshotPath(): old.raw[old.snapshotPath()]})
		defer atk.set(nil)
		refused(t, a, agent.ErrTUF, "snapshot version", "must be >=")
	})
	t.Run("release", func(t *testing.T) {
		// With the targets, snapshot and timestamp keys, a repository
		// from which version 2 is gone: everything in it is validly
		// signed, and version 1 is validly logged.
		k := steal(t, data)
		atk.serve(k.forge(t, served(t, p), func(targets map[string]*metadata.TargetFiles) {
			for n := range targets {
				if strings.HasPrefix(n, "sample-ruledb/2/") {
					delete(targets, n)
				}
			}
		}))
		defer atk.set(nil)
		refused(t, a, agent.ErrRollback, "newest version is 1, 2 is installed")
	})
}

// TestAttackFreeze: an attacker keeps serving the timestamp the agent last
// saw, so that it never learns of version 2; once that timestamp expires,
// the agent refuses to go on with it.
func TestAttackFreeze(t *testing.T) {
	p, _, _ := startPlatform(t, tufrepo.Expiry{Targets: time.Hour, Snapshot: 6 * time.Second, Timestamp: 3 * time.Second})
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	atk := intercept(a)
	updated(t, a, "sample-ruledb 1")
	frozen := atk.lastServed("/updates/timestamp.json")
	ts, err := metadata.Timestamp().FromBytes(frozen)
	if err != nil {
		t.Fatal(err)
	}
	publishDB(t, p, 2, rulesV2)
	time.Sleep(time.Until(ts.Signed.Expires) + 100*time.Millisecond)

	atk.serve(map[string][]byte{"/updates/timestamp.json": frozen})
	refused(t, a, agent.ErrTUF, "timestamp.json is expired")
	atk.set(nil)
	updated(t, a, "sample-ruledb 2")
}

// TestAttackMixAndMatch: an attacker serves the current timestamp and
// snapshot with the targets (or the snapshot) of an older state, each
// validly signed.
func TestAttackMixAndMatch(t *testing.T) {
	p, _ := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	old := served(t, p)
	a := register(t, p, "DE")
	atk := intercept(a)
	updated(t, a, "sample-ruledb 1")
	publishDB(t, p, 2, rulesV2)
	cur := served(t, p)

	// The snapshot first: go-tuf keeps a snapshot it verified, and does
	// not fetch it again while the timestamp names its version.
	for _, c := range []struct{ name, path, old string }{
		{"snapshot", cur.snapshotPath(), old.snapshotPath()},
		{"targets", cur.targetsPath(), old.targetsPath()},
	} {
		t.Run(c.name, func(t *testing.T) {
			atk.serve(map[string][]byte{c.path: old.raw[c.old]})
			defer atk.set(nil)
			refused(t, a, agent.ErrTUF, "length/hash verification error")
		})
	}
	updated(t, a, "sample-ruledb 2")
}

// TestAttackArbitraryTarget: an attacker answers the request for a rule
// database with a database of its own, of the same length.
func TestAttackArbitraryTarget(t *testing.T) {
	p, _ := testPlatform(t)
	db := publishDB(t, p, 1, rulesV1)
	cur := served(t, p)
	a := register(t, p, "DE")
	atk := intercept(a)

	evil := compile(t, 1, map[string]string{"a.hdb": "0123456789abcdef0123456789abcdef:10:Evil.AllowAll\n"})
	evil = append(evil, make([]byte, max(0, len(db)-len(evil)))...)[:len(db)]
	name := "sample-ruledb/1/sample"
	atk.serve(map[string][]byte{targetURL(name, cur.targets.Signed.Targets[name]): evil})
	refused(t, a, agent.ErrTUF, "downloading "+name, "hash verification failed")
	atk.set(nil)
	updated(t, a, "sample-ruledb 1")
}

// TestAttackEndlessData: an attacker answers with a body that never ends;
// the agent stops reading at the signed (or, for timestamp.json, go-tuf's
// configured) length.
func TestAttackEndlessData(t *testing.T) {
	p, _ := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	cur := served(t, p)
	name := "sample-ruledb/1/sample"
	for what, path := range map[string]string{"timestamp": "/updates/timestamp.json", "target": targetURL(name, cur.targets.Signed.Targets[name])} {
		t.Run(what, func(t *testing.T) {
			a := register(t, p, "DE")
			var n atomic.Int64
			intercept(a).set(func(p string) *http.Response {
				if p != path {
					return nil
				}
				resp := answer(nil)
				resp.ContentLength, resp.Body = -1, io.NopCloser(endless{&n})
				return resp
			})
			refused(t, a, agent.ErrTUF, "download length mismatch", "is larger than expected")
			if n.Load() > 1<<20 {
				t.Errorf("the agent read %d bytes of the endless body", n.Load())
			}
			t.Logf("read %d bytes of the endless body", n.Load())
		})
	}
	// A Content-Length above the signed length is refused before any
	// of the body is read.
	t.Run("announced", func(t *testing.T) {
		a := register(t, p, "DE")
		var n atomic.Int64
		path := targetURL(name, cur.targets.Signed.Targets[name])
		intercept(a).set(func(p string) *http.Response {
			if p != path {
				return nil
			}
			resp := answer(nil)
			resp.ContentLength, resp.Body = 1<<40, io.NopCloser(endless{&n})
			return resp
		})
		refused(t, a, agent.ErrTUF, "download length mismatch", "length 1099511627776 is larger than expected")
		if n.Load() != 0 {
			t.Errorf("the agent read %d bytes of a body announced too long", n.Load())
		}
	})
}

// TestUpdateCancelled: cancelling an update stops a download that a
// server holds open (go-tuf's Fetcher has no context; the agent's
// requests carry the update's), and installs nothing.
func TestUpdateCancelled(t *testing.T) {
	p, _ := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	cur := served(t, p)
	name := "sample-ruledb/1/sample"
	path := targetURL(name, cur.targets.Signed.Targets[name])
	a := register(t, p, "DE")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The target comes from a server that sends the headers, then
	// nothing until the request is abandoned (or 20 s have passed, so
	// that an agent that ignores the cancellation fails, not hangs).
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "122")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		cancel()
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	}))
	defer stall.Close()
	a.HTTP.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == path {
			r = r.Clone(r.Context())
			r.URL.Host = strings.TrimPrefix(stall.URL, "http://")
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	start := time.Now()
	done, err := a.Update(ctx)
	if !errors.Is(err, context.Canceled) || len(done) != 0 {
		t.Fatalf("update = %+v, %v; want nothing installed and context.Canceled", done, err)
	}
	t.Logf("cancelled after %v: %v", time.Since(start), err)
	if got := installed(t, a); got != "" {
		t.Fatalf("installed %q after a cancelled update", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAttackFastForward: an attacker with the timestamp key signs a
// timestamp of a huge version. The agent takes it (it is validly signed)
// and then refuses every real timestamp as a rollback: updates freeze.
// The operators recover by rotating the root to a new timestamp key; the
// agent, whose stored timestamp no longer verifies under the new root,
// drops it (TUF 5.3.11; go-tuf does so because it takes only a stored
// timestamp that verifies) and updates again.
func TestAttackFastForward(t *testing.T) {
	ctx := context.Background()
	p, data, offline := startPlatform(t, tufrepo.Expiry{})
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	atk := intercept(a)
	updated(t, a, "sample-ruledb 1")

	k := steal(t, data)
	cur := served(t, p)
	const huge = 1 << 40
	ff := metadata.Timestamp(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	ff.Signed.Version = huge
	ff.Signed.Meta["snapshot.json"] = cur.timestamp.Signed.Meta["snapshot.json"]
	atk.serve(map[string][]byte{"/updates/timestamp.json": sign(t, ff, k.timestamp)})
	if done, err := a.Update(ctx); err != nil || len(done) != 0 {
		t.Fatalf("update with the fast-forwarded timestamp: %+v, %v; want it taken, nothing new", done, err)
	}
	atk.set(nil)

	publishDB(t, p, 2, rulesV2)
	refused(t, a, agent.ErrTUF, "timestamp version", fmt.Sprint("must be >= ", huge))

	// Recovery: a new timestamp key in <data>/updates/timestamp.key, and
	// root version 2 naming it, signed with the offline root keys.
	tsKey := filepath.Join(data, "updates", "timestamp.key")
	if err := os.Rename(tsKey, tsKey+".compromised"); err != nil {
		t.Fatal(err)
	}
	newKey, err := tufrepo.NewKey(tsKey)
	if err != nil {
		t.Fatal(err)
	}
	rootKeys, err := tufrepo.LoadRootKeys(offline)
	if err != nil {
		t.Fatal(err)
	}
	root2, err := tufrepo.Rotate(tufrepo.Rotation{Current: p.Updates().LatestRoot(), Keys: rootKeys,
		Online: tufrepo.Online{Timestamp: newKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/updates/root", bytes.NewReader(root2))
	req.Header.Set("Authorization", "Bearer "+p.OperatorToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /updates/root: %s %s", resp.Status, body)
	}
	if v := served(t, p).timestamp.Signed.Version; v >= huge {
		t.Fatalf("the repository's timestamp version is %d; the recovery is meant to go on below %d", v, huge)
	}
	updated(t, a, "sample-ruledb 2")
	// The attacker's timestamp, signed with the old key, is now refused.
	atk.serve(map[string][]byte{"/updates/timestamp.json": sign(t, ff, k.timestamp)})
	refused(t, a, agent.ErrTUF, "Verifying timestamp failed")
}

// forgedRelease is a release of sample-ruledb signed with the release key
// but never appended to the release log.
func forgedRelease(t *testing.T, p *platform.Platform, k *stolen, version string) (*tufrepo.Release, []byte) {
	t.Helper()
	evil := compile(t, 9, map[string]string{"a.hdb": "0123456789abcdef0123456789abcdef:10:Evil.AllowAll\n"})
	art := []release.Artifact{{Name: "sample", SHA256: strings.TrimPrefix(release.Digest(evil), "sha256:")}}
	st, err := release.Statement(art, &release.Build{Recipe: json.RawMessage(`{"name":"sample-ruledb"}`), Source: "dir:.",
		Archive: strings.Repeat("0", 64), Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"},
		BuilderID: p.URL() + "/conveyer", InvocationID: "evil", Started: time.Now(), Finished: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	env, err := release.Sign(context.Background(), k.release, st)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := (&release.Entry{Name: "sample-ruledb", Version: version, Artifacts: art, Envelope: release.Digest(env)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &tufrepo.Release{Name: "sample-ruledb", Version: version, Files: map[string][]byte{"sample": evil}, Envelope: env, Entry: entry}, entry
}

// realProof returns the tlog-proof a published target carries.
func realProof(t *testing.T, p *platform.Platform, name string) *tlog.Proof {
	t.Helper()
	pr, err := tlog.ParseProof([]byte(customOf(t, served(t, p).targets.Signed.Targets[name]).Proof))
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// TestAttackUnloggedRelease: an attacker with the release key (which is
// also the targets key) adds a release to the update repository without
// appending it to the release log. TUF accepts it, the provenance
// signature verifies; the inclusion proof cannot.
func TestAttackUnloggedRelease(t *testing.T) {
	ctx := context.Background()
	p, data := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	updated(t, a, "sample-ruledb 1")
	k := steal(t, data)
	proof := realProof(t, p, "sample-ruledb/1/sample")

	t.Run("proof of another entry", func(t *testing.T) {
		rel, _ := forgedRelease(t, p, k, "2")
		rel.LogIndex, rel.Proof = proof.Index, proof.Marshal()
		if err := p.Updates().AddRelease(ctx, rel); err != nil {
			t.Fatal(err)
		}
		refused(t, a, agent.ErrRejected, "sample-ruledb 2: sample: inclusion", "root hash mismatch")
	})
	t.Run("fabricated index", func(t *testing.T) {
		rel, _ := forgedRelease(t, p, k, "3")
		fake := *proof
		fake.Index = 1000
		rel.LogIndex, rel.Proof = fake.Index, fake.Marshal()
		if err := p.Updates().AddRelease(ctx, rel); err != nil {
			t.Fatal(err)
		}
		refused(t, a, agent.ErrRejected, "sample-ruledb 3: sample: inclusion", "index 1000 is not in a tree")
	})
}

// TestRefusalHoldsNothingBack: a release refused (here one the release log
// does not hold) does not keep the agent from installing the other
// releases of the same update; the error still names the refusal.
func TestRefusalHoldsNothingBack(t *testing.T) {
	ctx := context.Background()
	p, data := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	updated(t, a, "sample-ruledb 1")
	proof := realProof(t, p, "sample-ruledb/1/sample")
	rel, _ := forgedRelease(t, p, steal(t, data), "2")
	rel.LogIndex, rel.Proof = proof.Index, proof.Marshal()
	if err := p.Updates().AddRelease(ctx, rel); err != nil {
		t.Fatal(err)
	}
	publish(t, p, "tool", "1.0.0", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF amd64")})
	done, err := a.Update(ctx)
	if !errors.Is(err, agent.ErrRejected) || !strings.Contains(err.Error(), "sample-ruledb 2: sample: inclusion") {
		t.Errorf("update error = %v, want the unlogged sample-ruledb 2 refused", err)
	}
	if len(done) != 1 || done[0].Release != "tool" {
		t.Errorf("installed %+v, want tool 1.0.0 despite the refusal", done)
	}
	if got := installed(t, a); got != "sample-ruledb 1, tool 1.0.0" {
		t.Errorf("installed %q, want sample-ruledb 1 (not the refused 2) and tool 1.0.0", got)
	}
}

// TestAttackSplitView: an attacker with the release key and the release
// log's key shows the agent a log of its own (a split view) that holds a
// release the real log does not, in a checkpoint the witness never
// cosigned.
func TestAttackSplitView(t *testing.T) {
	ctx := context.Background()
	p, data := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	updated(t, a, "sample-ruledb 1")
	k := steal(t, data)
	genuine := realProof(t, p, "sample-ruledb/1/sample")
	skey, err := os.ReadFile(filepath.Join(data, "logs", "release", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	logKey, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	first := served(t, p).targets.Signed.Targets["sample-ruledb/1/release.json"]
	firstEntry := get(t, p, strings.TrimPrefix(targetURL("sample-ruledb/1/release.json", first), "/updates/"))

	// The fork: the real first entry, then the forged one, in a tree of
	// size 2 whose checkpoint the log key signs.
	fork := func(version string) (*tufrepo.Release, []byte) {
		rel, entry := forgedRelease(t, p, k, version)
		leaf0, leaf1 := tlog.LeafHash(firstEntry), tlog.LeafHash(entry)
		root := rfc6962.DefaultHasher.HashChildren(leaf0, leaf1)
		text := fmt.Sprintf("%s\n2\n%s\n", logKey.Name(), base64.StdEncoding.EncodeToString(root))
		cp, err := note.Sign(&note.Note{Text: text}, logKey)
		if err != nil {
			t.Fatal(err)
		}
		pr := &tlog.Proof{Index: 1, Hashes: [][]byte{leaf0}, Checkpoint: cp}
		rel.LogIndex = 1
		return rel, pr.Marshal()
	}
	t.Run("no cosignature", func(t *testing.T) {
		rel, pr := fork("2")
		rel.Proof = pr
		if err := p.Updates().AddRelease(ctx, rel); err != nil {
			t.Fatal(err)
		}
		refused(t, a, agent.ErrRejected, "sample-ruledb 2: sample: inclusion", "no policy witness cosigned", "witness quorum not met")
	})
	t.Run("borrowed cosignature", func(t *testing.T) {
		// The witness's cosignature of the real checkpoint, appended to
		// the fork's.
		rel, pr := fork("3")
		proof, err := tlog.ParseProof(pr)
		if err != nil {
			t.Fatal(err)
		}
		var cosig []byte
		for _, line := range bytes.SplitAfter(genuine.Checkpoint, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("— ")) && !bytes.HasPrefix(line, []byte("— "+logKey.Name()+" ")) {
				cosig = append(cosig, line...)
			}
		}
		if len(cosig) == 0 {
			t.Fatalf("the real checkpoint has no cosignature:\n%s", genuine.Checkpoint)
		}
		proof.Checkpoint = append(proof.Checkpoint, cosig...)
		rel.Proof = proof.Marshal()
		if err := p.Updates().AddRelease(ctx, rel); err != nil {
			t.Fatal(err)
		}
		refused(t, a, agent.ErrRejected, "sample-ruledb 3: sample: inclusion", "cosignature by witness", "does not verify")
	})
}

// TestAttackTamperedBytes: an attacker changes bytes in signed metadata
// and in a delta; and, holding the online keys, signs a delta that makes
// another database than the one the release log names.
func TestAttackTamperedBytes(t *testing.T) {
	p, data := testPlatform(t)
	v1 := publishDB(t, p, 1, rulesV1)
	a, b := register(t, p, "DE"), register(t, p, "DE")
	atk := intercept(a)
	updated(t, a, "sample-ruledb 1")
	updated(t, b, "sample-ruledb 1")
	publishDB(t, p, 2, rulesV2)
	cur := served(t, p)
	deltaName := "sample-ruledb/2/sample.delta-1"
	delta := cur.targets.Signed.Targets[deltaName]
	if delta == nil {
		t.Fatalf("no target %s", deltaName)
	}

	t.Run("timestamp", func(t *testing.T) {
		// A later expiry, to keep a timestamp fresh: the signature no
		// longer verifies.
		b := cur.raw["/updates/timestamp.json"]
		i := bytes.Index(b, []byte(`"expires":"20`))
		if i < 0 {
			t.Fatalf("no expiry in %s", b)
		}
		b = bytes.Clone(b)
		b[i+len(`"expires":"2`)] = '1'
		atk.serve(map[string][]byte{"/updates/timestamp.json": b})
		defer atk.set(nil)
		refused(t, a, agent.ErrTUF, "Verifying timestamp failed", "not enough signatures")
	})
	t.Run("targets metadata", func(t *testing.T) {
		b := bytes.Clone(cur.raw[cur.targetsPath()])
		b[len(b)/2] ^= 1
		atk.serve(map[string][]byte{cur.targetsPath(): b})
		defer atk.set(nil)
		refused(t, a, agent.ErrTUF, "hash verification failed")
	})
	t.Run("delta", func(t *testing.T) {
		b := bytes.Clone(get(t, p, strings.TrimPrefix(targetURL(deltaName, delta), "/updates/")))
		b[len(b)-1] ^= 1
		atk.serve(map[string][]byte{targetURL(deltaName, delta): b})
		defer atk.set(nil)
		refused(t, a, agent.ErrTUF, "downloading "+deltaName, "hash verification failed")
	})
	t.Run("signed delta to another database", func(t *testing.T) {
		evil := compile(t, 2, map[string]string{"a.hdb": "0123456789abcdef0123456789abcdef:10:Evil.AllowAll\n"})
		d, err := ruledb.Delta(v1, evil)
		if err != nil {
			t.Fatal(err)
		}
		tf, err := metadata.TargetFile().FromBytes(deltaName, d, "sha256")
		if err != nil {
			t.Fatal(err)
		}
		tf.Custom = delta.Custom
		files := steal(t, data).forge(t, cur, func(targets map[string]*metadata.TargetFiles) { targets[deltaName] = tf })
		files[targetURL(deltaName, tf)] = d
		// Another agent: this one keeps the forged timestamp, whose
		// version is above the repository's.
		intercept(b).serve(files)
		refused(t, b, agent.ErrRejected, "the delta from 1 gives", "not the signed full database")
	})
	updated(t, a, "sample-ruledb 2")
}

// TestAttackLayoutVersion: a release, signed and logged, whose version is
// "current" would replace the link to the installed version with its own
// directory, leaving the agent with nothing installed and no version to
// refuse rollbacks below. The agent refuses such a version.
func TestAttackLayoutVersion(t *testing.T) {
	p, _ := testPlatform(t)
	publishDB(t, p, 1, rulesV1)
	a := register(t, p, "DE")
	updated(t, a, "sample-ruledb 1")
	publish(t, p, "sample-ruledb", "current", map[string][]byte{"sample": []byte("not a database")})
	refused(t, a, agent.ErrRejected, `version "current" is a name the install layout keeps for itself`)
}
