package center

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// A Rebuilder is an independent rebuilder whose verdicts the Center shows
// (docs/design/rebuilds.md): its base URL, the prefix of the /rebuilds/ it
// serves, and the public key its verdicts verify under. The key is given
// to the Center by whoever runs it (vitrine center --rebuilder URL,KEYFILE),
// obtained from the rebuilder's operator out of band: the key a rebuilder
// serves at /rebuilds/key proves nothing about who signed, and a
// platform's discovery document does not name rebuilders, since a
// rebuilder is there to check the platform, not to be chosen by it.
type Rebuilder struct {
	URL string
	Key release.PublicKey
}

// RebuildState is one rebuilder's verdict on a release, as the Center
// read and checked it.
type RebuildState struct {
	// Rebuilder is the rebuilder's base URL, KeyID the id of the key the
	// Center pinned for it.
	Rebuilder string `json:"rebuilder"`
	KeyID     string `json:"key_id"`
	// Found: the rebuilder lists a verdict on this release-log entry.
	// Verified: that verdict verifies under the pinned key and is about
	// this entry (its index, its bytes' digest, name, version and
	// artifacts); Problem says otherwise, or that the rebuilder could
	// not be read.
	Found    bool   `json:"found"`
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
	// What a verified verdict says: who rebuilt (the rebuilder's id in
	// its verdicts), whether every artifact reproduced, the artifacts'
	// digests as released and as rebuilt, the files that differ, the
	// rebuild's error, the toolchains and when it finished.
	ID         string             `json:"id,omitempty"`
	Reproduced bool               `json:"reproduced"`
	Artifacts  []rebuild.Artifact `json:"artifacts,omitempty"`
	Differ     []string           `json:"differ,omitempty"`
	Error      string             `json:"error,omitempty"`
	Toolchain  rebuild.Toolchain  `json:"toolchain"`
	Finished   time.Time          `json:"finished"`
	// URL is the verdict's address, for anyone to check it themselves
	// (vitrine rebuild verify).
	URL string `json:"url,omitempty"`
}

// maxRebuildIndex and maxVerdict bound what a rebuilder's answers may
// take; rebuilderTimeout bounds how long a page waits for one.
const (
	maxRebuildIndex  = 16 << 20
	maxVerdict       = 1 << 20
	rebuilderTimeout = 10 * time.Second
)

// rebuildIndexes reads every known rebuilder's index, at once; an index
// that could not be read is nil, with its error.
func (c *Center) rebuildIndexes(ctx context.Context) ([]*rebuilder.Index, []error) {
	idx, errs := make([]*rebuilder.Index, len(c.cfg.Rebuilders)), make([]error, len(c.cfg.Rebuilders))
	var wg sync.WaitGroup
	for i, rb := range c.cfg.Rebuilders {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, rebuilderTimeout)
			defer cancel()
			var x rebuilder.Index
			if err := client.GetJSON(ctx, c.noRedirects(), strings.TrimSuffix(rb.URL, "/")+"/rebuilds/", maxRebuildIndex, &x); err != nil {
				errs[i] = err
				return
			}
			idx[i] = &x
		})
	}
	wg.Wait()
	return idx, errs
}

// verdicts returns every known rebuilder's verdict on the release e,
// logged at index as entry, each checked under the rebuilder's pinned key
// and against the entry. idx and idxErr are rebuildIndexes' answers.
func (c *Center) verdicts(ctx context.Context, idx []*rebuilder.Index, idxErr []error, index uint64, entry []byte, e *release.Entry) []RebuildState {
	out := make([]RebuildState, len(c.cfg.Rebuilders))
	var wg sync.WaitGroup
	for i, rb := range c.cfg.Rebuilders {
		id, _ := rb.Key.KeyID()
		out[i] = RebuildState{Rebuilder: rb.URL, KeyID: id}
		if idx[i] == nil {
			out[i].Problem = fmt.Sprintf("the rebuilder's list of verdicts could not be read: %v", idxErr[i])
			continue
		}
		var listed *rebuilder.Listed
		for j, l := range idx[i].Verdicts {
			if l.LogIndex == index && l.Name == e.Name && l.Version == e.Version {
				listed = &idx[i].Verdicts[j] // the latest
			}
		}
		if listed == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, rebuilderTimeout)
			defer cancel()
			out[i] = c.verdict(ctx, rb, out[i], listed.URL, index, entry, e)
		})
	}
	wg.Wait()
	return out
}

// verdict reads and checks the verdict a rebuilder lists at ref.
func (c *Center) verdict(ctx context.Context, rb Rebuilder, st RebuildState, ref string, index uint64, entry []byte, e *release.Entry) RebuildState {
	st.Found = true
	u, err := rebuilder.VerdictURL(rb.URL, ref)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	st.URL = u
	env, err := client.Get(ctx, c.noRedirects(), u, maxVerdict)
	if err != nil {
		st.Problem = "the verdict could not be read: " + err.Error()
		return st
	}
	v, err := rebuild.VerifyVerdict(ctx, env, rb.Key)
	if err != nil {
		st.Problem = "the verdict does not verify under the key pinned for this rebuilder: " + err.Error()
		return st
	}
	r := v.Release
	switch {
	case r.LogIndex != index || r.Entry != release.Digest(entry):
		st.Problem = fmt.Sprintf("the verdict is about release-log entry %d (%s), not this one (%d, %s)", r.LogIndex, r.Entry, index, release.Digest(entry))
		return st
	case r.Name != e.Name || r.Version != e.Version || r.Envelope != e.Envelope || !release.SameArtifacts(v.Subjects, e.Artifacts):
		st.Problem = "the verdict names another release, provenance or artifacts than this release-log entry"
		return st
	}
	st.Verified, st.ID, st.Reproduced, st.Artifacts, st.Differ, st.Error, st.Toolchain, st.Finished =
		true, v.Rebuilder, v.Reproduced, v.Artifacts, v.Differ, v.Error, v.Toolchain, v.Finished
	return st
}

// noRedirects is the Center's client, following no redirect: a
// rebuilder's answers must come from the rebuilder.
func (c *Center) noRedirects() *http.Client {
	hc := *c.cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// RebuildSummary is, on the overview, what the known rebuilders say of a
// release: how many reproduced it and how many verdicts say it did not
// (verified verdicts only), and how many rebuilders have no verdict on it
// or one the Center could not check.
type RebuildSummary struct {
	Rebuilders    int `json:"rebuilders"`
	Reproduced    int `json:"reproduced"`
	NotReproduced int `json:"not_reproduced"`
	Pending       int `json:"pending"`
	Unverified    int `json:"unverified"`
}

func summarizeRebuilds(states []RebuildState) RebuildSummary {
	s := RebuildSummary{Rebuilders: len(states)}
	for _, st := range states {
		switch {
		case st.Verified && st.Reproduced:
			s.Reproduced++
		case st.Verified:
			s.NotReproduced++
		case st.Problem != "":
			s.Unverified++
		default:
			s.Pending++
		}
	}
	return s
}

// ParseRebuilder reads a --rebuilder flag's URL,KEYFILE: the rebuilder's
// base URL (http or https) and its public key (PEM), as read by readFile.
func ParseRebuilder(spec string, readFile func(string) ([]byte, error)) (Rebuilder, error) {
	raw, keyFile, ok := strings.Cut(spec, ",")
	u, err := url.Parse(raw)
	if !ok || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || keyFile == "" {
		return Rebuilder{}, fmt.Errorf("rebuilder %q: want URL,KEYFILE: the rebuilder's base URL (http or https) and its public key (PEM)", spec)
	}
	b, err := readFile(keyFile)
	if err != nil {
		return Rebuilder{}, fmt.Errorf("rebuilder %s: %w", raw, err)
	}
	key, err := release.ParsePublicKey(b)
	if err != nil {
		return Rebuilder{}, fmt.Errorf("rebuilder %s: its key %s: %w", raw, keyFile, err)
	}
	return Rebuilder{URL: strings.TrimSuffix(raw, "/"), Key: key}, nil
}
