package tlog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Limits on policy files. The C2SP spec asks implementations to support at
// least 32 logs, 32 witnesses and 32 groups; these are far above that and
// only stop absurd inputs from costing memory and time.
const (
	maxPolicySize        = 1 << 20 // bytes
	maxPolicyDefinitions = 1000    // log, witness, group and quorum lines
)

// Signature types of signed-note verifier keys (c2sp.org/signed-note).
const (
	sigTypeEd25519         = 0x01
	sigTypeCosignatureV1   = 0x04
	sigTypeMLDSA44Cosigner = 0x06
)

// quorumNone is the predefined name of the quorum that needs no cosignature.
const quorumNone = "none"

// policyKeywords are the words that cannot name a witness or a group.
var policyKeywords = map[string]bool{
	"log": true, "witness": true, "group": true, "quorum": true,
	"any": true, "all": true, quorumNone: true,
}

// A Policy is a parsed c2sp.org/tlog-policy file: the logs a verifier
// accepts, the witnesses it knows, and the quorum of cosignatures a
// checkpoint needs.
//
// A Policy is safe for concurrent use. Its exported fields are read-only:
// to change a policy, change its text and parse it again. The zero Policy
// has no quorum and accepts no checkpoint.
type Policy struct {
	// Logs are the log lines, in file order.
	Logs []PolicyLog
	// Witnesses are the witness lines, in file order.
	Witnesses []PolicyWitness

	groups []policyGroup
	quorum string      // quorum name; empty if the policy was not parsed
	root   *quorumNode // nil for the quorum "none"
}

// A PolicyLog is a log line of a policy.
type PolicyLog struct {
	// VKey is the log's Ed25519 signed-note verifier key, as written.
	VKey string
	// URL is the optional log URL, as written; empty if absent.
	URL string
	// Origin is the key name of VKey, which must be the log's origin line.
	Origin string
	// Verifier checks the log's checkpoint signatures.
	Verifier note.Verifier
}

// A PolicyWitness is a witness line of a policy.
type PolicyWitness struct {
	// Name is the witness's name inside the policy file. It has no meaning
	// outside the file and usually differs from the key name of VKey.
	Name string
	// VKey is the witness's cosignature verifier key (signature type 0x04,
	// Ed25519, or 0x06, ML-DSA-44), as written.
	VKey string
	// URL is the optional witness URL, as written; empty if absent.
	URL string
	// Verifier checks the witness's c2sp.org/tlog-cosignature signatures.
	Verifier note.Verifier
}

type policyGroup struct {
	name      string
	threshold string // "any", "all" or a decimal number, as written
	members   []string
}

// A quorumNode is a witness (witness non-nil) or a group of k out of members.
type quorumNode struct {
	witness *PolicyWitness
	k       int
	members []*quorumNode
}

// ParsePolicy parses a c2sp.org/tlog-policy file.
//
// Parsing is strict. Lines are separated by newlines and fields by spaces and
// tabs; comments take whole lines. Other control characters, unknown
// keywords, names used before their definition or listed as a group member
// more than once, malformed or duplicate keys, and a missing or repeated
// quorum line are errors. Log keys must be Ed25519 signed-note keys whose key
// name is the log's origin; witness keys must be cosignature keys (type 0x04
// or 0x06) with a correct key ID. A URL, if given, must be absolute. Files
// larger than 1 MiB or with more than 1000 definitions are rejected.
//
// Errors name the line they concern and match [ErrMalformed] with
// [errors.Is].
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > maxPolicySize {
		return nil, policyError(0, "file is %d bytes, more than the limit of %d", len(b), maxPolicySize)
	}
	ps := &policyParser{
		p:          &Policy{},
		names:      make(map[string]*quorumNode),
		memberOf:   make(map[string]string),
		logKeys:    make(map[string]int),
		witnessKey: make(map[string]string),
		witnessID:  make(map[string]string),
	}
	defs := 0
	for i, line := range bytes.Split(b, []byte("\n")) {
		n := i + 1
		if err := checkPolicyOctets(line); err != nil {
			return nil, policyError(n, "%s", err)
		}
		fields := strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if defs++; defs > maxPolicyDefinitions {
			return nil, policyError(n, "more than %d definitions", maxPolicyDefinitions)
		}
		if err := ps.line(n, fields); err != nil {
			return nil, err
		}
	}
	if ps.p.quorum == "" {
		return nil, policyError(0, "no quorum line")
	}
	return ps.p, nil
}

// checkPolicyOctets allows tab, 0x20-0x7E and 0x80-0xFF; newlines are
// already gone.
func checkPolicyOctets(line []byte) error {
	for _, c := range line {
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			if c == '\r' {
				return fmt.Errorf("carriage return (policy lines end with a newline only)")
			}
			return fmt.Errorf("control character 0x%02x", c)
		}
	}
	return nil
}

type policyParser struct {
	p          *Policy
	names      map[string]*quorumNode // witnesses and groups
	memberOf   map[string]string      // name -> group it is a member of
	logKeys    map[string]int         // public key -> index in p.Logs
	witnessKey map[string]string      // public key -> witness name
	witnessID  map[string]string      // key name and key ID -> witness name
	quorumLine int
}

func (ps *policyParser) line(n int, f []string) error {
	switch f[0] {
	case "log":
		if len(f) < 2 || len(f) > 3 {
			return policyError(n, "want \"log <vkey> [<url>]\", got %d fields", len(f))
		}
		return ps.log(n, f[1], optional(f, 2))
	case "witness":
		if len(f) < 3 || len(f) > 4 {
			return policyError(n, "want \"witness <name> <vkey> [<url>]\", got %d fields", len(f))
		}
		return ps.witness(n, f[1], f[2], optional(f, 3))
	case "group":
		if len(f) < 4 {
			return policyError(n, "want \"group <name> <k|any|all> <member>...\" with at least one member")
		}
		return ps.group(n, f[1], f[2], f[3:])
	case "quorum":
		if len(f) != 2 {
			return policyError(n, "want \"quorum <name>\", got %d fields", len(f))
		}
		return ps.setQuorum(n, f[1])
	default:
		return policyError(n, "unknown keyword %q", f[0])
	}
}

func optional(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

func (ps *policyParser) log(n int, vkey, u string) error {
	if err := checkPolicyURL(u); err != nil {
		return policyError(n, "log %s", err)
	}
	typ, key, err := splitVKey(vkey)
	if err != nil {
		return policyError(n, "log key %q: %s", vkey, err)
	}
	if typ != sigTypeEd25519 {
		return policyError(n, "log key %q has signature type 0x%02x, want 0x%02x (Ed25519)", vkey, typ, sigTypeEd25519)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return policyError(n, "log key %q: %s", vkey, err)
	}
	if i, ok := ps.logKeys[string(key)]; ok {
		return policyError(n, "log key %q has the same public key as log %q", vkey, ps.p.Logs[i].VKey)
	}
	ps.logKeys[string(key)] = len(ps.p.Logs)
	ps.p.Logs = append(ps.p.Logs, PolicyLog{VKey: vkey, URL: u, Origin: v.Name(), Verifier: v})
	return nil
}

func (ps *policyParser) witness(n int, name, vkey, u string) error {
	if err := ps.checkNewName(name); err != nil {
		return policyError(n, "witness %s", err)
	}
	if err := checkPolicyURL(u); err != nil {
		return policyError(n, "witness %q %s", name, err)
	}
	typ, key, err := splitVKey(vkey)
	if err != nil {
		return policyError(n, "witness %q key: %s", name, err)
	}
	if typ != sigTypeCosignatureV1 && typ != sigTypeMLDSA44Cosigner {
		return policyError(n, "witness %q key has signature type 0x%02x, want 0x%02x (Ed25519 cosignature) or 0x%02x (ML-DSA-44 cosignature)",
			name, typ, sigTypeCosignatureV1, sigTypeMLDSA44Cosigner)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return policyError(n, "witness %q key: %s", name, err)
	}
	// The library does not check the key ID written in the vkey; a wrong
	// one would make every cosignature look unknown.
	_, rest, _ := strings.Cut(vkey, "+")
	id, _, _ := strings.Cut(rest, "+")
	if h, err := strconv.ParseUint(id, 16, 32); err != nil || uint32(h) != v.KeyHash() {
		return policyError(n, "witness %q key ID %q does not match its key (want %08x)", name, id, v.KeyHash())
	}
	if other, ok := ps.witnessKey[string(key)]; ok {
		return policyError(n, "witness %q has the same public key as witness %q", name, other)
	}
	nameID := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
	if other, ok := ps.witnessID[nameID]; ok {
		return policyError(n, "witness %q has the same key name and key ID as witness %q", name, other)
	}
	ps.witnessKey[string(key)] = name
	ps.witnessID[nameID] = name
	w := PolicyWitness{Name: name, VKey: vkey, URL: u, Verifier: v}
	ps.p.Witnesses = append(ps.p.Witnesses, w)
	ps.names[name] = &quorumNode{witness: &w}
	return nil
}

func (ps *policyParser) group(n int, name, threshold string, members []string) error {
	if err := ps.checkNewName(name); err != nil {
		return policyError(n, "group %s", err)
	}
	node := &quorumNode{}
	for _, m := range members {
		if m == quorumNone {
			return policyError(n, "%q cannot be a member of group %q", quorumNone, name)
		}
		child, ok := ps.names[m]
		if !ok {
			return policyError(n, "unknown witness or group %q in group %q (define it on an earlier line)", m, name)
		}
		if g, ok := ps.memberOf[m]; ok {
			if g == name {
				return policyError(n, "%q is listed twice in group %q", m, name)
			}
			return policyError(n, "%q is already a member of group %q", m, g)
		}
		ps.memberOf[m] = name
		node.members = append(node.members, child)
	}
	switch threshold {
	case "any":
		node.k = 1
	case "all":
		node.k = len(members)
	default:
		k, ok := parseDecimal(threshold)
		if !ok || k < 1 || k > uint64(len(members)) {
			return policyError(n, "threshold %q of group %q is not any, all or a number from 1 to %d", threshold, name, len(members))
		}
		node.k = int(k)
	}
	ps.names[name] = node
	ps.p.groups = append(ps.p.groups, policyGroup{name: name, threshold: threshold, members: members})
	return nil
}

func (ps *policyParser) setQuorum(n int, name string) error {
	if ps.p.quorum != "" {
		return policyError(n, "second quorum line (the first is line %d)", ps.quorumLine)
	}
	if name != quorumNone {
		node, ok := ps.names[name]
		if !ok {
			return policyError(n, "unknown witness or group %q in quorum (define it on an earlier line)", name)
		}
		ps.p.root = node
	}
	ps.p.quorum = name
	ps.quorumLine = n
	return nil
}

func (ps *policyParser) checkNewName(name string) error {
	if policyKeywords[name] {
		return fmt.Errorf("name %q is a keyword", name)
	}
	if _, ok := ps.names[name]; ok {
		return fmt.Errorf("name %q is already defined", name)
	}
	return nil
}

// checkPolicyURL accepts an empty (absent) URL or an absolute one. Rejecting
// relative URLs catches a trailing "# comment", which the spec does not allow.
func checkPolicyURL(u string) error {
	if u == "" {
		return nil
	}
	if strings.HasPrefix(u, "#") {
		return fmt.Errorf("URL %q starts with # (comments must be on lines of their own)", u)
	}
	pu, err := url.Parse(u)
	if err != nil || !pu.IsAbs() {
		return fmt.Errorf("URL %q is not an absolute URL", u)
	}
	return nil
}

// splitVKey returns the signature type and public key of a vkey
// "<name>+<hex key ID>+<base64(type || key)>".
func splitVKey(vkey string) (typ byte, key []byte, err error) {
	_, rest, ok1 := strings.Cut(vkey, "+")
	_, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return 0, nil, fmt.Errorf("not a vkey (want <name>+<key ID>+<key>)")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) < 1+ed25519.PublicKeySize {
		return 0, nil, fmt.Errorf("malformed public key")
	}
	return b[0], b[1:], nil
}

// Marshal returns the policy in canonical form: logs, then witnesses, then
// groups, then the quorum, one per line with single spaces and no comments.
// ParsePolicy reads the result back to an equal policy, and Marshal of that
// returns the same bytes.
func (p *Policy) Marshal() []byte {
	var b bytes.Buffer
	for _, l := range p.Logs {
		b.WriteString("log " + l.VKey)
		writeOptional(&b, l.URL)
	}
	for _, w := range p.Witnesses {
		b.WriteString("witness " + w.Name + " " + w.VKey)
		writeOptional(&b, w.URL)
	}
	for _, g := range p.groups {
		b.WriteString("group " + g.name + " " + g.threshold + " " + strings.Join(g.members, " ") + "\n")
	}
	if p.quorum != "" {
		b.WriteString("quorum " + p.quorum + "\n")
	}
	return b.Bytes()
}

func writeOptional(b *bytes.Buffer, s string) {
	if s != "" {
		b.WriteString(" " + s)
	}
	b.WriteString("\n")
}

// Quorum returns the name on the quorum line: a witness, a group, or "none".
// It returns "" for a Policy that did not come from ParsePolicy.
func (p *Policy) Quorum() string {
	return p.quorum
}

// Satisfied reports whether the witnesses for which cosigned returns true
// meet the quorum. The quorum "none" is always satisfied; a Policy that did
// not come from ParsePolicy never is. Satisfied calls cosigned at most once
// per witness and never for a witness outside the quorum.
func (p *Policy) Satisfied(cosigned func(w PolicyWitness) bool) bool {
	if p == nil || p.quorum == "" {
		return false
	}
	if p.root == nil {
		return true
	}
	if cosigned == nil {
		cosigned = func(PolicyWitness) bool { return false }
	}
	return p.root.satisfied(cosigned)
}

func (n *quorumNode) satisfied(cosigned func(w PolicyWitness) bool) bool {
	if n.witness != nil {
		return cosigned(*n.witness)
	}
	// Every member is evaluated: a name is a member of one group at most, so
	// the quorum is a tree and this visits each witness once.
	got := 0
	for _, m := range n.members {
		if m.satisfied(cosigned) {
			got++
		}
	}
	return got >= n.k
}

// WitnessVerifiers returns the cosignature verifiers of all witnesses, in
// file order, for use with note.VerifierList.
func (p *Policy) WitnessVerifiers() []note.Verifier {
	vs := make([]note.Verifier, 0, len(p.Witnesses))
	for _, w := range p.Witnesses {
		vs = append(vs, w.Verifier)
	}
	return vs
}

// Log returns the first log whose origin (key name) is origin.
func (p *Policy) Log(origin string) (PolicyLog, bool) {
	for _, l := range p.Logs {
		if l.Origin == origin {
			return l, true
		}
	}
	return PolicyLog{}, false
}

// SingleWitnessPolicy returns the text of a policy that requires a
// cosignature from one witness: "witness <name> <vkey> [<url>]" and
// "quorum <name>". It returns an error if that text does not parse, for
// example because vkey is not a cosignature key.
func SingleWitnessPolicy(name, vkey, url string) ([]byte, error) {
	for _, f := range []string{name, vkey, url} {
		if strings.ContainsAny(f, " \t\n") {
			return nil, fmt.Errorf("building single-witness policy: %q contains whitespace", f)
		}
	}
	w := "witness " + name + " " + vkey
	if url != "" {
		w += " " + url
	}
	text := []byte(w + "\nquorum " + name + "\n")
	if _, err := ParsePolicy(text); err != nil {
		return nil, fmt.Errorf("building single-witness policy: %w", err)
	}
	return text, nil
}
