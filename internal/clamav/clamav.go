// Package clamav runs ClamAV's clamscan, the scanner Vitrine's own is
// checked against: the parity tests and `vitrine-bench scan` compare
// detections with it on the same rule sources and files.
package clamav

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Scan runs clamscan (the program's path) over paths, recursing into
// directories, with only the rule files in ruleDir and every match of
// every file reported (--allmatch). It returns the detections as
// "path: signature" lines, sorted and without repeats, and the CPU time
// clamscan used. A clamscan that fails (any exit status but 0, nothing
// found, and 1, something found) is an error with what it wrote to
// standard error.
func Scan(ctx context.Context, clamscan, ruleDir string, paths ...string) ([]string, time.Duration, error) {
	args := append([]string{"--no-summary", "--allmatch", "--infected", "-r", "-d", ruleDir, "--"}, paths...)
	cmd := exec.CommandContext(ctx, clamscan, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil && (cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1) {
		return nil, 0, fmt.Errorf("clamscan: %v: %s", err, stderr.String())
	}
	found, err := Found(&out)
	if err != nil {
		return nil, 0, fmt.Errorf("clamscan's output: %w", err)
	}
	return found, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// Found reads clamscan's --infected output, lines "path: signature
// FOUND", into "path: signature" lines, sorted and without repeats. It
// fails on a read error or a line over 64 KiB rather than return part of
// the detections.
// ClamAV's ".UNOFFICIAL" suffix, which it gives every signature from
// rule files outside its own signed databases, is removed, so that the
// names are the rule files' own.
func Found(r io.Reader) ([]string, error) {
	var found []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, ok := strings.CutSuffix(sc.Text(), " FOUND")
		if !ok {
			continue
		}
		// Signature names hold no colon (the rule formats separate
		// fields with it); a path may hold ": ".
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			continue
		}
		found = append(found, line[:i]+": "+strings.TrimSuffix(line[i+2:], ".UNOFFICIAL"))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.Sort(found)
	return slices.Compact(found), nil
}
