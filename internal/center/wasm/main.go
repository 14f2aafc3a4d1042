//go:build js && wasm

// Command wasm is the Transparency Center's verifier in the reader's
// browser: the repository's own tlog code compiled to WebAssembly
// (internal/center/static/verify.wasm, rebuilt and compared byte for byte
// by TestVerifierReproducible). The page hands it an entry, its
// c2sp.org/tlog-proof, the log's verifier key and witness policy, as the
// reader's browser received them; it answers whether the proof holds,
// and if not, what failed. On a release's page it also checks the
// release's provenance with the release package's own verification
// (release.VerifyProvenance, as the Center's server makes it).
package main

import (
	"context"
	"errors"
	"syscall/js"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/release"
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

// verifyRelease(entry, envelope, releaseKey) checks that envelope (a DSSE
// envelope, as served) is the provenance of the release-log entry, under
// the release key (PEM). It returns {checks: {envelope, signature,
// subjects}, provenance, artifacts}: each check {ok: bool|null, error:
// string}, null for a check not made because one before it failed (in
// that order); provenance is what the verified envelope says of the
// build, artifacts the entry's files, for the page to compare with what
// it shows.
func verifyRelease(_ js.Value, args []js.Value) any {
	names := []string{"envelope", "signature", "subjects"}
	result := func(failed string, msg string) map[string]any {
		checks := map[string]any{}
		ok := true
		for _, n := range names {
			switch {
			case n == failed:
				checks[n] = map[string]any{"ok": false, "error": msg}
				ok = false
			case ok:
				checks[n] = map[string]any{"ok": true, "error": ""}
			default:
				checks[n] = map[string]any{"ok": nil, "error": "not checked: the " + failed + " check failed"}
			}
		}
		return map[string]any{"checks": checks}
	}
	if len(args) != 3 {
		return result("envelope", "verifyRelease takes an entry, an envelope and a release key")
	}
	e, err := release.ParseEntry([]byte(args[0].String()))
	if err != nil {
		return result("envelope", "the release-log entry: "+err.Error())
	}
	key, err := release.ParsePublicKey([]byte(args[2].String()))
	if err != nil {
		return result("signature", "the release key: "+err.Error())
	}
	v, err := release.VerifyProvenance(context.Background(), []byte(args[1].String()), e, key)
	if ce := (*release.CheckError)(nil); errors.As(err, &ce) {
		return result(ce.Check, ce.Err.Error())
	} else if err != nil {
		return result("signature", err.Error())
	}
	out := result("", "")
	b, err := v.Build()
	if err != nil {
		return result("signature", err.Error())
	}
	out["provenance"] = map[string]any{"builder": b.Builder, "invocation": b.Invocation, "source": b.Source, "source_sha256": b.SourceSHA256,
		"toolchain": b.Toolchain, "recipe": string(b.Recipe), "started": b.Started, "finished": b.Finished}
	arts := make([]any, len(e.Artifacts))
	for i, a := range e.Artifacts {
		arts[i] = map[string]any{"name": a.Name, "sha256": a.SHA256}
	}
	out["artifacts"] = arts
	return out
}

func main() {
	js.Global().Set("vitrineVerifyProof", js.FuncOf(verify))
	js.Global().Set("vitrineVerifyRelease", js.FuncOf(verifyRelease))
	select {} // the page calls it for as long as it is open
}
