// Package gen builds the test vectors in tlog/testdata from fixed seeds, so
// that every run produces the same bytes.
//
// It deliberately shares no code with package tlog: trees and inclusion
// proofs come from golang.org/x/mod/sumdb/tlog, log signatures from
// golang.org/x/mod/sumdb/note, and cosignatures are built here by hand from
// c2sp.org/tlog-cosignature, so the vectors check tlog against independent
// implementations. Regenerate with
//
//	go run ./tlog/internal/gen/write.go -dir tlog/testdata
package gen

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"filippo.io/mldsa"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Signature types of signed-note keys.
const (
	typeEd25519      = 0x01
	typeCosigEd25519 = 0x04
	typeCosigMLDSA44 = 0x06
)

// Seed returns the 32-byte seed for a test key, derived from its label.
func Seed(label string) []byte {
	h := sha256.Sum256([]byte("vitrine tlog test vector seed\n" + label))
	return h[:]
}

func keyID(name string, typ byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{typ})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func vkey(name string, typ byte, pub []byte) string {
	return fmt.Sprintf("%s+%08x+%s", name, keyID(name, typ, pub), base64.StdEncoding.EncodeToString(append([]byte{typ}, pub...)))
}

// A Log is a deterministic Ed25519 log key.
type Log struct {
	VKey   string
	Signer note.Signer
}

// NewLog returns the log key named name derived from label.
func NewLog(name, label string) (*Log, error) {
	seed := Seed(label)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, keyID(name, typeEd25519, pub),
		base64.StdEncoding.EncodeToString(append([]byte{typeEd25519}, seed...)))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("log key %q: %w", name, err)
	}
	return &Log{VKey: vkey(name, typeEd25519, pub), Signer: s}, nil
}

// A Witness is a deterministic cosigner that signs with a fixed timestamp.
// It implements note.Signer.
type Witness struct {
	VKey string
	// Time is the timestamp that Sign puts in cosignatures.
	Time uint64

	name  string
	id    uint32
	ed    ed25519.PrivateKey // Ed25519 cosignature/v1
	mldsa *mldsa.PrivateKey  // ML-DSA-44 cosignature (subtree/v1 message)
}

// NewWitness returns an Ed25519 cosignature/v1 witness key derived from label.
func NewWitness(name, label string, time uint64) *Witness {
	key := ed25519.NewKeyFromSeed(Seed(label))
	pub := key.Public().(ed25519.PublicKey)
	return &Witness{VKey: vkey(name, typeCosigEd25519, pub), Time: time, name: name, id: keyID(name, typeCosigEd25519, pub), ed: key}
}

// NewMLDSAWitness returns an ML-DSA-44 witness key derived from label.
func NewMLDSAWitness(name, label string, time uint64) (*Witness, error) {
	key, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), Seed(label))
	if err != nil {
		return nil, fmt.Errorf("witness key %q: %w", name, err)
	}
	pub := key.PublicKey().Bytes()
	return &Witness{VKey: vkey(name, typeCosigMLDSA44, pub), Time: time, name: name, id: keyID(name, typeCosigMLDSA44, pub), mldsa: key}, nil
}

// Name returns the witness's key name.
func (w *Witness) Name() string { return w.name }

// KeyHash returns the witness's key ID.
func (w *Witness) KeyHash() uint32 { return w.id }

// Sign returns timestamp || signature over the cosigned message for the
// checkpoint text msg.
func (w *Witness) Sign(msg []byte) ([]byte, error) {
	sig := binary.BigEndian.AppendUint64(nil, w.Time)
	if w.ed != nil {
		m := fmt.Sprintf("cosignature/v1\ntime %d\n%s", w.Time, msg)
		return append(sig, ed25519.Sign(w.ed, []byte(m))...), nil
	}
	lines := strings.SplitN(string(msg), "\n", 4)
	if len(lines) < 4 {
		return nil, errors.New("cosigning: not a checkpoint")
	}
	size, err1 := strconv.ParseUint(lines[1], 10, 64)
	root, err2 := base64.StdEncoding.DecodeString(lines[2])
	if err1 != nil || err2 != nil || len(root) != 32 || len(lines[0]) > 255 {
		return nil, errors.New("cosigning: not a checkpoint")
	}
	// struct { label[12] "subtree/v1\n\0"; opaque cosigner_name<1..255>;
	// uint64 timestamp; opaque log_origin<1..255>; uint64 start; uint64 end;
	// uint8 hash[32] }, start = 0 and end = size for a checkpoint.
	m := []byte("subtree/v1\n\x00")
	m = append(append(m, byte(len(w.name))), w.name...)
	m = binary.BigEndian.AppendUint64(m, w.Time)
	m = append(append(m, byte(len(lines[0]))), lines[0]...)
	m = binary.BigEndian.AppendUint64(m, 0)
	m = binary.BigEndian.AppendUint64(m, size)
	m = append(m, root...)
	s, err := w.mldsa.SignDeterministic(m, nil)
	if err != nil {
		return nil, err
	}
	return append(sig, s...), nil
}

// Entry returns the test log's entry i.
func Entry(i int) []byte {
	return []byte(fmt.Sprintf("vitrine test entry %d\n", i))
}

// A Tree is an in-memory RFC 6962 tree of Entry(0), Entry(1), ...
type Tree struct {
	stored []tlog.Hash
	size   int64
}

// NewTree returns the tree of the first size entries.
func NewTree(size int) (*Tree, error) {
	t := &Tree{}
	for i := range size {
		h, err := tlog.StoredHashes(int64(i), Entry(i), t.reader())
		if err != nil {
			return nil, err
		}
		t.stored = append(t.stored, h...)
		t.size++
	}
	return t, nil
}

func (t *Tree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(t.stored)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = t.stored[x]
		}
		return out, nil
	})
}

// Root returns the root hash of the tree of the first size entries.
func (t *Tree) Root(size int64) ([]byte, error) {
	h, err := tlog.TreeHash(size, t.reader())
	return h[:], err
}

// Prove returns the inclusion proof of entry index in the tree of the first
// size entries, leaf sibling first.
func (t *Tree) Prove(index, size int64) ([][]byte, error) {
	p, err := tlog.ProveRecord(size, index, t.reader())
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out, nil
}

// CheckpointText returns the body of a checkpoint, extension lines included.
func CheckpointText(origin string, size int64, root []byte, extensions ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
	for _, e := range extensions {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// Sign signs a checkpoint text with the given signers, in order.
func Sign(text string, signers ...note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: text}, signers...)
}

// ProofText builds a c2sp.org/tlog-proof by hand.
func ProofText(extra []byte, index int64, hashes [][]byte, checkpoint []byte) []byte {
	var b bytes.Buffer
	b.WriteString("c2sp.org/tlog-proof@v1\n")
	if extra != nil {
		fmt.Fprintf(&b, "extra %s\n", base64.StdEncoding.EncodeToString(extra))
	}
	fmt.Fprintf(&b, "index %d\n", index)
	for _, h := range hashes {
		fmt.Fprintf(&b, "%s\n", base64.StdEncoding.EncodeToString(h))
	}
	b.WriteString("\n")
	b.Write(checkpoint)
	return b.Bytes()
}
