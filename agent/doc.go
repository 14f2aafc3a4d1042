// Package agent is Vitrine's endpoint program: it registers with a
// platform, keeps the trust it pinned then, installs only updates that
// every check accepts, and scans files with the installed rule database.
//
// # Trust
//
// [Register] reads the platform's discovery document once and pins, in the
// agent's directory, what every later check is made against: the TUF
// update repository's URL and initial root, the release key that signs
// provenance, the release log's origin and verifier key, and the witness
// policy. Nothing the platform says later changes them; a new TUF root is
// taken only as TUF allows, signed by a threshold of the old root's keys.
//
// # Updates
//
// [Agent.Update] runs go-tuf's updater (the TUF client workflow: root
// rotation, timestamp, snapshot and targets, with their rollback, freeze
// and mix-and-match checks, and length- and hash-checked downloads), then,
// for each release it installs:
//
//   - the DSSE provenance signature under the pinned release key, and that
//     the provenance names the artifact with its SHA-256;
//   - the release-log entry binds that envelope and names the artifact;
//   - the entry's C2SP tlog-proof from the target's custom metadata, in a
//     checkpoint of the release log that meets the pinned witness policy;
//   - that the release's version is above the installed one: versions only
//     go up.
//
// A rule database installed before is updated by its delta when the
// repository offers one from the installed version; the database the delta
// produces must have the SHA-256 the signed targets metadata names for the
// full database, or nothing is installed.
//
// # Installation
//
// Each release's files go to <dir>/installed/<release>/<version>/, written
// to a temporary directory, synced and renamed into place; the symbolic
// link <release>/current then moves to it in one rename, and
// <release>/previous keeps the version before. Older versions are removed.
// A version named current, previous or starting with a dot is refused.
//
// docs/design/agent.md lists the attacks on updates and the check that
// stops each (agent/attack_test.go).
//
// # Scanning
//
// [Agent.Scan] compiles every installed rule database with package scan
// and scans files on all cores; [Agent.Report] sends the detections to the
// endpoint's home region as telemetry.
package agent
