package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/vitrine-dev/vitrine/access"
	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/commitment"
	"github.com/vitrine-dev/vitrine/internal/gateway"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// runCommitmentVerify checks a dataset commitment of a region's access log
// against a copy of the region's store that the verifier holds (a backup,
// a replica): the commitment is read from the log proven (its inclusion in
// a checkpoint that meets the witness policy), and its count, bound and
// root are recomputed from the store's records with ids up to its bound.
func runCommitmentVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "commitment verify", "[--platform URL] --region R [--index N] --store sqlite:PATH|postgres://…")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "base URL of the platform; its keys are trusted on first use and pinned")
	region := fs.String("region", "", "the region whose access log (access-<region>) holds the commitment (required)")
	index := fs.String("index", "", "the commitment's entry index in that log (default: the log's last commitment of the dataset)")
	storeSpec := fs.String("store", "", "the region's store to check it against: sqlite:PATH of a copy or backup of its database, or a postgres:// URL of a restored backup (opening it may upgrade its schema, so never a running region's own database, nor a read-only standby) (required)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *region == "" || *storeSpec == "" {
		fs.Usage()
		return errors.New("--region and --store are required")
	}
	kind, path, err := store.ParseSpec(*storeSpec)
	if err != nil {
		return err
	}
	if kind == "sqlite" {
		// Opening a store creates a missing database: a mistyped path
		// would be checked as an empty dataset.
		if fi, err := os.Stat(path); err != nil {
			return fmt.Errorf("--store: %w", err)
		} else if fi.Size() == 0 {
			return fmt.Errorf("--store: %s is empty, not a copy of a region's database", path)
		}
	}
	if !residency.ValidRegionName(*region) {
		return fmt.Errorf("--region %q is not a region name", *region)
	}
	t := target{platform: *platformURL, log: "access-" + *region}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return err
	}
	if r.policy.Quorum() == "none" {
		return errors.New("the witness policy has quorum none: the platform alone would vouch for the commitment")
	}
	l, err := r.log()
	if err != nil {
		return err
	}
	idx, c, cp, err := findCommitment(ctx, l, *index, gateway.Dataset)
	if err != nil {
		return fmt.Errorf("access-%s: %w", *region, err)
	}
	if c.Region != *region || c.Dataset != gateway.Dataset {
		return fmt.Errorf("access-%s entry %d is a commitment of %s/%s, not %s/%s", *region, idx, c.Region, c.Dataset, *region, gateway.Dataset)
	}
	fmt.Fprintf(e.Stdout, "commitment  access-%s entry %d, proven in the checkpoint of %d entries (witness quorum ok)\n", *region, idx, cp.Size)
	fmt.Fprintf(e.Stdout, "            %s/%s at %s: %s through id %d, root %s\n", c.Region, c.Dataset, c.Time.Format("2006-01-02T15:04:05.000Z"), plural(uint64(c.Count), "record", "records"), c.Through, c.Root)

	s, err := store.Open(ctx, *storeSpec)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := commitment.VerifyStore(ctx, s, c); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "store       the %s with ids up to %d: count, bound and root match\n", plural(uint64(c.Count), "record", "records"), c.Through)
	return nil
}

// findCommitment returns the commitment at index (decimal) of l, proven
// in l's checkpoint, or, with no index, follows l to its checkpoint and
// returns its last commitment of dataset, every entry proven on the way.
func findCommitment(ctx context.Context, l *vclient.Log, index, dataset string) (uint64, *access.Commitment, *tlog.Checkpoint, error) {
	if index != "" {
		i, err := strconv.ParseUint(index, 10, 64)
		if err != nil {
			return 0, nil, nil, errors.New("--index must be a decimal entry index")
		}
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			return 0, nil, nil, err
		}
		if i >= cp.Size {
			return 0, nil, nil, fmt.Errorf("entry %d: the log's checkpoint has %d entries", i, cp.Size)
		}
		entry, _, err := l.Entry(ctx, cp, i)
		if err != nil {
			return 0, nil, nil, err
		}
		c, err := access.ParseCommitment(entry)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("entry %d: %w", i, err)
		}
		return i, c, cp, nil
	}
	f, err := vclient.NewFollower(l, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	var last *access.Commitment
	var at uint64
	cp, err := f.Update(ctx, func(i uint64, e []byte) error {
		if access.EntryKind(e) != access.KindCommitment {
			return nil
		}
		if c, err := access.ParseCommitment(e); err == nil && c.Dataset == dataset {
			last, at = c, i
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, err
	}
	if last == nil {
		return 0, nil, nil, fmt.Errorf("no commitment of %s in its %d entries", dataset, cp.Size)
	}
	return at, last, cp, nil
}
