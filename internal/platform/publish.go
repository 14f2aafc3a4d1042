package platform

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/releases"
	"github.com/vitrine-dev/vitrine/release"
)

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
func (p *Platform) Publish(ctx context.Context, name, version string, artifacts map[string][]byte, source []byte, build *release.Build) (*Published, error) {
	if p.releases.Exists(name, version) {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, releases.ErrExists)
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
	env, err := release.Sign(ctx, p.releaseKey, st)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	entry, err := (&release.Entry{Name: name, Version: version, Artifacts: arts, Envelope: release.Digest(env)}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	l := p.logs["release"]
	idx, err := l.Append(ctx, entry)
	if err != nil {
		return nil, fmt.Errorf("publishing %s %s: appending to the release log: %w", name, version, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := l.AwaitWitnessed(wctx, idx); err != nil {
		return nil, fmt.Errorf("publishing %s %s: release-log entry %d is not in a witnessed checkpoint: %w", name, version, idx, err)
	}
	if err := p.releases.Publish(&releases.Release{Entry: entry, Envelope: env, Source: source, Artifacts: artifacts, Index: idx}); err != nil {
		return nil, fmt.Errorf("publishing %s %s: %w", name, version, err)
	}
	// Endpoints install only through the update repository: a release
	// that cannot be added there is not published (fail closed).
	if err := p.addUpdate(wctx, name, version, artifacts, env, entry, idx); err != nil {
		return nil, fmt.Errorf("publishing %s %s: update repository: %w", name, version, err)
	}
	return &Published{Name: name, Version: version, Artifacts: arts, LogIndex: idx}, nil
}
