package tlog

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Errors that verification returns, wrapped with %w; test with errors.Is.
var (
	// ErrMalformed means the input is not a well-formed policy, checkpoint
	// or proof.
	ErrMalformed = errors.New("malformed input")
	// ErrLogSignature means a checkpoint carries no valid signature by the
	// expected log key, or a signature by that key is invalid.
	ErrLogSignature = errors.New("missing or invalid log signature")
	// ErrCosignature means a checkpoint carries a signature line from a
	// policy witness that does not verify. Signed notes with an invalid
	// signature by a known key are rejected as a whole.
	ErrCosignature = errors.New("invalid witness cosignature")
	// ErrQuorum means the valid cosignatures do not meet the policy quorum.
	ErrQuorum = errors.New("witness quorum not met")
)

// maxNoteSize bounds checkpoints and proofs. It leaves room for about forty
// ML-DSA-44 cosignatures (3.2 KiB each), more than any policy needs.
const maxNoteSize = 128 << 10

// hashSize is the size of SHA-256 tree hashes.
const hashSize = 32

// A parseError is an error in a line of a policy, checkpoint or proof. It
// matches ErrMalformed.
type parseError struct {
	format string // "tlog-policy", "tlog-checkpoint" or "tlog-proof"
	line   int    // 1-based; 0 if the error concerns the whole input
	msg    string
}

func (e *parseError) Error() string {
	if e.line == 0 {
		return e.format + ": " + e.msg
	}
	return fmt.Sprintf("%s line %d: %s", e.format, e.line, e.msg)
}

func (e *parseError) Unwrap() error { return ErrMalformed }

func policyError(line int, format string, args ...any) error {
	return &parseError{"tlog-policy", line, fmt.Sprintf(format, args...)}
}

func checkpointError(line int, format string, args ...any) error {
	return &parseError{"tlog-checkpoint", line, fmt.Sprintf(format, args...)}
}

func proofError(line int, format string, args ...any) error {
	return &parseError{"tlog-proof", line, fmt.Sprintf(format, args...)}
}

// A Checkpoint is a c2sp.org/tlog-checkpoint whose log signature and witness
// quorum have been verified.
type Checkpoint struct {
	// Origin is the log's origin line.
	Origin string
	// Size is the number of entries in the tree.
	Size uint64
	// Hash is the RFC 6962 root hash of the tree, 32 bytes.
	Hash []byte
	// Extensions are the extension lines after the root hash, if any. They
	// are opaque, and witnesses make no statement about them.
	Extensions []string
	// Cosigners are the names of the policy witnesses whose cosignature
	// verified, in policy order, including witnesses outside the quorum.
	Cosigners []string
	// CosignedAt maps each name in Cosigners to its cosignature timestamp.
	// Timestamps are as claimed by the witness and not checked against a
	// clock.
	CosignedAt map[string]time.Time
	// Raw is the signed note exactly as verified.
	Raw []byte
}

// VerifyCheckpoint verifies a signed checkpoint note against the policy.
//
// The note must carry a valid signature by logVerifier, whose key name must
// be the checkpoint's origin line. If logVerifier is nil, the policy logs
// whose origin is the checkpoint's origin line are used instead, and one of
// them must have signed. The body must be a well-formed tlog-checkpoint: the
// origin, the size in decimal without leading zeros, the base64 root hash
// (the RFC 6962 empty root when the size is 0) and optional non-empty
// extension lines. Cosignatures are counted for every policy witness whose
// signature line verifies; signature lines from unknown keys are ignored, and
// an invalid signature from a known key rejects the note.
//
// Errors about the checkpoint match [ErrMalformed], [ErrLogSignature],
// [ErrCosignature] or [ErrQuorum]; other errors mean that p or logVerifier
// cannot be used (a Policy not from ParsePolicy, or a log key that shares
// its key name and ID with a witness). On success the returned Checkpoint
// lists the cosigners.
func (p *Policy) VerifyCheckpoint(raw []byte, logVerifier note.Verifier) (*Checkpoint, error) {
	if p == nil || p.quorum == "" {
		return nil, errors.New("verifying checkpoint: policy did not come from ParsePolicy")
	}
	if len(raw) > maxNoteSize {
		return nil, fmt.Errorf("verifying checkpoint: %w", checkpointError(0, "note is %d bytes, more than the limit of %d", len(raw), maxNoteSize))
	}
	// The origin is read before any signature is checked only to choose the
	// log key; the note text is parsed again once the key has verified it.
	origin, _, _ := bytes.Cut(raw, []byte("\n"))
	var logs []note.Verifier
	if logVerifier != nil {
		if logVerifier.Name() != string(origin) {
			return nil, fmt.Errorf("verifying checkpoint: log key %q does not sign origin %.64q: %w", logVerifier.Name(), origin, ErrLogSignature)
		}
		logs = []note.Verifier{logVerifier}
	} else {
		for _, l := range p.Logs {
			if l.Origin == string(origin) {
				logs = append(logs, l.Verifier)
			}
		}
		if len(logs) == 0 {
			return nil, fmt.Errorf("verifying checkpoint: no policy log has origin %.64q: %w", origin, ErrLogSignature)
		}
	}

	isLog := func(name string, hash uint32) bool {
		for _, v := range logs {
			if v.Name() == name && v.KeyHash() == hash {
				return true
			}
		}
		return false
	}
	for _, w := range p.Witnesses {
		if isLog(w.Verifier.Name(), w.Verifier.KeyHash()) {
			// note.Open could not tell the two apart.
			return nil, fmt.Errorf("verifying checkpoint: log key %q has the key name and key ID of witness %q", w.Verifier.Name(), w.Name)
		}
	}
	n, err := note.Open(raw, note.VerifierList(append(logs[:len(logs):len(logs)], p.WitnessVerifiers()...)...))
	if err != nil {
		return nil, fmt.Errorf("verifying checkpoint: %w", p.openError(err, isLog))
	}
	signed := false
	for _, s := range n.Sigs {
		signed = signed || isLog(s.Name, s.Hash)
	}
	if !signed {
		return nil, fmt.Errorf("verifying checkpoint: no signature by log key %q: %w", logs[0].Name(), ErrLogSignature)
	}

	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, fmt.Errorf("verifying checkpoint: %w", err)
	}
	if c.Origin != logs[0].Name() {
		// Unreachable while the origin chosen above is the text's first line.
		return nil, fmt.Errorf("verifying checkpoint: origin %.64q is not the log key's name: %w", c.Origin, ErrLogSignature)
	}
	c.Raw = bytes.Clone(raw)
	c.CosignedAt = make(map[string]time.Time)
	for _, w := range p.Witnesses {
		for _, s := range n.Sigs {
			if s.Name != w.Verifier.Name() || s.Hash != w.Verifier.KeyHash() {
				continue
			}
			t, err := cosignatureTime(s)
			if err != nil {
				return nil, fmt.Errorf("verifying checkpoint: witness %q: %v: %w", w.Name, err, ErrCosignature)
			}
			c.Cosigners = append(c.Cosigners, w.Name)
			c.CosignedAt[w.Name] = t
			break
		}
	}
	if !p.Satisfied(func(w PolicyWitness) bool { _, ok := c.CosignedAt[w.Name]; return ok }) {
		who := "no policy witness cosigned"
		if len(c.Cosigners) > 0 {
			who = "cosigned by " + strings.Join(c.Cosigners, ", ")
		}
		return nil, fmt.Errorf("verifying checkpoint: quorum %q not met, %s: %w", p.quorum, who, ErrQuorum)
	}
	return c, nil
}

// openError maps a note.Open error to the package's sentinels.
func (p *Policy) openError(err error, isLog func(string, uint32) bool) error {
	var invalid *note.InvalidSignatureError
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &invalid) && isLog(invalid.Name, invalid.Hash):
		return fmt.Errorf("signature by log key %q does not verify: %w", invalid.Name, ErrLogSignature)
	case errors.As(err, &invalid):
		for _, w := range p.Witnesses {
			if w.Verifier.Name() == invalid.Name && w.Verifier.KeyHash() == invalid.Hash {
				return fmt.Errorf("cosignature by witness %q does not verify: %w", w.Name, ErrCosignature)
			}
		}
		return fmt.Errorf("signature by %q does not verify: %w", invalid.Name, ErrCosignature)
	case errors.As(err, &unverified):
		return fmt.Errorf("no signature by a known key: %w", ErrLogSignature)
	default:
		return checkpointError(0, "not a signed note: %v", err)
	}
}

// parseCheckpointText parses the text of a checkpoint note, which note.Open
// guarantees to end in a newline and to hold no control characters.
func parseCheckpointText(text string) (*Checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, checkpointError(0, "note text has %d lines, want at least 3", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return nil, checkpointError(i+1, "empty line")
		}
	}
	size, ok := parseDecimal(lines[1])
	if !ok {
		return nil, checkpointError(2, "tree size %.32q is not a decimal number without leading zeros", lines[1])
	}
	hash, ok := decodeHash(lines[2])
	if !ok {
		return nil, checkpointError(3, "root hash %.64q is not a base64 SHA-256 hash", lines[2])
	}
	if size == 0 && !bytes.Equal(hash, rfc6962.DefaultHasher.EmptyRoot()) {
		return nil, checkpointError(3, "tree of size 0 does not have the empty root hash")
	}
	c := &Checkpoint{Origin: lines[0], Size: size, Hash: hash}
	if len(lines) > 3 {
		c.Extensions = lines[3:]
	}
	return c, nil
}

// cosignatureTime returns the timestamp of a verified cosignature line:
// base64(key ID || timestamp || signature) with a big-endian uint64 timestamp.
func cosignatureTime(s note.Signature) (time.Time, error) {
	b, err := base64.StdEncoding.DecodeString(s.Base64)
	if err != nil || len(b) < 4+8 {
		return time.Time{}, errors.New("cosignature too short for a timestamp")
	}
	t := binary.BigEndian.Uint64(b[4:])
	if t > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("cosignature timestamp %d exceeds 2^63-1", t)
	}
	return time.Unix(int64(t), 0).UTC(), nil
}

// parseDecimal parses an ASCII decimal uint64 with no sign and no leading
// zeros (other than "0" itself).
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// decodeHash decodes the canonical standard base64 encoding of a SHA-256
// hash; any other encoding of the same bytes is rejected, so that parsing
// and marshalling round-trip exactly.
func decodeHash(s string) ([]byte, bool) {
	b, ok := decodeBase64(s)
	return b, ok && len(b) == hashSize
}

// decodeBase64 decodes canonical, padded standard base64. Go's decoder
// skips newlines and carriage returns and, outside strict mode, accepts
// nonzero padding bits; re-encoding and comparing rules both out.
func decodeBase64(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}
