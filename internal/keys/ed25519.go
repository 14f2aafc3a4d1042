package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

const algEd25519 = 1

func decodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != algEd25519 {
		return nil, errors.New("deriving verifier key: signing key is not an Ed25519 key")
	}
	return b[1:], nil
}

func ed25519VKey(name string, seed []byte) (string, error) {
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	v, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return "", fmt.Errorf("deriving verifier key: %w", err)
	}
	return v, nil
}
