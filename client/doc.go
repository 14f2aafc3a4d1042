// Package client is what an outsider uses to check a Vitrine platform: it
// hands out only bytes it has verified.
//
// # Logs
//
// A [Log] is a C2SP tlog-tiles log with the key that signs its checkpoints
// and the witness policy they must meet. [Log.Checkpoint] verifies both.
//
// # Following a log
//
// A [Follower] reads a log's entries in order and hands each one out only
// once it is proven to be in a verified checkpoint: the only way to get an
// entry's bytes is through the proof, and the bytes handed out are the
// bytes hashed. Its [FollowState] is keyed by the log's origin and key, so
// two logs that share an origin never share a state, and a follower
// resumes from it after a restart, proving the log's new checkpoint
// consistent with the last one it trusted. A log that contradicts itself
// is reported as a [*ForkError] holding both signed checkpoints.
package client
