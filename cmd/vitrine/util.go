package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

func decodeHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("a hash must be 64 hex digits")
	}
	return b, nil
}

// readToken reads a bearer token from a file (tokens never travel in flag
// values); what names the token in the error.
func readToken(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}
