package witness

import (
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ParseLogList parses the list of logs a witness trusts: one Ed25519
// signed-note verifier key per line, whose key name is the log's origin.
// Text from a '#' to the end of its line is a comment; blank lines are
// ignored. A malformed key or an origin listed twice is an error that names
// the line.
func ParseLogList(b []byte) ([]LogKey, error) {
	var logs []LogKey
	seen := make(map[string]int) // origin to line number
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		line, _, _ = strings.Cut(line, "#")
		fields := strings.Fields(line)
		switch len(fields) {
		case 0:
			continue
		case 1:
		default:
			return nil, fmt.Errorf("parsing log list: line %d: want one verifier key, found %d fields", n, len(fields))
		}
		vkey := fields[0]
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("parsing log list: line %d: %w", n, err)
		}
		if first, dup := seen[v.Name()]; dup {
			return nil, fmt.Errorf("parsing log list: line %d: origin %q is already listed on line %d", n, v.Name(), first)
		}
		seen[v.Name()] = n
		logs = append(logs, LogKey{Origin: v.Name(), VKey: vkey})
	}
	return logs, nil
}
