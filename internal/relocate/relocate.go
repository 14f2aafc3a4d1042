// Package relocate moves every record of one country from the region that
// serves it to another, provably.
//
// A relocation runs in steps, each recorded durably in its job file before
// the next begins, so that it resumes after a crash at any point:
//
//  1. policy: a new residency-policy version that moves the country is
//     signed, appended to the policy log, witnessed and activated. From
//     then on the country's endpoints report to the destination, and the
//     source refuses their batches: nothing that arrives during the move
//     is stored where it must not stay, and nothing is lost.
//  2. copy: the source's batches of the country are copied in chunks. For
//     each chunk the source's access log gets a relocate entry that names
//     the chunk's data keys; custody rewraps them for the destination
//     (never opening them outside custody) on the strength of that entry
//     proven in a witnessed checkpoint; the destination stores the batches
//     (idempotent per endpoint and batch, so a repeated chunk stores
//     nothing twice) and logs a relocate entry of its own.
//  3. verify: both ends compute the count and a content digest of the
//     country's relocated batches (every threat field, every sealed half,
//     the key each is bound to); they must be equal.
//  4. delete: the source deletes the batches chunk by chunk, each chunk
//     logged first.
//  5. done: both access logs get a summary entry with the counts and the
//     digests; the job's report holds them too.
//
// Every entry names the job and the chunk's range of source batches, so
// an auditor can check the whole relocation from the logs alone (see
// Verify).
package relocate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Log is a region's access log (a *logserver.Log).
type Log interface {
	Append(ctx context.Context, entry []byte) (uint64, error)
	Prove(ctx context.Context, index uint64) (*tlog.Proof, error)
}

// Custody rewraps data keys (a *custody.Service or *custody.Client).
type Custody interface {
	Unwrap(ctx context.Context, req *custody.UnwrapRequest) (*custody.UnwrapResponse, error)
}

// Region is one region as a relocation sees it.
type Region struct {
	Store store.Relocator
	Log   Log
}

// Config configures the relocations of a deployment.
type Config struct {
	// Dir holds one job file per relocation.
	Dir     string
	Regions map[string]Region
	Custody Custody
	// Policy returns the active residency policy.
	Policy func() *residency.Policy
	// MovePolicy activates a policy version in which country is served
	// by to, through the policy log, and returns its version; if the
	// active policy serves country from to already, it returns the
	// active version.
	MovePolicy func(ctx context.Context, country, to string) (uint64, error)
	// Principal is who relocations are logged under (the operator).
	Principal access.Principal
	// ChunkBatches is the most batches one chunk holds (default 100;
	// fewer when their keys and subjects would not fit one entry).
	ChunkBatches int
	// WitnessTimeout bounds the wait for a witnessed checkpoint of a
	// chunk's entry (default 30s).
	WitnessTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// The steps of a job.
const (
	StepPolicy  = "policy"
	StepCopy    = "copy" // copy, verify and delete, chunk by chunk
	StepVerify  = "verify"
	StepSummary = "summary"
	StepDone    = "done"
)

// Job is one relocation: what it moves, how far it got, and its report.
type Job struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	From    string `json:"from"`
	To      string `json:"to"`
	// Policy is the version of the residency policy that moved the
	// country.
	Policy uint64 `json:"policy_version,omitempty"`
	Step   string `json:"step"`
	// Cursor is the PK of the last source batch the current step has
	// finished (copy and delete).
	Cursor int64 `json:"cursor"`
	// Copied and Deleted count records.
	Copied  int64 `json:"copied"`
	Deleted int64 `json:"deleted"`
	// Chunks are the copy step's chunks, with their log entries.
	Chunks []Chunk `json:"chunks"`
	// Report is filled by the verify step.
	Report *Report `json:"report,omitempty"`
	// Took is how long each step took, in this process and the ones
	// before it (a step interrupted by a crash counts what it did).
	Took map[string]Duration `json:"took,omitempty"`
	// Error is why the job stopped, if it did.
	Error    string    `json:"error,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// Chunk is one chunk of the copy step.
type Chunk struct {
	// First and Last are the chunk's range of source batch PKs.
	First   int64 `json:"first"`
	Last    int64 `json:"last"`
	Batches int   `json:"batches"`
	Records int64 `json:"records"`
	// SourceEntry and DestEntry are the relocate entries' indexes in the
	// source's and the destination's access logs.
	SourceEntry uint64 `json:"source_entry"`
	DestEntry   uint64 `json:"dest_entry"`
	// SourceDigest and DestDigest digest the chunk's batches as the
	// source held them and as the destination read them back; the chunk
	// is deleted at the source only if they are equal.
	SourceDigest string `json:"source_digest"`
	DestDigest   string `json:"dest_digest"`
	// Deleted says whether the source has deleted the chunk.
	Deleted bool `json:"deleted"`
}

// Report is what both ends counted of the relocated data.
type Report struct {
	SourceRecords int64  `json:"source_records"`
	SourceBatches int64  `json:"source_batches"`
	SourceDigest  string `json:"source_digest"`
	DestRecords   int64  `json:"dest_records"`
	DestBatches   int64  `json:"dest_batches"`
	DestDigest    string `json:"dest_digest"`
	// SourceSummary and DestSummary are the summary entries' indexes.
	SourceSummary uint64 `json:"source_summary,omitempty"`
	DestSummary   uint64 `json:"dest_summary,omitempty"`
}

// errMismatch stops a job whose ends differ after the copy.
var errMismatch = errors.New("the ends differ")

// Errors of Start.
var (
	ErrBusy    = fault.New(fault.ErrConflict, "another relocation is running")
	ErrInvalid = fault.New(fault.ErrInvalid, "invalid relocation")
)

// Relocator runs a deployment's relocations, one at a time.
type Relocator struct {
	cfg    Config
	logger *slog.Logger
	mu     sync.Mutex // guards jobs and running
	jobs   map[string]*Job
	// running is the id of the job being run, if any.
	running string
	done    chan struct{} // closed when the running job's goroutine ends
}

// Open loads the jobs in cfg.Dir.
func Open(cfg Config) (*Relocator, error) {
	if cfg.ChunkBatches <= 0 {
		cfg.ChunkBatches = 100
	}
	if cfg.WitnessTimeout == 0 {
		cfg.WitnessTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening relocations: %w", err)
	}
	r := &Relocator{cfg: cfg, logger: cfg.Logger.With("part", "relocate"), jobs: map[string]*Job{}}
	files, err := filepath.Glob(filepath.Join(cfg.Dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("opening relocations: %w", err)
		}
		var j Job
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, fmt.Errorf("opening relocations: %s: %w", f, err)
		}
		r.jobs[j.ID] = &j
	}
	return r, nil
}

// Resume runs, in the background, the job that a crash interrupted, if
// any.
func (r *Relocator) Resume(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		if j.Step != StepDone && j.Error == "" {
			r.logger.InfoContext(ctx, "resuming relocation", "job", j.ID, "step", j.Step)
			r.runLocked(ctx, j)
			return
		}
	}
}

// Start begins relocating country to the region to, in the background,
// and returns the new job.
func (r *Relocator) Start(ctx context.Context, country, to string) (*Job, error) {
	pol := r.cfg.Policy()
	from, err := pol.RegionFor(country)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if pol.Region(to) == nil {
		return nil, fmt.Errorf("%w: the residency policy has no region %q", ErrInvalid, to)
	}
	if from == to {
		return nil, fmt.Errorf("%w: region %s serves %s already", ErrInvalid, to, country)
	}
	for _, name := range []string{from, to} {
		if _, ok := r.cfg.Regions[name]; !ok {
			return nil, fmt.Errorf("%w: region %s is not served here", ErrInvalid, name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running != "" {
		return nil, fmt.Errorf("%w: %s", ErrBusy, r.running)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	j := &Job{ID: "rel-" + hex.EncodeToString(id[:]), Country: country, From: from, To: to, Step: StepPolicy, Started: r.cfg.Now().UTC(), Chunks: []Chunk{}}
	if err := r.save(j); err != nil {
		// Nothing changed, and it may work later.
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	r.jobs[j.ID] = j
	r.runLocked(ctx, j)
	return clone(j), nil
}

// Job returns a copy of the job with the given id.
func (r *Relocator) Job(id string) (*Job, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[id]
	if !ok {
		return nil, false
	}
	return clone(j), true
}

// Jobs returns copies of every job, oldest first.
func (r *Relocator) Jobs() []*Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Job
	for _, j := range r.jobs {
		out = append(out, clone(j))
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out
}

// Wait waits for the running job, if any, to stop.
func (r *Relocator) Wait() {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if done != nil {
		<-done
	}
}

func clone(j *Job) *Job {
	c := *j
	c.Took = maps.Clone(j.Took)
	c.Chunks = append([]Chunk(nil), j.Chunks...)
	if j.Report != nil {
		rep := *j.Report
		c.Report = &rep
	}
	return &c
}

// runLocked runs j in a goroutine; r.mu is held.
func (r *Relocator) runLocked(ctx context.Context, j *Job) {
	r.running = j.ID
	done := make(chan struct{})
	r.done = done
	go func() {
		defer close(done)
		var err error
		// A step that fails for want of the log, custody, the witness or
		// a store is tried again, at growing intervals with jitter and
		// never sooner than a Retry-After asked: every step can be
		// repeated. A log that says it cannot take entries is waited for
		// before a step reads what it would log. Ends that differ stop
		// the job for good, and an interrupted one (the platform
		// stopping) resumes at the next start.
		var bo backoff.State
		for {
			if err = r.logsReady(j); err == nil {
				err = r.run(ctx, j)
			}
			if err == nil || ctx.Err() != nil || errors.Is(err, errMismatch) {
				break
			}
			wait := bo.Next(retryBackoff, err, mrand.Float64())
			r.logger.WarnContext(ctx, "relocation step failed; retrying", "job", j.ID, "step", j.Step, "err", err, "in", wait)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.running = ""
		if err != nil && ctx.Err() == nil {
			j.Error = err.Error()
			r.logger.ErrorContext(ctx, "relocation stopped", "job", j.ID, "step", j.Step, "err", err)
			_ = r.saveLocked(j)
		}
	}()
}

// retryBackoff spaces the attempts of a failing job.
var retryBackoff = backoff.Policy{Min: time.Second, Max: 30 * time.Second}

// logsReady returns the reason, if either region's access log gives one
// (a *logserver.Log does), why it cannot take entries now.
func (r *Relocator) logsReady(j *Job) error {
	for _, name := range []string{j.From, j.To} {
		if err := logserver.ReadyOf(r.cfg.Regions[name].Log); err != nil {
			return fmt.Errorf("access log of %s: %w", name, err)
		}
	}
	return nil
}

// update changes j under the lock and saves it.
func (r *Relocator) update(j *Job, f func(*Job)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(j)
	return r.saveLocked(j)
}

func (r *Relocator) save(j *Job) error { return r.saveLocked(j) }

func (r *Relocator) saveLocked(j *Job) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(r.cfg.Dir, j.ID+".json"), b, 0o600); err != nil {
		return fmt.Errorf("saving relocation %s: %w", j.ID, err)
	}
	return nil
}

func (r *Relocator) run(ctx context.Context, j *Job) error {
	for {
		var err error
		step, start := j.Step, time.Now()
		switch j.Step {
		case StepPolicy:
			err = r.stepPolicy(ctx, j)
		case StepCopy:
			err = r.stepCopy(ctx, j)
		case StepVerify:
			err = r.stepVerify(ctx, j)
		case StepSummary:
			err = r.stepSummary(ctx, j)
		case StepDone:
			r.logger.InfoContext(ctx, "relocation done", "job", j.ID, "country", j.Country, "from", j.From, "to", j.To, "records", j.Copied)
			return nil
		default:
			return fmt.Errorf("relocation %s: unknown step %q", j.ID, j.Step)
		}
		if err != nil {
			return fmt.Errorf("relocation %s, step %s: %w", j.ID, j.Step, err)
		}
		// The step is done and saved; so is its time.
		r.mu.Lock()
		if j.Took == nil {
			j.Took = map[string]Duration{}
		}
		j.Took[step] += Duration(time.Since(start))
		err = r.saveLocked(j)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// Duration is a time.Duration that reads and writes as a string ("1.5s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

func (r *Relocator) stepPolicy(ctx context.Context, j *Job) error {
	v, err := r.cfg.MovePolicy(ctx, j.Country, j.To)
	if err != nil {
		return err
	}
	return r.update(j, func(j *Job) { j.Policy, j.Step, j.Cursor = v, StepCopy, 0 })
}

// entry builds an access record of the job in region.
func (r *Relocator) entry(j *Job, region, action, what string) *access.Record {
	return &access.Record{
		Time:      r.cfg.Now(),
		Region:    region,
		Principal: r.cfg.Principal,
		Action:    action,
		Resource: access.Resource{
			Dataset: "telemetry",
			Query:   fmt.Sprintf("relocation job=%s country=%s from=%s to=%s policy=%d %s", j.ID, j.Country, j.From, j.To, j.Policy, what),
			Digest:  access.Digest(nil),
		},
		Justification: access.Justification{Code: "RELOCATION", Detail: fmt.Sprintf("relocation %s of %s from %s to %s", j.ID, j.Country, j.From, j.To)},
		Subjects:      []string{},
		Request:       j.ID,
		Outcome:       "granted",
	}
}

// describe fills rec from the batches: count, digest of ids, subjects,
// and (withKeys) the ids of their wrapped keys.
func describe(rec *access.Record, bs []store.StoredBatch, ids func(i int) []int64, withKeys bool) {
	subjects, keys := map[string]bool{}, map[string]bool{}
	var all []int64
	for i := range bs {
		b := &bs[i].Batch
		all = append(all, ids(i)...)
		if !subjects[b.Pseudonym] {
			subjects[b.Pseudonym] = true
			rec.Subjects = append(rec.Subjects, b.Pseudonym)
		}
		if k := seal.KeyID(b.Sealed.WrappedKey); withKeys && !keys[k] {
			keys[k] = true
			rec.Keys = append(rec.Keys, k)
		}
	}
	rec.Resource.Count = int64(len(all))
	rec.Resource.Digest = access.Digest(all)
}

// fitting returns how many of bs, from the first, one entry with their
// subjects and keys can describe (at least one).
func fitting(rec *access.Record, bs []store.StoredBatch) int {
	base, err := rec.Marshal()
	if err != nil {
		return len(bs)
	}
	size := len(base) + len(`,"keys":[]`) + 64
	subjects := map[string]bool{}
	for i := range bs {
		b := &bs[i].Batch
		if !subjects[b.Pseudonym] {
			subjects[b.Pseudonym] = true
			size += len(b.Pseudonym) + 3
		}
		size += len("sha256:") + 64 + 3 // one key per batch
		if size > access.MaxSize || i+1 > custody.MaxKeys {
			return max(i, 1)
		}
	}
	return len(bs)
}

// chunkRange is the "batches=" part of a chunk's entries.
func chunkRange(bs []store.StoredBatch) string {
	return fmt.Sprintf("batches=%d-%d", bs[0].PK, bs[len(bs)-1].PK)
}

// prepared is a chunk whose source entry is logged and whose keys custody
// rewrapped: ready for the destination.
type prepared struct {
	bs       []store.StoredBatch
	out      []*store.Batch
	records  int64
	srcIndex uint64
}

// stepCopy moves the country's batches chunk by chunk, in three stages
// that overlap: one reads the next chunk, logs it at the source and has
// custody rewrap its keys (mostly waiting for a witnessed checkpoint);
// one stores the chunk before it at the destination, reads it back there
// and compares it, batch by batch, with what the source held; one deletes
// the chunk before that at the source. The job records a chunk once the
// destination holds it verified, and again once the source has deleted
// it, so a crash redoes at most the chunks in flight: storing is
// idempotent, and a chunk already deleted is found gone.
func (r *Relocator) stepCopy(ctx context.Context, j *Job) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Chunks verified before a crash but not deleted go first.
	var is []int
	var cs []Chunk
	for i, c := range j.Chunks {
		if !c.Deleted {
			is, cs = append(is, i), append(cs, c)
		}
	}
	if len(is) > 0 {
		if err := r.deleteChunks(ctx, j, is, cs); err != nil {
			return err
		}
	}
	ready := make(chan *prepared, 1)
	prepErr := make(chan error, 1)
	go func() {
		defer close(ready)
		cursor := j.Cursor
		for {
			c, err := r.prepare(ctx, j, cursor)
			if err != nil {
				prepErr <- err
				return
			}
			if c == nil {
				return
			}
			select {
			case ready <- c:
			case <-ctx.Done():
				prepErr <- ctx.Err()
				return
			}
			cursor = c.bs[len(c.bs)-1].PK
		}
	}()
	type del struct {
		i int
		c Chunk
	}
	// The deleter takes every chunk verified since its last delete at
	// once: a delete touches pages all over the source's hash index, so
	// fewer, larger deletes rewrite it fewer times.
	deletes := make(chan del, 256)
	delDone := make(chan error, 1)
	go func() {
		for d := range deletes {
			group := []del{d}
		more:
			for len(group) < maxDeleteGroup {
				select {
				case d, ok := <-deletes:
					if !ok {
						break more
					}
					group = append(group, d)
				default:
					break more
				}
			}
			is, cs := make([]int, len(group)), make([]Chunk, len(group))
			for k, d := range group {
				is[k], cs[k] = d.i, d.c
			}
			if err := r.deleteChunks(ctx, j, is, cs); err != nil {
				cancel()
				for range deletes {
				}
				delDone <- err
				return
			}
		}
		delDone <- nil
	}()
	err := r.storeChunks(ctx, j, ready, func(i int, c Chunk) { deletes <- del{i, c} })
	close(deletes)
	if derr := <-delDone; derr != nil {
		err = derr // the deleter's failure is what stopped the rest
	}
	if err != nil {
		return err
	}
	select {
	case err := <-prepErr:
		return err
	default:
	}
	return r.update(j, func(j *Job) { j.Step, j.Cursor = StepVerify, 0 })
}

// storeChunks stores each prepared chunk at the destination, logs it there,
// reads it back and compares it with the source's batches, records it in
// the job, and hands it to deleted.
func (r *Relocator) storeChunks(ctx context.Context, j *Job, ready <-chan *prepared, verified func(int, Chunk)) error {
	dst := r.cfg.Regions[j.To]
	for c := range ready {
		results, err := dst.Store.PutBatches(ctx, c.out)
		if err != nil {
			return err
		}
		bs := c.bs
		drec := r.entry(j, j.To, "relocate", chunkRange(bs)+fmt.Sprintf(" source_entry=%d", c.srcIndex))
		describe(drec, bs, func(i int) []int64 { return results[i].IDs }, false)
		dentry, err := drec.Marshal()
		if err != nil {
			return err
		}
		dstIndex, err := dst.Log.Append(ctx, dentry)
		if err != nil {
			return err
		}
		srcSum, dstSum, err := r.compare(ctx, j, bs, results)
		if err != nil {
			return err
		}
		ch := Chunk{First: bs[0].PK, Last: bs[len(bs)-1].PK, Batches: len(bs), Records: c.records, SourceEntry: c.srcIndex, DestEntry: dstIndex,
			SourceDigest: srcSum, DestDigest: dstSum}
		var i int
		if err := r.update(j, func(j *Job) {
			i = len(j.Chunks)
			j.Chunks = append(j.Chunks, ch)
			j.Cursor = ch.Last
			j.Copied += c.records
		}); err != nil {
			return err
		}
		verified(i, ch)
	}
	return nil
}

// compare reads the chunk's batches back from the destination and checks
// that each holds exactly what the source's did. It returns both digests.
func (r *Relocator) compare(ctx context.Context, j *Job, bs []store.StoredBatch, results []store.BatchResult) (string, string, error) {
	h := sha256.New()
	src := &sum{}
	want := map[int64][sha256.Size]byte{}
	lo, hi := results[0].PK, results[0].PK
	for i := range bs {
		x := contentHash(h, &bs[i].Batch)
		src.hashes = append(src.hashes, x)
		want[results[i].PK] = x
		lo, hi = min(lo, results[i].PK), max(hi, results[i].PK)
	}
	dst := &sum{}
	for after := lo - 1; after < hi; {
		got, err := r.cfg.Regions[j.To].Store.Batches(ctx, store.BatchQuery{Country: j.Country, After: after, Limit: store.MaxBatches})
		if err != nil {
			return "", "", err
		}
		if len(got) == 0 {
			break
		}
		for i := range got {
			if got[i].PK > hi {
				break
			}
			if _, ok := want[got[i].PK]; ok {
				dst.hashes = append(dst.hashes, contentHash(h, &got[i].Batch))
			}
		}
		after = got[len(got)-1].PK
	}
	sd, dd := src.digest(), dst.digest()
	if len(dst.hashes) != len(src.hashes) || sd != dd {
		return sd, dd, fmt.Errorf("%w: chunk %s: the source held %d batches (%s), the destination reads back %d (%s); the source keeps them",
			errMismatch, chunkRange(bs), len(src.hashes), sd, len(dst.hashes), dd)
	}
	return sd, dd, nil
}

// maxDeleteGroup is the most chunks deleteChunks deletes together.
const maxDeleteGroup = 16

// deleteChunks deletes the chunks cs (chunks is of the job) at the source,
// each logged first, in one transaction, and records them. Each delete
// entry has the same range, count and digest of ids as its chunk's
// relocate entry.
func (r *Relocator) deleteChunks(ctx context.Context, j *Job, is []int, cs []Chunk) error {
	src := r.cfg.Regions[j.From]
	var pks []int64
	for _, c := range cs {
		bs, err := src.Store.Batches(ctx, store.BatchQuery{Country: j.Country, After: c.First - 1, Limit: c.Batches, IDsOnly: true})
		if err != nil {
			return err
		}
		bs = slices.DeleteFunc(bs, func(b store.StoredBatch) bool { return b.PK > c.Last })
		if len(bs) == 0 {
			continue // deleted before a crash, after its entry was logged
		}
		rec := r.entry(j, j.From, "delete", chunkRange(bs))
		describe(rec, bs, func(i int) []int64 { return bs[i].IDs }, false)
		entry, err := rec.Marshal()
		if err != nil {
			return err
		}
		if _, err := src.Log.Append(ctx, entry); err != nil {
			return err
		}
		for i := range bs {
			pks = append(pks, bs[i].PK)
		}
	}
	if len(pks) > 0 {
		if _, err := src.Store.DeleteBatches(ctx, pks); err != nil {
			return err
		}
	}
	return r.update(j, func(j *Job) {
		for k, i := range is {
			j.Chunks[i].Deleted = true
			j.Deleted += cs[k].Records
		}
	})
}

// prepare reads the chunk after cursor, logs it at the source with its
// keys, and has custody rewrap them for the destination once the entry is
// witnessed. It returns nil when no batch is left.
func (r *Relocator) prepare(ctx context.Context, j *Job, cursor int64) (*prepared, error) {
	src := r.cfg.Regions[j.From]
	bs, err := src.Store.Batches(ctx, store.BatchQuery{Country: j.Country, After: cursor, Limit: r.cfg.ChunkBatches})
	if err != nil || len(bs) == 0 {
		return nil, err
	}
	probe := r.entry(j, j.From, "relocate", chunkRange(bs))
	bs = bs[:fitting(probe, bs)]

	// The source logs the chunk, naming its keys; custody rewraps them
	// for the destination once the entry is witnessed.
	rec := r.entry(j, j.From, "relocate", chunkRange(bs))
	describe(rec, bs, func(i int) []int64 { return bs[i].IDs }, true)
	entry, err := rec.Marshal()
	if err != nil {
		return nil, err
	}
	srcIndex, err := src.Log.Append(ctx, entry)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.WitnessTimeout)
	proof, err := src.Log.Prove(wctx, srcIndex)
	cancel()
	if err != nil {
		return nil, err
	}
	req := &custody.UnwrapRequest{Region: j.From, Entry: entry, Proof: proof.Marshal(), RewrapFor: j.To}
	for i := range bs {
		req.Keys = append(req.Keys, bs[i].Batch.Sealed.WrappedKey)
	}
	resp, err := r.cfg.Custody.Unwrap(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("rewrapping the keys of %s: %w", chunkRange(bs), err)
	}
	if len(resp.Keys) != len(bs) {
		return nil, fmt.Errorf("custody rewrapped %d keys for %d asked", len(resp.Keys), len(bs))
	}
	c := &prepared{bs: bs, out: make([]*store.Batch, len(bs)), srcIndex: srcIndex}
	for i := range bs {
		b := bs[i].Batch
		b.Sealed.KeyID = bindingKeyID(&bs[i].Batch)
		b.Sealed.WrappedKey = resp.Keys[i]
		c.out[i] = &b
		c.records += int64(len(b.Records))
	}
	return c, nil
}

// bindingKeyID is the key id b's sealed halves are bound to.
func bindingKeyID(b *store.Batch) string {
	if b.Sealed.KeyID != "" {
		return b.Sealed.KeyID
	}
	return seal.KeyID(b.Sealed.WrappedKey)
}

// stepVerify checks that the source holds nothing of the country any
// more, and sums the chunks up into the report: both ends' counts and
// digests (of the chunks' digests, in order).
func (r *Relocator) stepVerify(ctx context.Context, j *Job) error {
	src := r.cfg.Regions[j.From]
	left, err := src.Store.Batches(ctx, store.BatchQuery{Country: j.Country, Limit: 1, IDsOnly: true})
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%s still holds batches of %s that were not relocated (batch %d)", j.From, j.Country, left[0].PK)
	}
	rep := &Report{}
	sh, dh := sha256.New(), sha256.New()
	for _, c := range j.Chunks {
		if !c.Deleted {
			return fmt.Errorf("chunk %d-%d was not deleted at %s", c.First, c.Last, j.From)
		}
		rep.SourceBatches += int64(c.Batches)
		rep.SourceRecords += c.Records
		sh.Write([]byte(c.SourceDigest))
		dh.Write([]byte(c.DestDigest))
	}
	rep.DestBatches, rep.DestRecords = rep.SourceBatches, rep.SourceRecords
	rep.SourceDigest = "sha256:" + hex.EncodeToString(sh.Sum(nil))
	rep.DestDigest = "sha256:" + hex.EncodeToString(dh.Sum(nil))
	if rep.SourceDigest != rep.DestDigest {
		return fmt.Errorf("%w: source %s, destination %s", errMismatch, rep.SourceDigest, rep.DestDigest)
	}
	return r.update(j, func(j *Job) { j.Report, j.Step = rep, StepSummary })
}

// stepSummary closes the relocation with a summary entry in both logs,
// and is done once both are in witnessed checkpoints.
func (r *Relocator) stepSummary(ctx context.Context, j *Job) error {
	src, dst := r.cfg.Regions[j.From], r.cfg.Regions[j.To]
	rep := j.Report
	what := fmt.Sprintf("summary records=%d batches=%d digest=%s deleted=%d", rep.SourceRecords, rep.SourceBatches, rep.SourceDigest, j.Deleted)
	var idx [2]uint64
	for i, side := range []struct {
		name string
		log  Log
	}{{j.From, src.Log}, {j.To, dst.Log}} {
		entry, err := r.entry(j, side.name, "relocate", what).Marshal()
		if err != nil {
			return err
		}
		if idx[i], err = side.log.Append(ctx, entry); err != nil {
			return err
		}
		// Done means provable: the summary is in a witnessed checkpoint.
		wctx, cancel := context.WithTimeout(ctx, r.cfg.WitnessTimeout)
		_, err = side.log.Prove(wctx, idx[i])
		cancel()
		if err != nil {
			return err
		}
	}
	return r.update(j, func(j *Job) {
		j.Report.SourceSummary, j.Report.DestSummary = idx[0], idx[1]
		j.Step, j.Finished = StepDone, r.cfg.Now().UTC()
	})
}

// Describe returns a human-readable report of j.
func Describe(j *Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "relocation %s: %s from %s to %s (policy version %d)\n", j.ID, j.Country, j.From, j.To, j.Policy)
	fmt.Fprintf(&b, "  step       %s\n", j.Step)
	fmt.Fprintf(&b, "  copied     %d records in %d chunks\n", j.Copied, len(j.Chunks))
	fmt.Fprintf(&b, "  deleted    %d records at %s\n", j.Deleted, j.From)
	if rep := j.Report; rep != nil {
		fmt.Fprintf(&b, "  source     %d records, %d batches, %s\n", rep.SourceRecords, rep.SourceBatches, rep.SourceDigest)
		fmt.Fprintf(&b, "  dest       %d records, %d batches, %s\n", rep.DestRecords, rep.DestBatches, rep.DestDigest)
	}
	if j.Error != "" {
		fmt.Fprintf(&b, "  error      %s\n", j.Error)
	}
	if !j.Finished.IsZero() {
		fmt.Fprintf(&b, "  took       %s", j.Finished.Sub(j.Started).Round(time.Millisecond))
		for _, s := range []string{StepPolicy, StepCopy, StepVerify, StepSummary} {
			fmt.Fprintf(&b, " %s %s", s, time.Duration(j.Took[s]).Round(time.Millisecond))
		}
		fmt.Fprintln(&b)
	}
	return b.String()
}
