package tilestore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends. It skips the test where mounting is not permitted
// (it takes root, or CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size); err != nil {
		t.Skipf("this test fills a real file system, a tmpfs it mounts, and mounting is not permitted here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return p
		}
	}
}

// The disk of an access log fills up until a sync point fails, then is
// freed. The store must take appends again within seconds, without being
// reopened, and lose nothing it acknowledged. (Before, it refused every
// append with "restart to recover" until the process restarted.)
func TestRecoverFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	cfg := Config{Path: filepath.Join(mnt, "log"), SyncInterval: 10 * time.Millisecond}
	l := mustOpenLog(t, cfg)
	acked := map[uint64][]byte{}
	add := func(e []byte) error {
		idx, err := appendOne(l, e)
		if err == nil {
			if acked[idx] != nil {
				t.Fatalf("index %d acknowledged twice", idx)
			}
			acked[idx] = e
		}
		return err
	}
	// Under a bundle's worth in all until the disk is free again, so that
	// only sync points write files: an entry refused is not in the log.
	for _, e := range testEntries("before", 100) {
		if err := add(e); err != nil {
			t.Fatal(err)
		}
	}

	// Fill the disk and append, one by one, until a sync point fails and
	// the store refuses appends.
	filler := fill(t, mnt)
	var broken error
	for i, e := range testEntries("while full", 100) {
		err := add(e)
		if err != nil && strings.Contains(err.Error(), "log storage failed") {
			broken = err
			break
		}
		if i == 99 {
			t.Fatalf("the store did not break on a full disk (last append: %v)", err)
		}
		time.Sleep(3 * cfg.SyncInterval) // a sync point's turn
	}
	t.Logf("broken: %v", broken)

	// Free the disk: appends are taken again within seconds.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	deadline := freed.Add(20 * time.Second)
	for {
		err := add([]byte("first after the disk was freed"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store still refuses appends 20s after the disk was freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("appends taken again %v after the disk was freed", time.Since(freed).Round(time.Millisecond))
	for _, e := range testEntries("after", 300) {
		if err := add(e); err != nil {
			t.Fatal(err)
		}
	}
	l.close()

	want := make([][]byte, len(acked))
	for idx, e := range acked {
		if idx >= uint64(len(want)) {
			t.Fatalf("acknowledged index %d beyond the %d acknowledged entries", idx, len(want))
		}
		want[idx] = e
	}
	verifyLog(t, dirFiles(cfg.Path), want)
}
