package logstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	taws "github.com/transparency-dev/tessera/storage/aws"

	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
)

// TestOpenAWS appends to a log on S3 and MySQL through Tessera's AWS
// driver and reads it back: from the driver's reader (partial resources
// trimmed to the width asked, missing ones reported as not existing) and,
// where the server serves them, straight from the bucket.
func TestOpenAWS(t *testing.T) {
	s3 := logstoretest.NewS3(t)
	loc := s3.Location
	loc.Prefix = "logs/one"
	ctx := context.Background()
	a, err := logstore.OpenAWS(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() {
		t.Errorf("not healthy: %+v", a.Health())
	}
	if got := a.MaxEntrySize(); got != 1<<16-1 {
		t.Errorf("MaxEntrySize = %d, want 65535", got)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	ap, r, err := a.Appender(actx, appendOpts(t, 16))
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	var futures []tessera.IndexFuture
	for i := range 300 {
		e := fmt.Appendf(nil, "aws entry %d", i)
		entries = append(entries, e)
		futures = append(futures, ap.Add(ctx, tessera.NewEntry(e)))
	}
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if idx.Index != uint64(i) {
			t.Fatalf("append %d got index %d", i, idx.Index)
		}
	}
	// Sequenced is durable; integration into the bucket follows within
	// about a second.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := r.IntegratedSize(ctx)
		if err == nil && n == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("integrated size %d, %v after 20s; want 300", n, err)
		}
	}
	full, err := r.ReadEntryBundle(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := bundle(entries[:256]); !bytes.Equal(full, want) {
		t.Errorf("bundle 0: %d bytes, want %d", len(full), len(want))
	}
	// Bundle 0 is full: its partial widths are served from the full
	// bundle, trimmed, where the partial one is not in the bucket (it
	// was never integrated at that size, or was collected). Bundle 1
	// holds the 44 entries integrated last.
	for _, read := range []struct {
		bi uint64
		p  uint8
	}{{0, 3}, {0, 44}, {1, 44}} {
		bi, p := read.bi, read.p
		b, err := r.ReadEntryBundle(ctx, bi, p)
		if err != nil {
			t.Fatalf("bundle %d.p/%d: %v", bi, p, err)
		}
		if want := bundle(entries[bi*256 : bi*256+uint64(p)]); !bytes.Equal(b, want) {
			t.Errorf("bundle %d.p/%d = %d bytes, want %d", bi, p, len(b), len(want))
		}
		tile, err := r.ReadTile(ctx, 0, bi, p)
		if err != nil {
			t.Fatalf("tile 0/%d.p/%d: %v", bi, p, err)
		}
		for i := range int(p) {
			h := sha256.Sum256(append([]byte{0}, entries[int(bi)*256+i]...))
			if !bytes.Equal(tile[i*32:(i+1)*32], h[:]) {
				t.Errorf("tile 0/%d.p/%d: hash %d is wrong", bi, p, i)
			}
		}
		if len(tile) != int(p)*32 {
			t.Errorf("tile 0/%d.p/%d: %d bytes, want %d", bi, p, len(tile), int(p)*32)
		}
	}
	for _, tc := range []struct {
		name string
		read func() ([]byte, error)
	}{
		{"bundle 1.p/45", func() ([]byte, error) { return r.ReadEntryBundle(ctx, 1, 45) }},
		{"bundle 2", func() ([]byte, error) { return r.ReadEntryBundle(ctx, 2, 0) }},
		{"tile 0/1", func() ([]byte, error) { return r.ReadTile(ctx, 0, 1, 0) }},
		{"tile 1/0.p/3", func() ([]byte, error) { return r.ReadTile(ctx, 1, 0, 3) }},
	} {
		if _, err := tc.read(); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want ErrNotExist", tc.name, err)
		}
	}
	// The bucket holds the log under the prefix, in the tlog-tiles layout.
	if s3.Public != "" {
		got := httpGet(t, s3.Public+"logs/one/tile/entries/000")
		if !bytes.Equal(got, full) {
			t.Errorf("the bucket's logs/one/tile/entries/000 differs from what the reader serves")
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			cp := httpGet(t, s3.Public+"logs/one/checkpoint")
			if bytes.Contains(cp, []byte("\n300\n")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bucket's checkpoint does not cover 300 entries after 20s:\n%s", cp)
			}
		}
	}
	cancel()
	a.Wait()

	// Opening again finds the log as it was.
	a, err = logstore.OpenAWS(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Wait()
	actx, cancel = context.WithCancel(ctx)
	defer cancel()
	ap, _, err = a.Appender(actx, appendOpts(t, 16))
	if err != nil {
		t.Fatal(err)
	}
	if idx, err := ap.Add(ctx, tessera.NewEntry([]byte("after reopening")))(); err != nil || idx.Index != 300 {
		t.Fatalf("append after reopening: %v, %v; want index 300", idx, err)
	}
}

// TestOpenAWSRefuses checks what OpenAWS refuses, and that it says why.
func TestOpenAWSRefuses(t *testing.T) {
	s3 := logstoretest.NewS3(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, loc *logstore.Location)
		want  string
	}{
		{"missing bucket", func(t *testing.T, loc *logstore.Location) { loc.Bucket = "no-such-bucket" }, "bucket no-such-bucket"},
		{"missing credentials file", func(t *testing.T, loc *logstore.Location) {
			loc.CredentialsFile = filepath.Join(t.TempDir(), "missing")
		}, "S3 credentials file"},
		{"a MySQL driver's database", func(t *testing.T, loc *logstore.Location) {
			m, err := logstore.OpenMySQL(ctx, logstore.Location{Kind: "mysql", User: loc.User, Host: loc.Host, Port: loc.Port, Database: loc.Database, PasswordFile: loc.PasswordFile, TLS: loc.TLS})
			if err != nil {
				t.Fatal(err)
			}
			m.Wait()
		}, "holds a log of Tessera's other driver (mysql://)"},
		{"MyISAM", func(t *testing.T, loc *logstore.Location) {
			if _, err := rawDB(t, *loc).Exec("CREATE TABLE SeqCoord (id INT UNSIGNED NOT NULL, next BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id)) ENGINE=MyISAM"); err != nil {
				t.Fatal(err)
			}
		}, "SeqCoord uses the MyISAM engine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := s3.Location
			loc.Database = logstoretest.NewDatabase(t).Database
			tc.setup(t, &loc)
			a, err := logstore.OpenAWS(ctx, loc)
			if err == nil {
				a.Wait()
				t.Fatalf("OpenAWS succeeded, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenAWS: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// bundle is the tlog-tiles entry bundle of entries.
func bundle(entries [][]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, byte(len(e)>>8), byte(len(e)))
		b = append(b, e...)
	}
	return b
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b
}

// TestAWSBatchBytes shows why a log on S3 and MySQL bounds its batches by
// bytes: Tessera's AWS driver sequences a batch as one row of the Seq
// table, which must fit max_allowed_packet (16 MiB on MariaDB 10.11, 64 MiB
// on MySQL 8; a batch of 4,096 entries of 64 KiB is 256 MiB). With the
// driver alone, such a batch fails, every entry of it; through OpenAWS,
// whose hand-overs stop short of the packet, every entry goes in.
func TestAWSBatchBytes(t *testing.T) {
	s3 := logstoretest.NewS3(t)
	ctx := context.Background()
	var packet int64
	if err := rawDB(t, s3.Location).QueryRow("SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	const size = 60_000
	n := int(packet/size) + 16 // a batch of n entries does not fit the packet
	if n > 1024 {
		t.Skipf("max_allowed_packet is %d: the test would need %d entries of %d bytes", packet, n, size)
	}
	entry := func(i int) []byte {
		e := bytes.Repeat([]byte{byte(i)}, size)
		binary.BigEndian.PutUint32(e, uint32(i))
		return e
	}

	// Tessera's driver alone, one batch of n entries.
	loc := s3.Location
	loc.Prefix = "alone"
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedCredentialsFiles([]string{loc.CredentialsFile}), config.WithRegion("us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := loc.Password()
	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = loc.User, pw, "tcp", fmt.Sprintf("%s:%d", loc.Host, loc.Port), loc.Database
	d, err := taws.New(ctx, taws.Config{
		SDKConfig: &cfg, S3Options: func(o *awss3.Options) { o.BaseEndpoint, o.UsePathStyle = aws.String(loc.Endpoint), true },
		Bucket: loc.Bucket, BucketPrefix: loc.Prefix, DSN: c.FormatDSN(),
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, _, err := d.(interface {
		Appender(context.Context, *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error)
	}).Appender(actx, appendOpts(t, uint(n)).WithBatching(uint(n), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	futures := make([]tessera.IndexFuture, n)
	for i := range futures {
		futures[i] = a.Add(ctx, tessera.NewEntry(entry(i)))
	}
	_, err = futures[0]()
	// The server answers with its packet error and drops the connection;
	// the client may see either first (the driver keeps only the text).
	if err == nil || !strings.Contains(err.Error(), "packet") && !strings.Contains(err.Error(), "bad connection") {
		t.Fatalf("Tessera's AWS driver sequencing %d entries of %d bytes on max_allowed_packet=%d: %v; want the server's packet error or its dropping the connection", n, size, packet, err)
	}
	t.Logf("as expected, Tessera's AWS driver alone on max_allowed_packet=%d: %v", packet, err)
	cancel()

	// The same entries through OpenAWS, batches of up to 4,096 entries.
	loc.Prefix = "bounded"
	loc.Database = logstoretest.NewDatabase(t).Database
	o, err := logstore.OpenAWS(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Wait()
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	oa, _, err := o.Appender(octx, appendOpts(t, 4096))
	if err != nil {
		t.Fatal(err)
	}
	first := oa.Add(ctx, tessera.NewEntry([]byte("first")))
	for i := range futures {
		futures[i] = oa.Add(ctx, tessera.NewEntry(entry(i)))
	}
	if _, err := first(); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		if idx, err := f(); err != nil || idx.Index != uint64(i+1) {
			t.Fatalf("entry %d: %v, %v; want index %d", i, idx, err, i+1)
		}
	}
}
