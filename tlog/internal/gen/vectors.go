package gen

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// A Case is one entry of testdata/vectors.json: a checkpoint or a proof to
// verify under a policy, and the expected outcome.
type Case struct {
	Name string `json:"name"`
	// Policy is the policy file, relative to testdata.
	Policy string `json:"policy"`
	// Checkpoint or Proof is the file to verify, relative to testdata.
	Checkpoint string `json:"checkpoint,omitempty"`
	Proof      string `json:"proof,omitempty"`
	// Entry is the logged entry a proof is for.
	Entry string `json:"entry,omitempty"`
	// Want is "ok" or the name of the sentinel error verification returns:
	// ErrMalformed, ErrLogSignature, ErrCosignature, ErrQuorum, ErrInclusion.
	Want string `json:"want"`
}

// Origin is the origin line of the test log.
const Origin = "example.com/vitrine-test-log"

// TreeSize is the size of the test log's checkpoints.
const TreeSize = 23

// emptyRoot is the RFC 6962 root of the empty tree, SHA-256 of nothing.
var emptyRoot = sha256.Sum256(nil)

// Keys are the deterministic keys the vectors use.
type Keys struct {
	Log, WrongLog *Log // WrongLog has the log's name but another key
	// A, B, C and D are Ed25519 witnesses, E is an ML-DSA-44 witness, and
	// Unknown is in no policy.
	A, B, C, D, E, Unknown *Witness
}

// NewKeys derives the keys from their fixed labels.
func NewKeys() (*Keys, error) {
	log, err := NewLog(Origin, "log")
	if err != nil {
		return nil, err
	}
	wrong, err := NewLog(Origin, "wrong log")
	if err != nil {
		return nil, err
	}
	e, err := NewMLDSAWitness("witness-e.example", "witness e", 1764000005)
	if err != nil {
		return nil, err
	}
	return &Keys{
		Log:      log,
		WrongLog: wrong,
		A:        NewWitness("witness-a.example", "witness a", 1764000001),
		B:        NewWitness("witness-b.example", "witness b", 1764000002),
		C:        NewWitness("witness-c.example", "witness c", 1764000003),
		D:        NewWitness("witness-d.example", "witness d", 1764000004),
		E:        e,
		Unknown:  NewWitness("witness-u.example", "unknown witness", 1764000009),
	}, nil
}

// Policies returns the policy vectors by file name.
func (k *Keys) Policies() map[string]string {
	logLine := "log " + k.Log.VKey + " https://log.example/vitrine-test-log/\n"
	return map[string]string{
		"policy/none.txt": "# No cosignatures required.\n" + logLine + "quorum none\n",
		"policy/single.txt": logLine +
			"witness a " + k.A.VKey + " https://witness-a.example/\n" +
			"quorum a\n",
		"policy/2of3.txt": logLine +
			"witness a " + k.A.VKey + "\n" +
			"witness b " + k.B.VKey + "\n" +
			"witness c " + k.C.VKey + "\n" +
			"group three 2 a b c\n" +
			"quorum three\n",
		// The shape of the example in c2sp.org/tlog-policy, with comments,
		// blank lines, tabs and an ML-DSA-44 witness.
		"policy/nested.txt": "# Two organisations; both must witness.\n" +
			"\t" + strings.TrimSuffix(logLine, "\n") + "  \n" +
			"\n" +
			"witness X1 " + k.A.VKey + "\n" +
			"witness\tX2\t" + k.B.VKey + "\n" +
			"witness X3 " + k.C.VKey + "\n" +
			"group X-witnesses 2 X1 X2 X3\n" +
			"   # Organisation Y\n" +
			"witness Y1 " + k.D.VKey + "\n" +
			"witness Y2 " + k.E.VKey + " https://witness-e.example/\n" +
			"group Y-witnesses any Y1 Y2\n" +
			"\n" +
			"group X-and-Y all X-witnesses Y-witnesses\n" +
			"quorum X-and-Y\n",
	}
}

// Vectors returns every file of tlog/testdata that gen owns, by path
// relative to testdata.
func Vectors() (map[string][]byte, error) {
	k, err := NewKeys()
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte)
	for name, text := range k.Policies() {
		files[name] = []byte(text)
	}
	tree, err := NewTree(TreeSize)
	if err != nil {
		return nil, err
	}
	root, err := tree.Root(TreeSize)
	if err != nil {
		return nil, err
	}
	text := CheckpointText(Origin, TreeSize, root)
	var cases []Case
	checkpoint := func(name, policy, want, text string, mutate func([]byte) []byte, signers ...note.Signer) error {
		cp, err := Sign(text, signers...)
		if err != nil {
			return fmt.Errorf("signing %s: %w", name, err)
		}
		if mutate != nil {
			cp = mutate(cp)
		}
		file := "checkpoint/" + name
		files[file] = cp
		cases = append(cases, Case{Name: name, Policy: policy, Checkpoint: file, Want: want})
		return nil
	}
	flipCosig := func(cp []byte) []byte {
		// Change one base64 digit of the last signature line.
		s := string(cp)
		i := len(s) - 5
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return []byte(s[:i] + string(c) + s[i+1:])
	}
	for _, c := range []struct {
		name, policy, want, text string
		mutate                   func([]byte) []byte
		signers                  []note.Signer
	}{
		{"none-ok", "policy/none.txt", "ok", text, nil, []note.Signer{k.Log.Signer}},
		{"single-ok", "policy/single.txt", "ok", text, nil, []note.Signer{k.Log.Signer, k.A}},
		{"single-no-cosignature", "policy/single.txt", "ErrQuorum", text, nil, []note.Signer{k.Log.Signer}},
		{"single-unknown-cosigner", "policy/single.txt", "ErrQuorum", text, nil, []note.Signer{k.Log.Signer, k.Unknown}},
		{"single-bad-cosignature", "policy/single.txt", "ErrCosignature", text, flipCosig, []note.Signer{k.Log.Signer, k.A}},
		{"single-wrong-log-key", "policy/single.txt", "ErrLogSignature", text, nil, []note.Signer{k.WrongLog.Signer, k.A}},
		{"single-only-cosigned", "policy/single.txt", "ErrLogSignature", text, nil, []note.Signer{k.A}},
		{"2of3-ok", "policy/2of3.txt", "ok", text, nil, []note.Signer{k.Log.Signer, k.A, k.Unknown, k.C}},
		{"2of3-one", "policy/2of3.txt", "ErrQuorum", text, nil, []note.Signer{k.Log.Signer, k.B, k.Unknown}},
		{"nested-ok", "policy/nested.txt", "ok", text, nil, []note.Signer{k.Log.Signer, k.A, k.C, k.E}},
		{"nested-no-y", "policy/nested.txt", "ErrQuorum", text, nil, []note.Signer{k.Log.Signer, k.A, k.B, k.C}},
		{"nested-one-x", "policy/nested.txt", "ErrQuorum", text, nil, []note.Signer{k.Log.Signer, k.A, k.D, k.E}},
		{"extension-ok", "policy/2of3.txt", "ok", CheckpointText(Origin, TreeSize, root, "opaque extension"), nil, []note.Signer{k.Log.Signer, k.A, k.B}},
		{"empty-tree-ok", "policy/none.txt", "ok", CheckpointText(Origin, 0, emptyRoot[:]), nil, []note.Signer{k.Log.Signer}},
		{"empty-tree-bad-root", "policy/none.txt", "ErrMalformed", CheckpointText(Origin, 0, root), nil, []note.Signer{k.Log.Signer}},
		{"size-leading-zero", "policy/none.txt", "ErrMalformed", strings.Replace(text, "\n23\n", "\n023\n", 1), nil, []note.Signer{k.Log.Signer}},
		{"short-root", "policy/none.txt", "ErrMalformed", CheckpointText(Origin, TreeSize, root[:31]), nil, []note.Signer{k.Log.Signer}},
	} {
		if err := checkpoint(c.name, c.policy, c.want, c.text, c.mutate, c.signers...); err != nil {
			return nil, err
		}
	}

	cosigned, err := Sign(text, k.Log.Signer, k.A, k.B)
	if err != nil {
		return nil, err
	}
	proof := func(name, policy, want string, extra []byte, index, entry int64, mutate func([][]byte), cp []byte) error {
		hashes, err := tree.Prove(index, TreeSize)
		if err != nil {
			return fmt.Errorf("proving %s: %w", name, err)
		}
		if mutate != nil {
			mutate(hashes)
		}
		file := "proof/" + name + ".tlog-proof"
		files[file] = ProofText(extra, index, hashes, cp)
		cases = append(cases, Case{Name: name, Policy: policy, Proof: file, Entry: string(Entry(int(entry))), Want: want})
		return nil
	}
	flipHash := func(h [][]byte) {
		h[len(h)-1] = append([]byte(nil), h[len(h)-1]...)
		h[len(h)-1][0] ^= 1
	}
	onlyLog, err := Sign(text, k.Log.Signer)
	if err != nil {
		return nil, err
	}
	wrongLog, err := Sign(text, k.WrongLog.Signer, k.A, k.B)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name, policy, want string
		extra              []byte
		index, entry       int64
		mutate             func([][]byte)
		cp                 []byte
	}{
		{"first", "policy/2of3.txt", "ok", nil, 0, 0, nil, cosigned},
		{"middle", "policy/2of3.txt", "ok", nil, 7, 7, nil, cosigned},
		{"last", "policy/2of3.txt", "ok", nil, TreeSize - 1, TreeSize - 1, nil, cosigned},
		{"extra", "policy/single.txt", "ok", []byte("vitrine-agent_1.0.0_linux_amd64.tar.gz"), 16, 16, nil, cosigned},
		{"wrong-leaf", "policy/2of3.txt", "ErrInclusion", nil, 7, 8, nil, cosigned},
		{"flipped-hash", "policy/2of3.txt", "ErrInclusion", nil, 7, 7, flipHash, cosigned},
		{"no-quorum", "policy/2of3.txt", "ErrQuorum", nil, 7, 7, nil, onlyLog},
		{"wrong-log-key", "policy/2of3.txt", "ErrLogSignature", nil, 7, 7, nil, wrongLog},
	} {
		if err := proof(c.name, c.policy, c.want, c.extra, c.index, c.entry, c.mutate, c.cp); err != nil {
			return nil, err
		}
	}
	// A proof for entry 7 presented as entry 6's, and one whose index is
	// past the end of the tree.
	hashes, err := tree.Prove(7, TreeSize)
	if err != nil {
		return nil, err
	}
	files["proof/wrong-index.tlog-proof"] = ProofText(nil, 6, hashes, cosigned)
	cases = append(cases, Case{Name: "wrong-index", Policy: "policy/2of3.txt", Proof: "proof/wrong-index.tlog-proof", Entry: string(Entry(7)), Want: "ErrInclusion"})
	files["proof/index-out-of-range.tlog-proof"] = ProofText(nil, TreeSize, hashes, cosigned)
	cases = append(cases, Case{Name: "index-out-of-range", Policy: "policy/2of3.txt", Proof: "proof/index-out-of-range.tlog-proof", Entry: string(Entry(TreeSize)), Want: "ErrInclusion"})

	// A one-entry tree: the proof has no hashes.
	one, err := tree.Root(1)
	if err != nil {
		return nil, err
	}
	cp1, err := Sign(CheckpointText(Origin, 1, one), k.Log.Signer, k.A)
	if err != nil {
		return nil, err
	}
	files["proof/size-one.tlog-proof"] = ProofText(nil, 0, nil, cp1)
	cases = append(cases, Case{Name: "size-one", Policy: "policy/single.txt", Proof: "proof/size-one.tlog-proof", Entry: string(Entry(0)), Want: "ok"})

	manifest, err := json.MarshalIndent(cases, "", "\t")
	if err != nil {
		return nil, err
	}
	files["vectors.json"] = append(manifest, '\n')
	return files, nil
}
