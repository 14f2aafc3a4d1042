package main

import (
	"context"
	"fmt"
	"os"

	"github.com/vitrine-dev/vitrine/ruledb"
)

func runRuleDBCompile(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "ruledb compile", "--version N --out FILE DIR")
	version := fs.Uint64("version", 1, "the database's version (each release's must be higher than the last)")
	out := fs.String("out", "rules.vdb", "where to write the compiled database")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	srcs, err := ruledb.LoadDir(fs.Arg(0))
	if err != nil {
		return err
	}
	db, err := ruledb.Compile(srcs, *version)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, db, 0o644); err != nil {
		return err
	}
	d, err := ruledb.Open(db)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%s: version %d, %d signatures, %d bytes, sha256:%x\n", *out, d.Version(), d.Len(), len(db), d.Digest())
	return nil
}

func runRuleDBDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "ruledb diff", "OLD NEW (compiled databases or rule source directories)")
	if err := parseFlags(fs, args, 2); err != nil {
		return err
	}
	var dbs [2]*ruledb.DB
	for i, arg := range fs.Args() {
		db, err := loadRuleDB(arg, uint64(i))
		if err != nil {
			return err
		}
		dbs[i] = db
	}
	ch := ruledb.Diff(dbs[0], dbs[1])
	for _, s := range ch.Removed {
		fmt.Fprintf(e.Stdout, "- %s\n", s)
	}
	for _, s := range ch.Added {
		fmt.Fprintf(e.Stdout, "+ %s\n", s)
	}
	fmt.Fprintf(e.Stdout, "%d added, %d removed, %d unchanged\n", len(ch.Added), len(ch.Removed), ch.Unchanged)
	return nil
}

// loadRuleDB opens a compiled database, or compiles a directory of rule
// sources at the given version.
func loadRuleDB(path string, version uint64) (*ruledb.DB, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var b []byte
	if fi.IsDir() {
		srcs, err := ruledb.LoadDir(path)
		if err != nil {
			return nil, err
		}
		if b, err = ruledb.Compile(srcs, version); err != nil {
			return nil, err
		}
	} else if b, err = os.ReadFile(path); err != nil {
		return nil, err
	}
	db, err := ruledb.Open(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}
