package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// FollowState is where a [Follower] stands in a log: how many entries it
// has handed out, their compact range, and the last checkpoint it
// verified. It is stored as JSON (byte fields in base64) by [SaveState].
//
// A state belongs to one log, named by its origin and the SHA-256 of its
// verifier key: two logs that share an origin (every platform installed
// with the default name is vitrine.local) never share a state.
type FollowState struct {
	Origin string `json:"origin"`
	Key    string `json:"key"`
	// Size is the number of entries handed out, and Range the hashes of
	// the compact range [0, Size): the roots of its perfect subtrees,
	// largest first.
	Size  uint64   `json:"size"`
	Range [][]byte `json:"range"`
	// Checkpoint is the last checkpoint verified, as the log served it,
	// with its size and root: the next one must be consistent with it.
	Checkpoint     []byte `json:"checkpoint,omitempty"`
	CheckpointSize uint64 `json:"checkpoint_size"`
	Root           []byte `json:"root,omitempty"`
}

// check refuses a state that is not l's or that cannot be right.
func (s *FollowState) check(l *Log) error {
	switch {
	case s.Origin != l.Origin():
		return fmt.Errorf("follower state is for the log %q, not %q", s.Origin, l.Origin())
	case s.Key != l.KeyHash():
		return fmt.Errorf("follower state of %s is for another key of that origin (%.16s…, the log's is %.16s…): another log, or the log's key changed", s.Origin, s.Key, l.KeyHash())
	case s.Size > s.CheckpointSize:
		return fmt.Errorf("follower state of %s: %d entries read past a checkpoint of %d", s.Origin, s.Size, s.CheckpointSize)
	}
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	if _, err := rf.NewRange(0, s.Size, s.Range); err != nil {
		return fmt.Errorf("follower state of %s: %w", s.Origin, err)
	}
	for _, h := range s.Range {
		if len(h) != 32 {
			return fmt.Errorf("follower state of %s: a range hash of %d bytes", s.Origin, len(h))
		}
	}
	if s.Checkpoint == nil {
		if s.CheckpointSize != 0 || s.Size != 0 {
			return fmt.Errorf("follower state of %s: entries read under no checkpoint", s.Origin)
		}
		return nil
	}
	// The stored checkpoint must be the log's, and say what the state
	// says it does.
	cp, err := l.Kept(s.Checkpoint)
	if err != nil {
		return fmt.Errorf("follower state of %s: the checkpoint it holds: %w", s.Origin, err)
	}
	if cp.Size != s.CheckpointSize || !bytes.Equal(cp.Hash, s.Root) || cp.Origin != s.Origin {
		return fmt.Errorf("follower state of %s: the stored checkpoint is of %d entries with root %x, the state says %d and %x", s.Origin, cp.Size, cp.Hash, s.CheckpointSize, s.Root)
	}
	return nil
}

// StatePath is the file in dir for the state of the log with the given
// origin and verifier key: both name it, so that two logs with one origin
// never share a state.
func StatePath(dir, origin, vkey string) string {
	return filepath.Join(dir, url.PathEscape(origin)+"-"+keyHash(vkey)[:16]+".json")
}

// LoadState reads a state saved by [SaveState]. A missing file gives
// (nil, nil): the follower starts from the first entry. A file that cannot
// be parsed is an error, never a fresh start: a monitor that forgot what
// the log once committed to could be shown a fork.
func LoadState(path string) (*FollowState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading follower state: %w", err)
	}
	var s FollowState
	if err := httpapi.DecodeStrict(b, &s); err != nil {
		return nil, fmt.Errorf("loading follower state %s: %w", path, err)
	}
	return &s, nil
}

// SaveState writes s to path atomically and durably, readable by its
// owner only.
func SaveState(path string, s FollowState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving follower state: %w", err)
	}
	return nil
}
