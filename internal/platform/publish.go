package platform

import (
	"context"

	"github.com/vitrine-dev/vitrine/internal/fault"

	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/release"
)

// Published is a release once it is done (see [publish.Published]).
type Published = publish.Published

// Publish signs and publishes a release built by the conveyer: see
// [publish.Publisher.Publish].
func (p *Platform) Publish(ctx context.Context, name, version string, artifacts map[string][]byte, source []byte, build *release.Build) (*Published, error) {
	if p.rel == nil {
		return nil, fault.New(fault.ErrNotFound, "this platform publishes nothing: its releases are published by the releases process at "+p.cfg.RemoteReleases.URL)
	}
	return p.rel.publisher.Publish(ctx, name, version, artifacts, source, build)
}
