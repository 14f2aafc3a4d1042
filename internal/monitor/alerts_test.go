package monitor

import (
	"bytes"
	"testing"
)

// TestEntryBytes: an alert's entry reads back as the bytes the log holds,
// text or not, including text that happens to start with "base64:".
func TestEntryBytes(t *testing.T) {
	for _, b := range [][]byte{[]byte(`{"v":1}`), {0xff, 0x00, 'x'}, []byte("base64:aGk="), []byte("")} {
		a := Alert{Entry: entryText(b)}
		if got := a.EntryBytes(); !bytes.Equal(got, b) {
			t.Errorf("%q: written %q, read back %q", b, a.Entry, got)
		}
	}
}
