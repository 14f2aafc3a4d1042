// Package rebuild is the independent rebuilder: it follows a platform's
// release log, rebuilds every release from its archived source with the
// conveyer, compares the digests, and publishes a signed verdict for each
// (package [github.com/vitrine-dev/vitrine/rebuild] defines the verdict).
//
// # What it trusts
//
// Only the platform's discovery document: the release log's URL and
// verifier key, the witness policy its checkpoints must meet, and the
// release key that signs provenance. The log key and the release key are
// pinned in the state on first use; a change stops the rebuilder until a
// person looks. Each checkpoint is verified under the witness policy and
// proved consistent with the last one the rebuilder saw, and each entry is
// read from the log's tiles and proved included in it: the entry bytes in
// the log are authoritative, the files under /releases/ are only checked
// against them.
//
// # One release
//
// For the entry at a log index the rebuilder
//
//  1. verifies the provenance envelope under the release key, and that the
//     entry binds that envelope and names the artifacts it names;
//  2. takes the recipe from the provenance's externalParameters and the
//     source archive's digest from its first resolved dependency;
//  3. downloads source.tar.gz and checks that digest;
//  4. unpacks it into a fresh directory outside any git work tree,
//     rewrites the recipe's source to that directory and runs the
//     conveyer; the conveyer archives the source again, which must give
//     the same digest;
//  5. compares every artifact's digest with the entry's and signs a
//     verdict that lists each pair and the ones that differ, and the
//     toolchains of both builds.
//
// A release whose provenance does not verify, whose source differs from
// the provenance's or that does not build gets a verdict too, never
// reproduced, with the reason in its error field. Failures that say
// nothing about the release (the platform unreachable, release files not
// yet published, the module proxy down) are retried on the next pass.
//
// # State on disk
//
// Under Dir: state.json (the last verified checkpoint and the next index
// to rebuild), verdicts/<name>/<version>.json (DSSE envelopes) and
// index.json (every verdict by log index). Each is replaced atomically,
// verdict first, then index, then state, so a crash at any point loses at
// most the work in progress, and a restart never rebuilds an entry that
// has its verdict in the index.
//
// # Serving
//
// [Rebuilder.Handler] serves GET /rebuilds/ (the index),
// /rebuilds/<name>/<version>.json (a verdict) and /rebuilds/key (the
// rebuilder's public key, PEM).
package rebuilder
