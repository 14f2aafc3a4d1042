// Package tlog verifies Vitrine's transparency logs from the outside.
//
// Everything here works on public material only: C2SP tlog-tiles resources
// (checkpoints, tiles, entry bundles), C2SP tlog-policy witness policies,
// C2SP tlog-proof offline proofs and signed notes. Independent verifiers,
// monitors and endpoints use it; nothing in it needs a server's secrets.
//
// # Policies
//
// [ParsePolicy] reads a c2sp.org/tlog-policy file: the logs, the witnesses
// and the quorum a checkpoint must meet. [Policy.VerifyCheckpoint] checks a
// checkpoint's log signature and its cosignatures against that quorum.
//
// # Proofs
//
// [ParseProof] reads a c2sp.org/tlog-proof; [Proof.Verify] checks it offline.
//
// # Trees
//
// [VerifyTree] recomputes a whole tree from its entry bundles and checks
// every tile on the way.
package tlog
