package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
)

// State is what a monitor remembers of a log between runs: the last tree it
// verified and the checkpoint that committed to it. The next run proves the
// log's new checkpoint consistent with it before it trusts anything else.
//
// It is stored as a JSON object whose byte fields are base64.
type State struct {
	// Origin is the log's checkpoint origin line.
	Origin string `json:"origin"`
	// Size is the number of entries in the verified tree.
	Size uint64 `json:"size"`
	// Root is the verified tree's 32-byte root hash.
	Root []byte `json:"root"`
	// Checkpoint is the signed checkpoint for Size and Root, kept as
	// evidence should the log later contradict it.
	Checkpoint []byte `json:"checkpoint"`
}

// validate checks what can be checked without the log's key.
func (s *State) validate() error {
	empty := sha256.Sum256(nil)
	switch {
	case s.Origin == "":
		return errors.New("origin is empty")
	case len(s.Root) != sha256.Size:
		return fmt.Errorf("root is %d bytes, want %d", len(s.Root), sha256.Size)
	case s.Size == 0 && !bytes.Equal(s.Root, empty[:]):
		return fmt.Errorf("root of the empty tree is %x, want %x", s.Root, empty)
	case len(s.Checkpoint) == 0:
		// Without the signed checkpoint, size and root are the state's
		// word alone: no evidence, and nothing to hold the log to.
		return errors.New("no checkpoint: a state holds the signed checkpoint it trusts")
	}
	return nil
}

// LoadState reads the monitor state saved at path by [SaveState]. A missing
// file means the monitor has never run and gives (nil, nil). A file that
// cannot be read or parsed, holds unknown fields or trailing data, or
// describes an impossible tree is an error: a monitor must stop and let a
// person look rather than start over and forget what the log once committed
// to.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading monitor state: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("loading monitor state from %s: corrupt: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("loading monitor state from %s: corrupt: data after the JSON object", path)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("loading monitor state from %s: corrupt: %w", path, err)
	}
	return &s, nil
}

// SaveState replaces the monitor state at path with s, atomically and
// durably: when it returns nil, a crash or power loss leaves either the old
// state or s, never a mix or nothing. It writes a temporary file in the same
// directory with mode 0600, syncs it, renames it over path and syncs the
// directory, creating the directory if it is missing. Concurrent calls for
// one path leave one of the states whole. It rejects a state that
// [LoadState] would reject.
func SaveState(path string, s *State) error {
	if s == nil {
		return fmt.Errorf("saving monitor state to %s: state is nil", path)
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("saving monitor state to %s: %w", path, err)
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("saving monitor state to %s: %w", path, err)
	}
	b = append(b, '\n')
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("saving monitor state to %s: %w", path, err)
	}
	return nil
}
