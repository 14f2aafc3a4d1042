package seal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRoundTripAndBinding(t *testing.T) {
	key := NewKey()
	b := Binding{KeyID: "sha256:" + string(bytes.Repeat([]byte("ab"), 32)), SHA256: string(bytes.Repeat([]byte("c"), 64)), Time: time.Date(2026, 11, 24, 6, 0, 0, 123456000, time.UTC)}
	p := Personal{EndpointID: "ep-1", URL: "https://example.com/x", Path: `C:\Users\someone\x.exe`}
	sealed, err := Seal(key, b, p)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("someone")) || bytes.Contains(sealed, []byte("example.com")) {
		t.Fatal("sealed bytes hold the personal fields in clear")
	}
	got, err := Open(key, b, sealed)
	if err != nil || got != p {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, p)
	}
	// Any change of key, binding or ciphertext fails.
	other := b
	other.SHA256 = string(bytes.Repeat([]byte("d"), 64))
	later := b
	later.Time = b.Time.Add(time.Microsecond)
	moved := b
	moved.KeyID = "sha256:" + string(bytes.Repeat([]byte("ef"), 32))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		key    []byte
		b      Binding
		sealed []byte
	}{
		"other key":   {NewKey(), b, sealed},
		"other hash":  {key, other, sealed},
		"other time":  {key, later, sealed},
		"other batch": {key, moved, sealed},
		"flipped bit": {key, b, flipped},
		"truncated":   {key, b, sealed[:10]},
		"empty":       {key, b, nil},
	} {
		if _, err := Open(tc.key, tc.b, tc.sealed); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open = %v, want ErrOpen", name, err)
		}
	}
	if _, err := Open(key[:16], b, sealed); err == nil {
		t.Error("Open with a 16-byte key succeeded")
	}
	// Two seals of the same half differ (fresh nonces).
	again, _ := Seal(key, b, p)
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same fields are equal")
	}
}

func FuzzOpen(f *testing.F) {
	key := NewKey()
	b := Binding{KeyID: "k", SHA256: "s", Time: time.Unix(1, 0)}
	sealed, _ := Seal(key, b, Personal{EndpointID: "e"})
	f.Add(sealed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Opening anything but the genuine seal must fail, and never
		// panic.
		if _, err := Open(key, b, data); err == nil && !bytes.Equal(data, sealed) {
			t.Fatalf("Open accepted forged input %x", data)
		}
	})
}
