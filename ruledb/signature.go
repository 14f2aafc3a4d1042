package ruledb

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Kind says which ClamAV format a signature comes from and which section of
// a compiled database holds it.
type Kind uint8

const (
	// KindMD5 is a whole-file MD5 hash signature (ClamAV .hdb).
	KindMD5 Kind = iota
	// KindSHA256 is a whole-file SHA-256 hash signature (ClamAV .hsb).
	KindSHA256
	// KindBody is an extended body signature (ClamAV .ndb).
	KindBody

	numKinds = 3
)

func (k Kind) String() string {
	switch k {
	case KindMD5:
		return "md5"
	case KindSHA256:
		return "sha256"
	case KindBody:
		return "body"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// hashLen is the length in bytes of the hash of a hash signature kind.
func (k Kind) hashLen() int {
	if k == KindMD5 {
		return 16
	}
	return 32
}

const (
	// UnknownSize is the Size of a hash signature written with "*" for its
	// size, which ClamAV accepts from functionality level 73 on.
	UnknownSize int64 = -1
	// AnyOffset is the Offset of a body signature written with "*".
	AnyOffset int64 = -1

	// MaxTarget is the largest target type ClamAV defines (14, "other");
	// 0 is any file, 1 PE, 2 OLE2, 3 HTML, 4 mail, 5 graphics, 6 ELF,
	// 7 normalised ASCII text, 8 unused, 9 Mach-O, 10 PDF, 11 Flash,
	// 12 Java class, 13 internal.
	MaxTarget = 14

	maxSize   = 1 << 62
	maxOffset = 1<<32 - 1
	maxName   = 1024
)

// Signature is one rule. Which fields are meaningful depends on Kind: hash
// signatures use Hash and Size, body signatures use Target, Offset and
// Pattern. Fields that do not apply are zero.
type Signature struct {
	Kind Kind
	// Name is the detection name reported on a match. It is printable
	// ASCII without spaces or colons.
	Name string

	// Hash is the MD5 (16 bytes) or SHA-256 (32 bytes) of the whole file.
	Hash []byte
	// Size is the file size in bytes, or UnknownSize.
	Size int64

	// Target is ClamAV's target type, 0 (any file) to MaxTarget.
	Target uint32
	// Offset is the absolute offset of the match, or AnyOffset.
	Offset int64
	// Pattern is the body signature in ClamAV's hex-signature syntax, in
	// canonical form: lower-case hex, numbers without leading zeros.
	Pattern string

	// MinFLevel and MaxFLevel are the optional ClamAV functionality levels
	// the signature needs; 0 means not given.
	MinFLevel, MaxFLevel uint32
}

// String returns the signature as a line of its ClamAV text format, which
// Parse reads back to an equal Signature.
func (s Signature) String() string {
	var b strings.Builder
	switch s.Kind {
	case KindMD5, KindSHA256:
		b.WriteString(hex.EncodeToString(s.Hash))
		b.WriteByte(':')
		b.WriteString(starOr(s.Size))
		b.WriteByte(':')
		b.WriteString(s.Name)
	default:
		b.WriteString(s.Name)
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(s.Target), 10))
		b.WriteByte(':')
		b.WriteString(starOr(s.Offset))
		b.WriteByte(':')
		b.WriteString(s.Pattern)
	}
	if s.MinFLevel != 0 || s.MaxFLevel != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(s.MinFLevel), 10))
	}
	if s.MaxFLevel != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(s.MaxFLevel), 10))
	}
	return b.String()
}

// starOr formats v, or -1 (UnknownSize, AnyOffset) as "*".
func starOr(v int64) string {
	if v == -1 {
		return "*"
	}
	return strconv.FormatInt(v, 10)
}

// check reports whether s is a signature Parse could have produced.
func (s *Signature) check() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	if s.MaxFLevel != 0 && s.MaxFLevel < s.MinFLevel {
		return fmt.Errorf("max functionality level %d below min %d", s.MaxFLevel, s.MinFLevel)
	}
	switch s.Kind {
	case KindMD5, KindSHA256:
		if len(s.Hash) != s.Kind.hashLen() {
			return fmt.Errorf("%s hash has %d bytes, want %d", s.Kind, len(s.Hash), s.Kind.hashLen())
		}
		if s.Size != UnknownSize && (s.Size < 0 || s.Size > maxSize) {
			return fmt.Errorf("size %d out of range", s.Size)
		}
		if s.Target != 0 || s.Offset != 0 || s.Pattern != "" {
			return fmt.Errorf("hash signature with body fields")
		}
	case KindBody:
		if s.Hash != nil || s.Size != 0 {
			return fmt.Errorf("body signature with hash fields")
		}
		if s.Target > MaxTarget {
			return fmt.Errorf("target %d out of range 0-%d", s.Target, MaxTarget)
		}
		if s.Offset != AnyOffset && (s.Offset < 0 || s.Offset > maxOffset) {
			return fmt.Errorf("offset %d out of range", s.Offset)
		}
		canon, err := parsePattern(s.Pattern)
		if err != nil {
			return err
		}
		if canon != s.Pattern {
			return fmt.Errorf("pattern not in canonical form %q", canon)
		}
	default:
		return fmt.Errorf("unknown kind %d", s.Kind)
	}
	return nil
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > maxName {
		return fmt.Errorf("name longer than %d bytes", maxName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("name %q: byte %q not allowed", name, c)
		}
	}
	return nil
}
