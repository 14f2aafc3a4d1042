package residency

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/note"
)

// Marshal returns the canonical encoding of p: JSON with the keys in the
// order version, default, regions and name, url, countries, regions sorted
// by name, countries sorted, every key present, no insignificant
// whitespace, and a final newline. Equal policies give equal bytes, and
// [ParsePolicy] reads the result back to p, up to order.
//
// Marshal does not validate p; [Sign] does.
func (p *Policy) Marshal() []byte {
	regions := slices.Clone(p.Regions)
	slices.SortStableFunc(regions, func(a, b Region) int {
		return cmp.Compare(a.Name, b.Name)
	})
	var b bytes.Buffer
	b.WriteString(`{"version":`)
	b.WriteString(strconv.FormatUint(p.Version, 10))
	b.WriteString(`,"default":`)
	writeString(&b, p.Default)
	b.WriteString(`,"regions":[`)
	for i, r := range regions {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":`)
		writeString(&b, r.Name)
		b.WriteString(`,"url":`)
		writeString(&b, r.URL)
		b.WriteString(`,"countries":[`)
		cs := slices.Clone(r.Countries)
		slices.Sort(cs)
		for j, c := range cs {
			if j > 0 {
				b.WriteByte(',')
			}
			writeString(&b, c)
		}
		b.WriteString("]}")
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

// writeString writes s as a JSON string. Valid policies hold only printable
// ASCII; anything else is escaped so that the output is still JSON that
// reads back to s.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteByte(byte(r))
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00`)
			b.WriteByte(hex[r>>4])
			b.WriteByte(hex[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// noteHeader is the first line of a signed policy. It separates policy
// signatures from every other note the same key could sign.
const noteHeader = "vitrine residency policy v1\n"

// maxNoteSize bounds a signed policy: a policy and a few signatures.
const maxNoteSize = MaxPolicySize + 64<<10

// Sign validates p and returns it as a signed note, the entry format of the
// policy log: the text is the line "vitrine residency policy v1" followed
// by [Policy.Marshal], signed by signer.
func Sign(p *Policy, signer note.Signer) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("signing residency policy: %w", err)
	}
	msg, err := note.Sign(&note.Note{Text: noteHeader + string(p.Marshal())}, signer)
	if err != nil {
		return nil, fmt.Errorf("signing residency policy: %w", err)
	}
	return msg, nil
}

// Open verifies a signed policy made by [Sign] and returns the policy. The
// note must carry a valid signature by verifier (other signatures are
// ignored), start with the policy header, and hold a valid policy in
// canonical form: a signed policy has exactly one encoding.
func Open(entry []byte, verifier note.Verifier) (*Policy, error) {
	if len(entry) > maxNoteSize {
		return nil, fmt.Errorf("opening residency policy: larger than %d bytes", maxNoteSize)
	}
	n, err := note.Open(entry, note.VerifierList(verifier))
	if err != nil {
		return nil, fmt.Errorf("opening residency policy: %w", err)
	}
	body, ok := bytes.CutPrefix([]byte(n.Text), []byte(noteHeader))
	if !ok {
		return nil, fmt.Errorf("opening residency policy: the note does not start with %q", noteHeader[:len(noteHeader)-1])
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("opening residency policy: %w", err)
	}
	if !bytes.Equal(p.Marshal(), body) {
		return nil, fmt.Errorf("opening residency policy: the policy is not in canonical form")
	}
	return p, nil
}

// IsPolicyEntry reports whether a log entry claims to be a signed residency
// policy (it starts with the policy header). A log may hold other entries;
// one that claims to be a policy must then pass [Open].
func IsPolicyEntry(entry []byte) bool {
	return len(entry) >= len(noteHeader) && string(entry[:len(noteHeader)]) == noteHeader
}
