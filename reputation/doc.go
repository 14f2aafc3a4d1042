// Package reputation turns what Vitrine's regions know of a file hash into
// the verdict endpoints receive. Its rules are part of what Vitrine
// publishes: anyone can read why a file was called malicious, and check a
// verdict against the aggregates it was drawn from.
//
// # Aggregates
//
// Each region counts, per SHA-256, the distinct endpoints that reported the
// hash (its prevalence, counted through pseudonyms, never endpoint ids),
// the detection reports by detection name, and when the hash was first and
// last seen. An [Aggregate] holds nothing personal, which is why it, and
// only it, crosses region borders. [Merge] combines the aggregates of all
// regions into the global view a verdict is drawn from: prevalences add up
// because every endpoint belongs to exactly one region.
//
// # Verdicts
//
// [Decide] applies these rules to the global view, in order; the first
// that matches gives the verdict and its reason:
//
//  1. Never seen — no region has a report of the hash: [Unknown].
//  2. The EICAR test file (its SHA-256 is [EICAR]): [Malicious]. Every
//     anti-malware product detects it by convention, so that users can
//     check that protection works; a verdict service must too.
//  3. At least [MaliciousReports] detection reports and a prevalence of at
//     least [MaliciousEndpoints]: [Malicious]. A detection is the vendor's
//     own engine, running a signed rule database, saying the file is
//     harmful; a second report from a network that has seen the file on
//     two endpoints confirms it. The prevalence condition means that one
//     endpoint, however many times it reports, cannot make a file
//     malicious for everyone.
//  4. Any other detection report: [Suspicious]. One report is strong
//     evidence, but it could be a single misbehaving or forged endpoint.
//  5. No detection, first seen less than [NewFor] ago, prevalence at most
//     [RareMax]: [Suspicious]. Malware is typically new and rare, and a
//     file nobody has had time to look at deserves caution, not trust.
//  6. No detection, prevalence at least [CleanMin], and reports spanning at
//     least [CleanSpan] from first to last seen: [Clean]. Endpoints rescan
//     files with each rule database update, several a day: a file still
//     reported without a detection a week after it appeared has been
//     checked against a week of updates on many machines.
//  7. Anything else: [Unknown] — seen, but not enough to judge.
//
// Detections always outrank age and prevalence: a clean file that starts
// being detected is suspicious or malicious from the next merge on.
//
// docs/design/verdicts.md explains the choices and their limits.
package reputation
