package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ErrInclusion means an inclusion proof does not bind the leaf to the
// checkpoint's root hash.
var ErrInclusion = errors.New("inclusion proof does not verify")

const (
	proofHeader = "c2sp.org/tlog-proof@v1"
	// maxProofHashes is the longest inclusion proof in a tree of 2^63 leaves.
	maxProofHashes = 63
)

// A Proof is a c2sp.org/tlog-proof: an offline proof that an entry is in a
// log, made of an inclusion proof and a checkpoint with its cosignatures.
type Proof struct {
	// Extra is optional opaque data that helps compute the leaf hash. It is
	// not authenticated. Empty or nil means no extra line.
	Extra []byte
	// Index is the zero-based index of the entry in the log.
	Index uint64
	// Hashes is the RFC 6962 inclusion proof, from the leaf's sibling up to
	// a child of the root; each hash is 32 bytes.
	Hashes [][]byte
	// Checkpoint is the signed checkpoint note, verbatim.
	Checkpoint []byte
}

// ParseProof parses a c2sp.org/tlog-proof. It checks the syntax only;
// [Proof.Verify] checks the signatures and the inclusion proof.
//
// Parsing is strict: base64 must be canonical and padded, the index has no
// leading zeros, there are at most 63 hashes, the extra data is not empty
// and the input is at most 128 KiB. Every accepted input b satisfies
// bytes.Equal(p.Marshal(), b). Errors match [ErrMalformed].
func ParseProof(b []byte) (*Proof, error) {
	if len(b) > maxNoteSize {
		return nil, proofError(0, "proof is %d bytes, more than the limit of %d", len(b), maxNoteSize)
	}
	rest := b
	lineNo := 0
	next := func() (string, bool) {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return "", false
		}
		rest = after
		lineNo++
		return string(line), true
	}

	line, ok := next()
	if !ok || line != proofHeader {
		return nil, proofError(1, "first line is not %q", proofHeader)
	}
	p := &Proof{}
	if line, ok = next(); !ok {
		return nil, proofError(lineNo+1, "missing index line")
	}
	if extra, found := strings.CutPrefix(line, "extra "); found {
		if p.Extra, ok = decodeBase64(extra); !ok || len(p.Extra) == 0 {
			return nil, proofError(lineNo, "extra data is not non-empty canonical base64")
		}
		if line, ok = next(); !ok {
			return nil, proofError(lineNo+1, "missing index line")
		}
	}
	index, found := strings.CutPrefix(line, "index ")
	if !found {
		return nil, proofError(lineNo, "want \"index <n>\", got %.32q", line)
	}
	if p.Index, ok = parseDecimal(index); !ok {
		return nil, proofError(lineNo, "index %.32q is not a decimal number without leading zeros", index)
	}
	for {
		if line, ok = next(); !ok {
			return nil, proofError(lineNo+1, "missing empty line before the checkpoint")
		}
		if line == "" {
			break
		}
		if len(p.Hashes) == maxProofHashes {
			return nil, proofError(lineNo, "more than %d inclusion proof hashes", maxProofHashes)
		}
		h, ok := decodeHash(line)
		if !ok {
			return nil, proofError(lineNo, "%.64q is not a base64 SHA-256 hash", line)
		}
		p.Hashes = append(p.Hashes, h)
	}
	if len(rest) == 0 {
		return nil, proofError(lineNo+1, "missing checkpoint")
	}
	p.Checkpoint = bytes.Clone(rest)
	return p, nil
}

// Marshal encodes the proof in c2sp.org/tlog-proof form. It does not check
// the proof: hashes of the wrong size or an empty checkpoint produce text
// that ParseProof rejects.
func (p *Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(proofHeader + "\n")
	if len(p.Extra) > 0 {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatUint(p.Index, 10) + "\n")
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// Verify checks the proof offline: the checkpoint must pass
// policy.VerifyCheckpoint with logVerifier (nil to pick the log from the
// policy by origin), and the inclusion proof must bind leafHash at p.Index
// to the checkpoint's root hash. leafHash is the RFC 6962 leaf hash of the
// entry; see [LeafHash].
//
// It returns the verified checkpoint. Errors match those of
// [Policy.VerifyCheckpoint] or [ErrInclusion].
func (p *Proof) Verify(leafHash []byte, logVerifier note.Verifier, policy *Policy) (*Checkpoint, error) {
	if len(leafHash) != hashSize {
		return nil, fmt.Errorf("verifying proof: leaf hash is %d bytes, want %d", len(leafHash), hashSize)
	}
	cp, err := policy.VerifyCheckpoint(p.Checkpoint, logVerifier)
	if err != nil {
		return nil, fmt.Errorf("verifying proof: %w", err)
	}
	if p.Index >= cp.Size {
		return nil, fmt.Errorf("verifying proof: index %d is not in a tree of size %d: %w", p.Index, cp.Size, ErrInclusion)
	}
	for i, h := range p.Hashes {
		if len(h) != hashSize {
			return nil, fmt.Errorf("verifying proof: hash %d is %d bytes, want %d: %w", i, len(h), hashSize, ErrInclusion)
		}
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, cp.Size, leafHash, p.Hashes, cp.Hash); err != nil {
		var mismatch proof.RootMismatchError
		if errors.As(err, &mismatch) {
			err = errors.New("root hash mismatch")
		}
		return nil, fmt.Errorf("verifying proof: entry %d in tree of size %d: %v: %w", p.Index, cp.Size, err, ErrInclusion)
	}
	return cp, nil
}

// LeafHash returns the RFC 6962 leaf hash of a log entry,
// SHA-256(0x00 || entry).
func LeafHash(entry []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(entry)
}

// VerifyEntry parses proof, a c2sp.org/tlog-proof, and checks that it
// proves entry at index in a checkpoint signed by logVerifier that meets
// policy; it returns that checkpoint.
func VerifyEntry(proof []byte, index uint64, entry []byte, logVerifier note.Verifier, policy *Policy) (*Checkpoint, error) {
	p, err := ParseProof(proof)
	if err != nil {
		return nil, err
	}
	if p.Index != index {
		return nil, fmt.Errorf("the proof is of entry %d, not %d", p.Index, index)
	}
	return p.Verify(LeafHash(entry), logVerifier, policy)
}
