//go:build js && wasm

// Command wasm is the Transparency Center's verifier in the reader's
// browser: the repository's own tlog code compiled to WebAssembly
// (internal/center/static/verify.wasm, rebuilt and compared byte for byte
// by TestVerifierReproducible). The page hands it an entry, its
// c2sp.org/tlog-proof, the log's verifier key and witness policy, as the
// reader's browser received them; it answers whether the proof holds,
// and if not, what failed.
package main

import (
	"syscall/js"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/tlog"
)

// verify(entry, proof, vkey, policy) returns {ok: bool, error: string,
// size: number, origin: string, index: number, cosigners: [string]}. A
// policy that asks for no witness is refused.
func verify(_ js.Value, args []js.Value) any {
	fail := func(msg string) any { return map[string]any{"ok": false, "error": msg} }
	if len(args) != 4 {
		return fail("verify takes an entry, a proof, a verifier key and a witness policy")
	}
	entry, proof, vkey, policy := args[0].String(), args[1].String(), args[2].String(), args[3].String()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return fail("the log's key: " + err.Error())
	}
	pol, err := tlog.ParsePolicy([]byte(policy))
	if err != nil {
		return fail("the witness policy: " + err.Error())
	}
	if pol.Quorum() == "none" || len(pol.Witnesses) == 0 {
		return fail("the witness policy asks for no witness: nothing but the log's own word")
	}
	p, err := tlog.ParseProof([]byte(proof))
	if err != nil {
		return fail("the proof: " + err.Error())
	}
	cp, err := p.Verify(tlog.LeafHash([]byte(entry)), v, pol)
	if err != nil {
		return fail(err.Error())
	}
	cosigners := make([]any, len(cp.Cosigners))
	for i, c := range cp.Cosigners {
		cosigners[i] = c
	}
	return map[string]any{"ok": true, "error": "", "size": float64(cp.Size), "origin": cp.Origin, "index": float64(p.Index), "cosigners": cosigners}
}

func main() {
	js.Global().Set("vitrineVerifyProof", js.FuncOf(verify))
	select {} // the page calls it for as long as it is open
}
