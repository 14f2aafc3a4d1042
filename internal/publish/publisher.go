package publish

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Log is the release log as a [Publisher] uses it (a logserver.Log).
type Log interface {
	// Append adds entry once it is durably sequenced, and returns its
	// index.
	Append(ctx context.Context, entry []byte) (uint64, error)
	// AwaitWitnessed returns once a checkpoint that meets the witness
	// policy covers index.
	AwaitWitnessed(ctx context.Context, index uint64) (*tlog.Checkpoint, error)
	// Prove returns the entry's tlog-proof from such a checkpoint.
	Prove(ctx context.Context, index uint64) (*tlog.Proof, error)
}

// Publisher takes releases built by the conveyer to their endpoints:
// signed, in the release log, served under /releases/ (its Store) and in
// the TUF update repository. Its methods are safe for concurrent use; one
// release is published at a time.
type Publisher struct {
	Store   *Store
	Log     Log
	Key     *release.Ed25519Key // signs the provenance (the release key)
	Updates *tufrepo.Repo
	Logger  *slog.Logger

	mu         sync.Mutex // one Publish at a time; guards unrecorded
	unrecorded map[string]unrecorded
}

func (p *Publisher) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// Published is a release once it is done: in a witnessed checkpoint of the
// release log and served under /releases/.
type Published struct {
	Name      string             `json:"name"`
	Version   string             `json:"version"`
	Artifacts []release.Artifact `json:"artifacts"`
	LogIndex  uint64             `json:"log_index"`
}

// Publish signs and publishes a release built by the conveyer: the SLSA
// provenance of build over the artifacts, signed with the release key as a
// DSSE envelope; the release-log entry binding name, version, artifact
// digests and the envelope's digest, appended to the release log; and,
// once a checkpoint the witness cosigned covers the entry, the release's
// files under /releases/ and its targets in the TUF update repository. A
// release is done only then.
//
// Each step can fail after the one before took effect, and an entry once
// logged cannot be taken back, so a release is kept in a durable state
// between them and publishing it again with the same artifacts (a
// reproducible build gives them) goes on from where it stopped:
//
//   - staged before its entry is appended, and the entry's index recorded
//     right after: a failure to get the entry witnessed or to write the
//     release (the witness down, the disk full) is finished with the same
//     entry, not logged a second time;
//   - served under /releases/ before its targets are added to the update
//     repository: a failure there (the repository's disk, a proof the log
//     cannot give) is finished by adding the release as it was logged.
//
// [Publisher.Sync] does the same for every release it finds left in either
// state.
// Only a crash between the append and recording its index (or a restart
// after recording it failed) logs a release twice. Other artifacts under
// a name and version already logged or published are refused with
// [ErrExists].
func (p *Publisher) Publish(ctx context.Context, name, version string, artifacts map[string][]byte, source []byte, build *release.Build) (*Published, error) {
	// One publish at a time: two of the same release would each stage
	// and log it.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Store.Exists(name, version) {
		return p.resumePublish(ctx, name, version, artifacts)
	}
	staged, logged, err := p.Store.Staged(name, version)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	key := stageKey(name, version)
	if u, ok := p.unrecorded[key]; ok && staged != nil && !logged && bytes.Equal(u.entry, staged.Entry) {
		// Logged, but recording the index failed (the disk): it is
		// known here until the process ends.
		staged.Index, logged = u.index, true
		if err := p.Store.Logged(staged.Entry, staged.Index); err == nil {
			delete(p.unrecorded, key)
		}
	}
	if logged {
		if !maps.EqualFunc(staged.Artifacts, artifacts, bytes.Equal) {
			return nil, fmt.Errorf("publishing %s %s: %w: release-log entry %d names it with other artifacts", name, version, ErrExists, staged.Index)
		}
		return p.finishPublish(ctx, staged)
	}
	var arts []release.Artifact
	for _, n := range slices.Sorted(maps.Keys(artifacts)) {
		arts = append(arts, release.Artifact{Name: n, SHA256: strings.TrimPrefix(release.Digest(artifacts[n]), "sha256:")})
	}
	if got := strings.TrimPrefix(release.Digest(source), "sha256:"); build.Archive != got {
		return nil, fmt.Errorf("publishing %s %s: the build records source archive %s, the archive is %s", name, version, build.Archive, got)
	}
	st, err := release.Statement(arts, build)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	env, err := release.Sign(ctx, p.Key, st)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	entry, err := (&release.Entry{Name: name, Version: version, Artifacts: arts, Envelope: release.Digest(env)}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	rel := &Release{Entry: entry, Envelope: env, Source: source, Artifacts: artifacts}
	if err := p.Store.Stage(rel); err != nil {
		return nil, fmt.Errorf("publishing %s %s: staging: %w", name, version, err)
	}
	if rel.Index, err = p.Log.Append(ctx, entry); err != nil {
		return nil, fmt.Errorf("publishing %s %s: appending to the release log: %w", name, version, err)
	}
	if err := p.Store.Logged(entry, rel.Index); err != nil {
		// The entry is logged whatever happens now. Going on publishes
		// it with its index (the published copy records it); if that
		// fails too, a publish again in this process finds the index
		// here. Only a restart before then loses it.
		p.logger().Warn("publish: recording the release-log index of a staged release failed", "release", name, "version", version, "log_index", rel.Index, "err", err)
		if p.unrecorded == nil {
			p.unrecorded = map[string]unrecorded{}
		}
		p.unrecorded[key] = unrecorded{entry: entry, index: rel.Index}
	}
	return p.finishPublish(ctx, rel)
}

// stageKey keys p.unrecorded.
func stageKey(name, version string) string { return name + "\x00" + version }

// unrecorded is a staged release's entry, logged at index, whose index
// could not be written to the stage.
type unrecorded struct {
	entry []byte
	index uint64
}

// finishPublish publishes a release whose entry is logged at rel.Index:
// once a witnessed checkpoint covers it, under /releases/, then in the
// update repository.
func (p *Publisher) finishPublish(ctx context.Context, rel *Release) (*Published, error) {
	e, err := release.ParseEntry(rel.Entry)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.Log.AwaitWitnessed(wctx, rel.Index); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Not witnessed in time: the release stays staged, Sync
			// finishes it, and the same request may succeed later.
			err = backoff.WithRetryAfter(fault.Mark(fault.ErrUnavailable, err), 10*time.Second)
		}
		return nil, fmt.Errorf("publishing %s %s: release-log entry %d is not in a witnessed checkpoint: %w", e.Name, e.Version, rel.Index, err)
	}
	if err := p.Store.Publish(rel); err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", e.Name, e.Version, err)
	}
	delete(p.unrecorded, stageKey(e.Name, e.Version))
	// Endpoints install only through the update repository: a release
	// that cannot be added there is not published (fail closed).
	if err := p.addUpdate(wctx, e.Name, e.Version, rel.Artifacts, rel.Envelope, rel.Entry, rel.Index); err != nil {
		return nil, fmt.Errorf("publishing %s %s: update repository: %w", e.Name, e.Version, err)
	}
	return &Published{Name: e.Name, Version: e.Version, Artifacts: e.Artifacts, LogIndex: rel.Index}, nil
}

// resumePublish finishes a release that is published under /releases/ but
// missing from the update repository, if artifacts are the ones it was
// published with; otherwise the release exists.
func (p *Publisher) resumePublish(ctx context.Context, name, version string, artifacts map[string][]byte) (*Published, error) {
	exists := fmt.Errorf("publishing %s %s: %w", name, version, ErrExists)
	if p.Finished(name, version) {
		return nil, exists
	}
	stored, err := p.Store.Load(name, version)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	if !maps.EqualFunc(stored.Artifacts, artifacts, bytes.Equal) {
		return nil, exists
	}
	if err := p.Store.Unstage(name, version); err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	pub, err := p.addStored(ctx, stored)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: update repository: %w", name, version, err)
	}
	return pub, nil
}

// addStored adds a release published under /releases/ to the update
// repository, as it was logged, and returns it. A release another call
// added meanwhile is done, not an error.
func (p *Publisher) addStored(ctx context.Context, r *Release) (*Published, error) {
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = p.addUpdate(wctx, e.Name, e.Version, r.Artifacts, r.Envelope, r.Entry, r.Index)
	if err != nil && !(errors.Is(err, tufrepo.ErrExists) && p.Updates.Has(e.Name, e.Version)) {
		return nil, err
	}
	return &Published{Name: e.Name, Version: e.Version, Artifacts: e.Artifacts, LogIndex: r.Index}, nil
}

// Sync finishes what failures or crashes left of publishes (see
// [Publisher.Publish]): every staged release whose entry is logged is published, and
// every release published under /releases/ that the update repository
// lacks is added to it, oldest log entry first, so that each rule
// database's delta is from the version before it. It returns how many it
// finished, and the errors of those it could not.
func (p *Publisher) Sync(ctx context.Context) (int, error) {
	var n int
	var errs []error
	staged, err := p.Store.StagedLogged()
	if err != nil {
		return 0, err
	}
	for _, r := range staged {
		e, err := release.ParseEntry(r.Entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.Store.Exists(e.Name, e.Version) {
			// Published, then stopped before the stage was removed.
			if err := p.Store.Unstage(e.Name, e.Version); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if _, err := p.finishPublish(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("staged release-log entry %d: %w", r.Index, err))
			continue
		}
		p.logger().Info("published a release logged before a failure", "release", e.Name, "version", e.Version, "log_index", r.Index)
		n++
	}
	list, err := p.Store.List()
	if err != nil {
		return n, errors.Join(append(errs, err)...)
	}
	slices.SortFunc(list, func(a, b Listed) int { return cmp.Compare(a.LogIndex, b.LogIndex) })
	for _, l := range list {
		if p.Updates.Has(l.Name, l.Version) {
			continue
		}
		r, err := p.Store.Load(l.Name, l.Version)
		if err == nil {
			_, err = p.addStored(ctx, r)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", l.Name, l.Version, err))
			continue
		}
		p.logger().Info("update repository: added a release published before it", "release", l.Name, "version", l.Version, "log_index", l.LogIndex)
		n++
	}
	return n, errors.Join(errs...)
}

// Finished reports whether a release is published and in the update
// repository: done, so that publishing it again is refused.
func (p *Publisher) Finished(name, version string) bool {
	return p.Store.Exists(name, version) && p.Updates.Has(name, version)
}

// addUpdate adds a published release to the update repository, with the
// entry's tlog-proof from a witnessed checkpoint, and a delta from the
// previous version for each artifact that is a rule database.
func (p *Publisher) addUpdate(ctx context.Context, name, version string, artifacts map[string][]byte, env, entry []byte, idx uint64) error {
	proof, err := p.Log.Prove(ctx, idx)
	if err != nil {
		return fmt.Errorf("proving release-log entry %d: %w", idx, err)
	}
	var deltas []tufrepo.Delta
	for _, a := range slices.Sorted(maps.Keys(artifacts)) {
		if _, err := ruledb.Open(artifacts[a]); err != nil {
			continue // not a rule database
		}
		from, old, ok, err := p.Updates.Previous(name, a)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		d, err := ruledb.Delta(old, artifacts[a])
		if errors.Is(err, ruledb.ErrNotNewer) {
			continue // no delta to an older or the same database
		}
		if err != nil {
			return fmt.Errorf("delta of %s from version %s: %w", a, from, err)
		}
		deltas = append(deltas, tufrepo.Delta{Artifact: a, From: from, Data: d})
	}
	return p.Updates.AddRelease(ctx, &tufrepo.Release{
		Name: name, Version: version, Files: artifacts, Envelope: env, Entry: entry,
		LogIndex: idx, Proof: proof.Marshal(), Deltas: deltas,
	})
}
