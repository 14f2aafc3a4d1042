// Package scan matches files against a rule database (package ruledb) the
// way ClamAV's clamscan does for plain files, in one pass over each file,
// on every core.
//
// # Use
//
//	db, err := ruledb.Open(data)
//	s, err := scan.New(db)
//	matches, err := s.ScanFile("/tmp/x.exe")
//	err = s.ScanPaths(ctx, []string{"/home"}, 0, func(r scan.Result) { … })
//
// A [Scanner] is immutable and safe for concurrent use. [Scanner.ScanPaths]
// walks directories and scans runtime.NumCPU() files at once, reporting a
// [Result] (path, matches, error) per file; an unreadable file is a Result
// with an error, never a failed walk.
//
// # Hash signatures
//
// MD5 (.hdb) and SHA-256 (.hsb) signatures match a whole file of the given
// size. A file is hashed, in the same pass that reads it for the body
// signatures, only when some signature names its size or has an unknown
// size.
//
// # Body signatures
//
// Body signatures (.ndb) support everything ruledb accepts: the wildcards
// ??, a?, ?a, *, {n}, {n-m}, {-n}, {n-}, the alternatives (aa|bb) and
// !(aa|bb), offsets * and absolute n. A pattern is split at its variable
// gaps (*, {n-m}, {-n}, {n-}) into parts. Each part gets an anchor — four
// (or, when the part has no longer run, two) fixed bytes of it — and one
// pass over the file looks every position up in a hashed anchor table,
// verifying the whole part in place around each hit. Parts of one
// signature are chained as the pass moves on: a part counts only if an
// earlier part, itself chained, ended within the gap before it. So files
// are streamed in chunks with a window as long as the longest part, and a
// * gap may span any distance, including across files larger than memory.
//
// # Target types
//
// As in clamscan, a file's type comes from its first bytes: "MZ" is PE
// (target 1), "\x7fELF" is ELF (target 6), and a file whose first 1024
// bytes are ASCII text characters is text. Every file is matched against
// signatures of target 0, PE and ELF files also against those of their own
// target. A text file of at most 5 MiB is also normalised as ClamAV does
// (lower case, white space runs to one space, other control and non-ASCII
// bytes dropped) and the normalised text matched against target 0 and 7
// signatures. The scanner detects no other types: body signatures of
// targets 2–5 and 8–14 (OLE2, HTML, mail, graphics, Mach-O, PDF, Flash,
// Java, …) match nothing, and [Scanner.Skipped] lists them, as it lists
// signatures outside the functionality level [FLevel] that ClamAV 1.4
// skips.
//
// # Differences from clamscan
//
// The scanner does not unpack or decode anything: archives, documents,
// mail, HTML, UTF-8 and UTF-16 text are matched as their raw bytes only,
// where clamscan also scans what it extracts. It has no size limits, where
// clamscan by default skips files over 100 MB. Empty files match nothing,
// as clamscan skips them. clamscan normalises text in 128 KiB pieces and
// can miss a match that spans two of them; the scanner does not.
package scan
