package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
)

func runReleaseVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "release verify", "[--platform URL] [--name NAME] ARTIFACT")
	platform := fs.String("platform", cli.DefaultPlatform(), "the platform whose discovery document names the release log, the witness policy, the releases and the release key")
	name := fs.String("name", "", "the artifact's name in the release (default: the file's base name)")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	path := fs.Arg(0)
	artifact, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = filepath.Base(path)
	}
	d, err := fetchDiscovery(ctx, *platform)
	if err != nil {
		return err
	}
	key, err := release.ParsePublicKey([]byte(d.Releases.Key))
	if err != nil {
		return fmt.Errorf("the discovery document's release key: %w", err)
	}
	t := target{platform: *platform, log: "release"}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return err
	}
	// The release that ships the artifact, found by name in the index.
	var index struct{ Releases []publish.Listed }
	if err := getJSON(ctx, d.Releases.URL, &index); err != nil {
		return err
	}
	digest := release.Digest(artifact)
	for _, l := range index.Releases {
		base := strings.TrimSuffix(d.Releases.URL, "/") + "/" + l.URL
		entry, err := get(ctx, base+"release.json")
		if err != nil {
			return err
		}
		en, err := release.ParseEntry(entry)
		if err != nil {
			continue // checked below, if it is the one
		}
		names := false
		for _, a := range en.Artifacts {
			names = names || a.Name == *name
		}
		if !names {
			continue
		}
		envelope, err := get(ctx, base+"provenance.json")
		if err != nil {
			return err
		}
		// The inclusion proof, built here from the log's tiles under its
		// latest checkpoint that meets the witness policy.
		raw, err := r.fetcher.ReadCheckpoint(ctx)
		if err != nil {
			return err
		}
		cp, err := r.policy.VerifyCheckpoint(raw, r.verifier)
		if err != nil {
			return fmt.Errorf("inclusion: the release log's checkpoint: %w", err)
		}
		if l.LogIndex >= cp.Size {
			return fmt.Errorf("inclusion: release %s %s is at index %d, beyond the witnessed checkpoint (%d entries)", l.Name, l.Version, l.LogIndex, cp.Size)
		}
		hashes, err := tlog.InclusionProof(ctx, r.fetcher, l.LogIndex, cp.Size)
		if err != nil {
			return fmt.Errorf("inclusion: %w", err)
		}
		proof := (&tlog.Proof{Index: l.LogIndex, Hashes: hashes, Checkpoint: raw}).Marshal()
		got, err := release.VerifyArtifact(ctx, *name, artifact, &release.Evidence{Entry: entry, Proof: proof, Envelope: envelope},
			&release.Trust{Key: key, Log: r.verifier, Witness: r.policy})
		if err != nil {
			return fmt.Errorf("%s (%s) does not verify as part of %s %s: %w", path, digest, l.Name, l.Version, err)
		}
		fmt.Fprintf(e.Stdout, "OK: %s (%s) is %s of %s %s: provenance signed by the release key, release-log entry %d in a witnessed checkpoint of %d entries\n",
			path, digest, *name, got.Name, got.Version, l.LogIndex, cp.Size)
		return nil
	}
	return fmt.Errorf("artifact: no published release ships an artifact named %q", *name)
}

// maxGet bounds what get reads: the largest artifact a release ships.
const maxGet = 1 << 30

// getJSON fetches u and decodes its JSON.
func getJSON(ctx context.Context, u string, out any) error {
	return vclient.GetJSON(ctx, httpClient, u, maxGet, out)
}

// get fetches u, which must answer 200; the error keeps the server's
// message.
func get(ctx context.Context, u string) ([]byte, error) {
	return vclient.Get(ctx, httpClient, u, maxGet)
}
