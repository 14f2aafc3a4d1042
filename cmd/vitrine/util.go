package main

import (
	"encoding/hex"
	"errors"
)

func decodeHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("a hash must be 64 hex digits")
	}
	return b, nil
}
