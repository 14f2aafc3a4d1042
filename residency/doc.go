// Package residency is Vitrine's residency policy: which region stores and
// processes the data of endpoints in each country.
//
// Anyone can check the policy: every version is signed, appended to the
// public policy log, and routing follows only a version that is in the log.
// This package is the policy's format and rules; it does no I/O.
//
// # Policies
//
// A [Policy] names regions, the ISO 3166-1 alpha-2 countries each region
// serves, a default region for every country no region lists, and a
// version. [Default] is the built-in policy of `vitrine up`.
// [Policy.RegionFor] answers which region serves a country.
//
// # Reading policies
//
// [ParsePolicy] reads a policy from JSON, such as the "residency" object of
// the platform config file. It is strict: unknown keys, duplicate keys, a
// country listed twice and codes that ISO 3166-1 does not assign are errors,
// and each error names the line and column of the offending token.
// [ParsePolicyAt] does the same for a policy inside a larger document, and
// [LineOf] maps a byte offset to a line for callers reporting their own
// errors.
//
// # Signing
//
// [Policy.Marshal] is the canonical encoding: one policy has one byte
// string. [Sign] and [Open] turn a policy into a signed note, the entry
// format of the policy log, and back.
//
// # Diffs
//
// [Diff] lists what changes between two versions, down to each country
// whose region changes, so that a relocation can be reviewed before it is
// logged.
package residency
