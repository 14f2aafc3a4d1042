// Package release is what the conveyer signs and publishes for each release,
// and what anyone checks it with: SLSA Provenance v1 in an in-toto Statement
// v1 whose subjects are the artifacts' SHA-256 digests, signed as a DSSE
// envelope with the release key, and the release-log entry that binds the
// release's name, version, artifact digests and the envelope's digest.
//
// Standard tools read what it writes: the Statement and the Provenance are
// built with in-toto's own Go bindings (github.com/in-toto/attestation) and
// pass their validation, and the envelope is made and checked with
// go-securesystemslib's dsse package, the reference implementation.
package release
