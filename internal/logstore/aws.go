package logstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	taws "github.com/transparency-dev/tessera/storage/aws"

	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// awsSchema is the MySQL schema of Tessera's AWS driver at v1.0.4 (its
// mySQLSequencer.initDB), with the engine named: the driver serializes
// sequencing, integration and publication with SELECT … FOR UPDATE, which
// only a transactional engine honours, and a commit is what makes an
// append durable. The driver runs its own CREATE TABLE IF NOT EXISTS
// afterwards, which finds these.
var awsSchema = driverSchema{
	name:       "AWS",
	statements: awsSchemaStatements,
	tables:     []string{"Tessera", "SeqCoord", "Seq", "IntCoord", "PubCoord", "GCCoord"},
	others:     []string{"TreeState", "TiledLeaves"},
	otherKind:  "mysql",
}

var awsSchemaStatements = []string{
	"CREATE TABLE IF NOT EXISTS Tessera (id INT UNSIGNED NOT NULL, compatibilityVersion BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS SeqCoord (id INT UNSIGNED NOT NULL, next BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS Seq (id INT UNSIGNED NOT NULL, seq BIGINT UNSIGNED NOT NULL, v LONGBLOB, PRIMARY KEY (id, seq)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS IntCoord (id INT UNSIGNED NOT NULL, seq BIGINT UNSIGNED NOT NULL, rootHash TINYBLOB NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS PubCoord (id INT UNSIGNED NOT NULL, publishedAt BIGINT NOT NULL, size BIGINT UNSIGNED, PRIMARY KEY (id)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS GCCoord (id INT UNSIGNED NOT NULL, fromSize BIGINT NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB",
}

// seqOverhead bounds what a sequenced batch adds to each entry in its
// row of the Seq table: the gob encoding of the entry's bundle data (its
// 2-byte length and bytes) and its 32-byte leaf hash.
const seqOverhead = 2 + 32 + 32

// AWS is Tessera's AWS driver for one log: its tiles, entry bundles and
// checkpoint in an S3 bucket (AWS's or any S3-compatible server), its
// appends sequenced in a MySQL or MariaDB database. An append is durable
// once the transaction that sequences its batch commits; Tessera
// integrates sequenced entries into the bucket's tiles once a second,
// and the log's checkpoints follow. Its methods are safe for concurrent
// use.
type AWS struct {
	loc      Location
	db       *sql.DB
	s3       *s3.Client
	storage  appender
	maxEntry int
	maxBatch int // bytes of entries in one Seq row
	health   *healthProbe
}

// OpenAWS connects to the bucket and the database loc names and opens
// Tessera's AWS driver on them. It refuses to open, as OpenMySQL does, a
// database that would not keep what it commits (innodb_flush_log_at_trx_commit
// other than 1, tables other than InnoDB), and it refuses a bucket it
// cannot reach or S3 credentials it cannot find.
func OpenAWS(ctx context.Context, loc Location) (*AWS, error) {
	if loc.Kind != "aws" {
		return nil, fmt.Errorf("log store %s is not an s3:// location", loc)
	}
	db, dsn, err := loc.openDB(4) // for checks; the driver opens its own
	if err != nil {
		return nil, err
	}
	a, err := openAWS(ctx, loc, db, dsn)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("log store %s: %w", loc, err)
	}
	return a, nil
}

func openAWS(ctx context.Context, loc Location, db *sql.DB, dsn string) (*AWS, error) {
	a := &AWS{loc: loc, db: db}
	a.health = newHealthProbe(a.probe)
	if err := a.checkDatabase(ctx); err != nil {
		return nil, err
	}
	sdk, err := loc.sdkConfig(ctx)
	if err != nil {
		return nil, err
	}
	a.s3 = s3.NewFromConfig(sdk, loc.s3Options)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.s3.HeadBucket(hctx, &s3.HeadBucketInput{Bucket: aws.String(loc.Bucket)}); err != nil {
		return nil, fmt.Errorf("bucket %s at %s: %w (the bucket must exist; create it first)", loc.Bucket, loc.s3Server(), err)
	}
	d, err := taws.New(ctx, taws.Config{
		SDKConfig:    &sdk,
		S3Options:    loc.s3Options,
		Bucket:       loc.Bucket,
		BucketPrefix: loc.Prefix,
		DSN:          dsn,
		MaxOpenConns: 64,
		MaxIdleConns: 64,
	})
	if err != nil {
		return nil, err
	}
	var ok bool
	if a.storage, ok = d.(appender); !ok {
		return nil, fmt.Errorf("the AWS driver (%T) has no Appender method", d)
	}
	return a, nil
}

// appender is what a Tessera storage driver is to a log (tessera.Driver
// says nothing of it).
type appender interface {
	Appender(ctx context.Context, opts *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error)
}

// checkDatabase checks the MySQL half as OpenMySQL does, creates the
// driver's tables and sizes batches to the server's max_allowed_packet.
func (a *AWS) checkDatabase(ctx context.Context) error {
	packet, err := prepareDatabase(ctx, a.db, awsSchema)
	if err != nil {
		return err
	}
	// A batch is sequenced as one row; keep 64 KiB for the statement.
	a.maxBatch = int(packet) - 64<<10
	a.maxEntry = min(1<<16-1, a.maxBatch-seqOverhead)
	if a.maxEntry < 1024 {
		return fmt.Errorf("the server's max_allowed_packet (%d bytes) cannot hold a batch of one entry of 1 KiB; raise it", packet)
	}
	return nil
}

// sdkConfig loads the AWS SDK configuration: region and credentials from
// the location and the SDK's usual places, never from the location's
// text. For an S3-compatible endpoint, the EC2 instance metadata service
// is not asked (it would only delay a missing-credentials error), and the
// region defaults to us-east-1.
func (loc Location) sdkConfig(ctx context.Context) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if loc.Region != "" {
		opts = append(opts, config.WithRegion(loc.Region))
	}
	if loc.CredentialsFile != "" {
		if _, err := os.Stat(loc.CredentialsFile); err != nil {
			return aws.Config{}, fmt.Errorf("reading the S3 credentials file: %w", err)
		}
		opts = append(opts, config.WithSharedCredentialsFiles([]string{loc.CredentialsFile}))
	}
	if loc.Endpoint != "" {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading the AWS SDK configuration: %w", err)
	}
	if cfg.Region == "" {
		if loc.Endpoint == "" {
			return aws.Config{}, errors.New("no S3 region: add region=… to the location or set $AWS_REGION")
		}
		cfg.Region = "us-east-1"
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		return aws.Config{}, fmt.Errorf("no S3 credentials (set credentials_file=/ABS/PATH in the location, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY): %w", err)
	}
	return cfg, nil
}

// s3Options points the S3 client at the location's endpoint, if any, with
// path-style addressing (BUCKET in the path, not the host name), which
// S3-compatible servers expect.
func (loc Location) s3Options(o *s3.Options) {
	if loc.Endpoint != "" {
		o.BaseEndpoint = aws.String(loc.Endpoint)
		o.UsePathStyle = true
	}
}

func (loc Location) s3Server() string {
	if loc.Endpoint != "" {
		return loc.Endpoint
	}
	return "AWS S3"
}

// Location returns where the driver stores the log.
func (a *AWS) Location() Location { return a.loc }

// MaxEntrySize is the largest entry the database can sequence.
func (a *AWS) MaxEntrySize() int { return a.maxEntry }

// MinCheckpointInterval is the shortest checkpoint interval the driver
// accepts.
func (a *AWS) MinCheckpointInterval() time.Duration { return MinCheckpointInterval }

// Appender returns Tessera's AWS appender, with batches that follow load
// and fit a Seq row (see followLoad), and a reader of the bucket that
// serves tlog-tiles partial resources at exactly the width requested.
func (a *AWS) Appender(ctx context.Context, opts *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error) {
	ap, r, err := a.storage.Appender(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	f := newFollowLoad(ctx, ap.Add, opts.BatchMaxSize())
	f.maxBytes = a.maxBatch
	f.size = func(e *tessera.Entry) int { return len(e.Data()) + seqOverhead }
	return &tessera.Appender{Add: f.Add}, trimmed{bucketReader{LogReader: r, a: a}}, nil
}

// bucketReader reads tiles and entry bundles from the bucket. Tessera's
// reader does too, but reports a missing object as an S3 error, not as
// os.ErrNotExist, so a log would answer 500 for a tile that does not
// exist yet, and never fall back from a partial resource that was
// collected to the full one.
type bucketReader struct {
	tessera.LogReader
	a *AWS
}

func (r bucketReader) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return r.partialOrFull(ctx, p, func(p uint8) string { return layout.TilePath(level, index, p) })
}

func (r bucketReader) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return r.partialOrFull(ctx, p, func(p uint8) string { return layout.EntriesPath(index, p) })
}

// partialOrFull reads the resource at width p, or the full one when p's
// is missing (collected once the full one exists).
func (r bucketReader) partialOrFull(ctx context.Context, p uint8, key func(uint8) string) ([]byte, error) {
	b, err := r.a.get(ctx, key(p))
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		return r.a.get(ctx, key(0))
	}
	return b, err
}

// get reads an object of the log.
func (a *AWS) get(ctx context.Context, key string) ([]byte, error) {
	if a.loc.Prefix != "" {
		key = path.Join(a.loc.Prefix, key)
	}
	out, err := a.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.loc.Bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, fmt.Errorf("%s: %w", key, os.ErrNotExist)
		}
		return nil, fmt.Errorf("reading %s from bucket %s: %w", key, a.loc.Bucket, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(out.Body, layout.EntryBundleWidth*(1<<16+1))); err != nil {
		return nil, fmt.Errorf("reading %s from bucket %s: %w", key, a.loc.Bucket, err)
	}
	return buf.Bytes(), nil
}

// Health reports whether the database and the bucket answer, checking at
// most once a second.
func (a *AWS) Health() tilestore.Health { return a.health.get() }

func (a *AWS) probe(ctx context.Context) error {
	if err := a.db.PingContext(ctx); err != nil {
		return fmt.Errorf("log database unreachable: %w", err)
	}
	if _, err := a.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(a.loc.Bucket)}); err != nil {
		return fmt.Errorf("log bucket unreachable: %w", err)
	}
	return nil
}

// OK reports whether Health is healthy.
func (a *AWS) OK() bool { return a.Health().OK() }

// Wait releases the connections of the health checks. Call it once the
// context given to Appender has ended. (Tessera's driver keeps a pool of
// its own, which it does not close: it lives as long as the process.)
func (a *AWS) Wait() { _ = a.db.Close() }
