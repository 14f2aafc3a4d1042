// Package ruledb reads threat-detection rules in ClamAV's text formats,
// compiles them into a deterministic, versioned binary database, and makes
// and applies deltas between consecutive versions.
//
// # Rule sources
//
// [Parse] reads one rule file, choosing the format by the file name's
// extension; [LoadDir] reads every rule file of a directory:
//
//	.hdb  MD5:size:name[:min_flevel[:max_flevel]]
//	.hsb  SHA-256:size:name[:min_flevel[:max_flevel]]
//	.ndb  name:target:offset:hexsig[:min_flevel[:max_flevel]]
//
// A hash signature's size may be "*" (unknown size; ClamAV wants
// min_flevel 73 then). A body signature's target is ClamAV's target type,
// 0 (any file) to [MaxTarget]; its offset is "*" or an absolute decimal
// offset; its hex signature may use the wildcards ??, a?, ?a, *, {n},
// {n-m}, {-n}, {n-} and the alternatives (aa|bb) and !(aa|bb). A malformed
// line is a [*ParseError] naming the file and line. Each [Signature]
// prints back with String as the ClamAV line it came from, so the
// signatures of a database can be handed to ClamAV itself.
//
// # Databases
//
// [Compile] turns sources into database bytes that depend only on the set
// of signatures and the version: every section is sorted and duplicates are
// dropped, so shuffled files or lines give the same bytes. [Open] validates
// a database (magic, format version, counts, lengths, the trailing SHA-256
// and the canonical order and encoding of every record) and returns a [DB].
// The layout is documented next to the constants in db.go.
//
// # Updates
//
// [Delta] describes the new database as runs of records copied from or
// dropped from the old one plus the records that are new, so its size
// follows the size of the change, not of the database. [ApplyDelta] checks
// the delta's own digest and that it was made for the old database it is
// given, rebuilds the new database and returns it only if its SHA-256 is
// the one the delta names. [Diff] lists the signatures added and removed.
package ruledb
