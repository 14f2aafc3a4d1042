package witness

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/keys"
)

// loadOrCreateKey returns the witness's cosignature/v1 signer and verifier
// key. The key lives in dir/witness.key as an Ed25519 signed-note skey,
// generated on first use; dir/witness.vkey is rewritten whenever it does not
// hold the verifier key, so operators can copy it into witness policies.
//
// The skey never appears in an error or a log record.
func loadOrCreateKey(dir, name string, logger *slog.Logger) (note.Signer, string, error) {
	path := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		skey, _, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, "", fmt.Errorf("generating witness key %q: %w", name, err)
		}
		if err := keys.WriteFileAtomic(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("storing witness key: %w", err)
		}
		logger.Info("generated witness key", "name", name, "path", path)
		b = []byte(skey)
	case err != nil:
		return nil, "", fmt.Errorf("reading witness key: %w", err)
	default:
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			logger.Warn("witness key file is readable by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
	}
	skey := strings.TrimSpace(string(b))

	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, "", fmt.Errorf("parsing witness key %s: %w", path, err)
	}
	if signer.Name() != name {
		return nil, "", fmt.Errorf("witness key %s is named %q, not %q", path, signer.Name(), name)
	}
	vkey, err := cosignatureVKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("witness key %s: %w", path, err)
	}
	// The derived key must verify what the signer signs; anything else would
	// hand out a key that checks none of our cosignatures.
	if err := checkPair(signer, vkey); err != nil {
		return nil, "", fmt.Errorf("witness key %s: %w", path, err)
	}

	vpath := filepath.Join(dir, vkeyFile)
	if cur, err := os.ReadFile(vpath); err != nil || strings.TrimSpace(string(cur)) != vkey {
		if err := keys.WriteFileAtomic(vpath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("storing witness verifier key: %w", err)
		}
	}
	return signer, vkey, nil
}

// cosignatureVKey derives the cosignature/v1 verifier key of an Ed25519
// signed-note skey.
func cosignatureVKey(skey string) (string, error) {
	vkey, err := keys.VerifierKey(skey)
	if err != nil {
		return "", err
	}
	cv, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		return "", fmt.Errorf("deriving cosignature/v1 verifier key: %w", err)
	}
	return cv, nil
}

// checkPair checks that vkey verifies what signer signs.
func checkPair(signer note.Signer, vkey string) error {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return fmt.Errorf("derived verifier key: %w", err)
	}
	// Cosignatures are over checkpoints only.
	msg := emptyCheckpoint("vitrine.invalid/key-check")
	sig, err := signer.Sign(msg)
	if err != nil {
		return fmt.Errorf("signing with the witness key: %w", err)
	}
	if v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() || !v.Verify(msg, sig) {
		return errors.New("derived verifier key does not verify the signer's signatures")
	}
	return nil
}
