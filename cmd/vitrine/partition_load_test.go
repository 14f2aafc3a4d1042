//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/reputation"
	"github.com/vitrine-dev/vitrine/tlog"
)

// outcome is what came of one request.
type outcome struct {
	started time.Time
	took    time.Duration
	code    int    // 0: no answer
	msg     string // a refusal's error, or why there was no answer
}

// phase collects the outcomes of the requests made while a link is cut,
// or once it is back.
type phase struct {
	start  time.Time
	mu     sync.Mutex
	ingest []outcome
	reads  []outcome
}

func (ph *phase) add(list *[]outcome, o outcome) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	*list = append(*list, o)
}

// count returns how many outcomes list holds.
func (ph *phase) count(list *[]outcome) int {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return len(*list)
}

// first returns when the first outcome of list with code was answered.
func (ph *phase) first(list *[]outcome, code int) (time.Time, bool) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	var at time.Time
	for _, o := range *list {
		if end := o.started.Add(o.took); o.code == code && (at.IsZero() || end.Before(at)) {
			at = end
		}
	}
	return at, !at.IsZero()
}

// load sends batches from each endpoint of r.eps and has the analyst read
// records, until the function it returns is called, which waits for every
// request under way to be answered. The analyst stops reading by itself
// once readsDone says so.
func (r *partitionRun) load(ph *phase, readsDone func() bool) (stop func()) {
	var (
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for _, ep := range r.eps {
		wg.Go(func() {
			for !stopping.Load() {
				ph.add(&ph.ingest, r.ingest(r.t.Context(), r.newBatch(ep, "")))
				time.Sleep(150 * time.Millisecond)
			}
		})
	}
	// Two readers, a second apart.
	for i := range 2 {
		wg.Go(func() {
			for start := time.Now(); time.Since(start) < time.Duration(i)*time.Second && !stopping.Load(); {
				time.Sleep(50 * time.Millisecond)
			}
			for !stopping.Load() && !readsDone() {
				ph.add(&ph.reads, r.read(r.t.Context(), true))
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	return func() {
		stopping.Store(true)
		wg.Wait()
	}
}

// hashOf returns the hash a batch's record carries for name.
func hashOf(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// newBatch returns a new batch of 8 records for ep, the first of the hash
// of first if given, the others of the hashes every batch carries.
func (r *partitionRun) newBatch(ep *crashEndpoint, first string) *crashBatch {
	r.mu.Lock()
	r.sent++
	b := &crashBatch{id: fmt.Sprintf("part-%s-%d", ep.Country, r.sent), ep: ep}
	r.mu.Unlock()
	var body bytes.Buffer
	body.WriteString(`{"batch_id":"` + b.id + `","records":[`)
	for i := range 8 {
		name := "scale#" + strconv.Itoa(i)
		if i == 0 && first != "" {
			name = first
		}
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"time":%q,"kind":"file","sha256":%q,"size":1,"detection":"","url":"","path":"C:/x/%d.exe","product":"vitrine-agent/1.0.0","ruledb":1}`,
			r.recTime, hashOf(name), i)
		b.recs = append(b.recs, crashRecord{batch: b, sha256: hashOf(name)})
	}
	body.WriteString(`]}`)
	b.body = body.Bytes()
	return b
}

// call makes one request and checks the form of its answer: 200, or a
// 503 that says why (JSON) and when to retry (Retry-After), within the
// client's timeout.
func (r *partitionRun) call(ctx context.Context, method, u, token, justification string, body []byte) (outcome, []byte, http.Header) {
	o := outcome{started: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if justification != "" {
		req.Header.Set(access.Header, justification)
	}
	resp, err := r.hc.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	o.took = time.Since(o.started)
	if err != nil {
		o.msg = err.Error()
		if ctx.Err() == nil {
			r.t.Errorf("%s %s: no answer in %s: %v", method, u, o.took.Round(time.Millisecond), err)
		}
		return o, nil, nil
	}
	o.code = resp.StatusCode
	switch o.code {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" || resp.Header.Get("Retry-After") == "" {
			r.t.Errorf("%s %s: a 503 that does not say why (JSON error) or when to retry (Retry-After %q): %q", method, u, resp.Header.Get("Retry-After"), b)
		}
		o.msg = e.Error
	default:
		r.t.Errorf("%s %s: %s %s; want 200, or 503 when a link it needs is cut", method, u, resp.Status, b)
		o.msg = string(b)
	}
	return o, b, resp.Header
}

// ingest sends b and keeps what came of it: acknowledged, or to be sent
// again at the end (refused, or unanswered).
func (r *partitionRun) ingest(ctx context.Context, b *crashBatch) outcome {
	o, body, _ := r.call(ctx, http.MethodPost, b.ep.IngestURL, b.ep.Token, "", b.body)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o.code {
	case http.StatusOK:
		var ans ingestAnswer
		if err := json.Unmarshal(body, &ans); err != nil || ans.BatchID != b.id || ans.Records != len(b.recs) {
			r.t.Errorf("batch %s: answer %s", b.id, body)
		}
		if ans.Duplicate && r.refused[b.id] && !r.unanswered[b.id] {
			r.t.Errorf("batch %s was refused (503) and yet stored", b.id)
		}
		r.acked[b.ep.Region][b.id] = b
		delete(r.pending, b.id)
	case http.StatusServiceUnavailable:
		r.refused[b.id] = true
		r.pending[b.id] = b
	default:
		r.unanswered[b.id] = true
		r.pending[b.id] = b
	}
	return o
}

// isAcked reports whether b was acknowledged.
func (r *partitionRun) isAcked(b *crashBatch) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acked[b.ep.Region][b.id] != nil
}

// read has the analyst read zurich's records of a hash every batch
// carries, with their personal fields (which custody opens) or their
// threat fields only, and keeps the receipt of a read that released them.
func (r *partitionRun) read(ctx context.Context, personal bool) outcome {
	o, _, h := r.call(ctx, http.MethodGet, r.zurich+"/v1/records?limit=5&personal="+strconv.FormatBool(personal)+"&sha256="+hashOf("scale#1"), r.analyst, "CUSTOMER_INITIATED_SUPPORT; case 17", nil)
	if o.code != http.StatusOK {
		return o
	}
	rc := h.Get("Vitrine-Access-Receipt")
	_, idx, _ := strings.Cut(rc, " ")
	i, err := strconv.ParseInt(idx, 10, 64)
	if err != nil {
		r.t.Errorf("a read released records without a receipt of its access entry: %q", rc)
		return o
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts[rc] = true
	r.maxReceipt = max(r.maxReceipt, i)
	return o
}

// checkpoint reads zurich's access log's checkpoint from the platform, as
// an outsider does: signed by the log, cosigned under the witness policy.
func (r *partitionRun) checkpoint() (*tlog.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(r.t.Context(), 10*time.Second)
	defer cancel()
	return r.log.Checkpoint(ctx)
}

// prevalence returns the prevalence the region at base gives name's hash,
// or -1 if it does not answer.
func (r *partitionRun) prevalence(base, token, name string) int64 {
	ctx, cancel := context.WithTimeout(r.t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/verdicts/"+hashOf(name), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := r.hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var a reputation.Answer
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&a) != nil {
		return -1
	}
	return a.Prevalence
}

// partitionTable writes what TestPartitions saw as a Markdown table, one
// row per cut.
func partitionTable(rows []partitionRow) string {
	var b strings.Builder
	b.WriteString("| link cut | zurich's ingest | analyst's reads in zurich | a new endpoint's first batch | exchange | access-zurich checkpoint | once the link is back |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		exchange := fmt.Sprintf("moscow → zurich: %s; zurich → moscow: %s", crossed(r.mFresh, r.zurichTook), crossed(r.zFresh, r.moscowTook))
		cp := fmt.Sprintf("grew %d → %d", r.cpSettled, r.cpEnd)
		if r.cpEnd == r.cpSettled {
			cp = fmt.Sprintf("stayed at %d; %d once back", r.cpEnd, r.cpAfter)
		}
		var back []string
		for _, res := range r.resumed {
			back = append(back, fmt.Sprintf("%s %s", res.what, seconds(res.after)))
		}
		if len(back) == 0 {
			back = []string{"nothing had failed"}
		}
		threat := summarize([]outcome{r.threat})
		if i := slices.IndexFunc(r.reads, func(o outcome) bool { return o.code == r.threat.code }); i >= 0 && r.threat.msg == r.reads[i].msg && r.threat.msg != "" {
			threat = fmt.Sprintf("%d ×1 in %s, the same", r.threat.code, seconds(r.threat.took))
		}
		fmt.Fprintf(&b, "| %s (%s) | %s | personal fields: %s; threat fields only: %s | %s | %s | %s | %s |\n", r.cut.name, r.cut.link,
			summarize(r.ingest), summarize(r.reads), threat, summarize([]outcome{r.first}), exchange, cp, strings.Join(back, ", "))
	}
	return b.String()
}

// crossed says whether a region's new hash reached the other's verdicts.
func crossed(batch outcome, took bool) string {
	switch {
	case batch.code != http.StatusOK:
		return fmt.Sprintf("its batch was refused (%d)", batch.code)
	case took:
		return "crossed"
	}
	return "held back"
}

// summarize says what came of a list of requests: each status, how many,
// in how long at most, and the reason the first refusal gave.
func summarize(list []outcome) string {
	type group struct {
		n       int
		longest time.Duration
		msg     string
	}
	var order []int
	groups := map[int]*group{}
	for _, o := range list {
		g := groups[o.code]
		if g == nil {
			g = &group{msg: o.msg}
			groups[o.code] = g
			order = append(order, o.code)
		}
		g.n++
		g.longest = max(g.longest, o.took)
	}
	var parts []string
	for _, code := range order {
		g := groups[code]
		s := fmt.Sprintf("%d ×%d in ≤%s", code, g.n, seconds(g.longest))
		if code == 0 {
			s = fmt.Sprintf("no answer ×%d in %s", g.n, seconds(g.longest))
		}
		if code != http.StatusOK && g.msg != "" {
			s += ": “" + strings.ReplaceAll(g.msg, "|", `\|`) + "”"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// seconds writes d in seconds, rounded up to a tenth.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(math.Ceil(d.Seconds()*10)/10, 'f', 1, 64) + " s"
}
