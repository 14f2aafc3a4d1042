package logstoretest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logstore"
)

// GoFakeS3Version is the gofakes3 that .ci/run installs:
// go install github.com/johannesboyne/gofakes3/cmd/gofakes3@GoFakeS3Version.
const GoFakeS3Version = "v1.2.0"

// Bucket is the bucket a gofakes3 server of NewS3 holds.
const Bucket = "vitrine-test"

// S3 is an S3 server for a test.
type S3 struct {
	// Location is where a log goes: the bucket (and prefix) on the
	// server, with a MySQL database of its own for sequencing.
	Location logstore.Location
	// Public is the base URL at which the log's objects can be read
	// without credentials (http://HOST:PORT/BUCKET/PREFIX/), or "" for a
	// server that does not serve anonymous reads.
	Public string
}

// NewS3 returns an S3 location for a log of the test's own: on a gofakes3
// process started for the test, or under a prefix of its own on the
// server $VITRINE_TEST_S3 names, with a new MySQL database (NewDatabase).
// It skips the test when neither is there, but fails it where $CI is set.
func NewS3(tb testing.TB) S3 {
	tb.Helper()
	if env := os.Getenv("VITRINE_TEST_S3"); env != "" {
		base, err := logstore.ParseLocation(env)
		if err != nil || base.Kind != "aws" {
			tb.Fatalf("VITRINE_TEST_S3: want an s3:// location: %v", err)
		}
		loc := NewDatabase(tb)
		loc.Kind, loc.Bucket, loc.Endpoint, loc.Region, loc.CredentialsFile = "aws", base.Bucket, base.Endpoint, base.Region, base.CredentialsFile
		loc.Prefix = strings.Trim(base.Prefix+"/"+fmt.Sprintf("vitrine-test-%d-%08x", os.Getpid(), rand.Uint32()), "/")
		return S3{Location: loc}
	}
	bin, err := exec.LookPath("gofakes3")
	if err != nil {
		msg := "no S3 server: install gofakes3 (go install github.com/johannesboyne/gofakes3/cmd/gofakes3@" + GoFakeS3Version + ", as .ci/run does) or set VITRINE_TEST_S3 to an s3:// location"
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	loc := NewDatabase(tb)
	dir := tb.TempDir()
	addr := freeAddr(tb)
	cmd := exec.Command(bin, "-backend", "bolt", "-bolt.db", filepath.Join(dir, "s3.db"), "-host", addr, "-initialbucket", Bucket, "-quiet")
	out, err := os.Create(filepath.Join(dir, "gofakes3.out"))
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close() // the process keeps its own descriptor
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			tb.Fatalf("gofakes3 did not listen on %s: %v\n%s", addr, err, b)
		}
	}
	// gofakes3 checks no signature; the SDK needs a key to sign with all
	// the same, read from a credentials file as an operator's would be.
	creds := filepath.Join(dir, "s3-credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = vitrine-test\naws_secret_access_key = vitrine-test-secret\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	loc.Kind, loc.Bucket, loc.Endpoint, loc.CredentialsFile = "aws", Bucket, "http://"+addr, creds
	return S3{Location: loc, Public: "http://" + addr + "/" + Bucket + "/"}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
