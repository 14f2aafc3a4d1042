package tilestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
)

// The journal is the log's write-ahead log: a batch is durable once its
// record is written and fdatasync'd, before any tile is touched. Tiles and
// bundles are then written through the page cache and made durable only at
// sync points, when the whole file system is synced and the journal
// segments below the sync point are dropped. Recovery replays the journal
// on top of the last sync point, so a crash anywhere loses nothing that was
// acknowledged.
//
// A record is
//
//	magic "VTJ1" | first index u64 | count u32 | payload length u32 | CRC-32C u32 | payload
//
// where the CRC covers first index, count, length and payload, and the
// payload is the batch's entries in entry-bundle encoding (big-endian uint16
// length, then the bytes), exactly as they go into the bundles.

const (
	recordMagic  = "VTJ1"
	recordHeader = 4 + 8 + 4 + 4 + 4
	segmentExt   = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks journal damage that is not a torn tail.
var errCorrupt = errors.New("journal corrupt")

type record struct {
	first   uint64
	count   uint32
	payload []byte
}

func encodeRecord(buf []byte, first uint64, count uint32, payload []byte) []byte {
	buf = append(buf[:0], recordMagic...)
	buf = binary.BigEndian.AppendUint64(buf, first)
	buf = binary.BigEndian.AppendUint32(buf, count)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	c := crc32.Update(0, castagnoli, buf[4:recordHeader-4])
	c = crc32.Update(c, castagnoli, payload)
	buf = binary.BigEndian.AppendUint32(buf, c)
	return append(buf, payload...)
}

// decodeRecords reads the records in b. It returns the records and the
// offset just past the last complete, intact record. A damaged record
// stops the scan; the caller decides whether that is a torn tail.
func decodeRecords(b []byte) ([]record, int) {
	var recs []record
	off := 0
	for len(b)-off >= recordHeader {
		h := b[off : off+recordHeader]
		if string(h[:4]) != recordMagic {
			break
		}
		first := binary.BigEndian.Uint64(h[4:])
		count := binary.BigEndian.Uint32(h[12:])
		n := int(binary.BigEndian.Uint32(h[16:]))
		want := binary.BigEndian.Uint32(h[20:])
		if n > len(b)-off-recordHeader {
			break
		}
		payload := b[off+recordHeader : off+recordHeader+n]
		c := crc32.Update(0, castagnoli, h[4:recordHeader-4])
		if crc32.Update(c, castagnoli, payload) != want {
			break
		}
		if _, err := splitEntries(payload, int(count)); err != nil {
			break
		}
		recs = append(recs, record{first: first, count: count, payload: payload})
		off += recordHeader + n
	}
	return recs, off
}

// splitEntries splits bundle-encoded entries, requiring exactly want of
// them when want >= 0.
func splitEntries(b []byte, want int) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("truncated entry length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, errors.New("truncated entry")
		}
		out = append(out, b[:2+n])
		b = b[2+n:]
	}
	if want >= 0 && len(out) != want {
		return nil, fmt.Errorf("%d entries, want %d", len(out), want)
	}
	return out, nil
}

// journal is the open tail segment.
type journal struct {
	dir  string
	f    *os.File
	base uint64 // first index this segment may hold
	size int64
	buf  []byte
}

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

// segments lists the journal segments in dir by base index.
func segments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), segmentExt)
		if !ok {
			continue
		}
		b, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: stray file %s", errCorrupt, de.Name())
		}
		bases = append(bases, b)
	}
	slices.Sort(bases)
	return bases, nil
}

// openSegment creates (or opens for appending) the segment starting at
// base, truncated to size bytes.
func openSegment(dir string, base uint64, size int64) (*journal, error) {
	p := filepath.Join(dir, segmentName(base))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return &journal{dir: dir, f: f, base: base, size: size}, nil
}

// append writes one record and makes it durable. On error the segment is
// cut back to where it was; if even that fails the journal is unusable.
func (j *journal) append(first uint64, count uint32, payload []byte) error {
	j.buf = encodeRecord(j.buf, first, count, payload)
	if _, err := j.f.Write(j.buf); err != nil {
		return j.undo(fmt.Errorf("writing journal: %w", err))
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		// After a failed fsync the page cache cannot be trusted.
		return fmt.Errorf("%w: syncing journal: %w", errBroken, err)
	}
	j.size += int64(len(j.buf))
	return nil
}

func (j *journal) undo(cause error) error {
	if err := j.f.Truncate(j.size); err != nil {
		return fmt.Errorf("%w: %w; truncating journal: %w", errBroken, cause, err)
	}
	if _, err := j.f.Seek(j.size, io.SeekStart); err != nil {
		return fmt.Errorf("%w: %w; seeking journal: %w", errBroken, cause, err)
	}
	return cause
}

func (j *journal) close() error { return j.f.Close() }

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
