package gateway

import (
	"cmp"
	"container/list"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// CountedHeader is the response header of an attempt without a valid
// credential that was counted instead of logged on its own: its value is
// the origin of the access log whose next denied summary
// (access.DeniedSummary) counts it. Such an answer has no
// [access.ReceiptHeader].
const CountedHeader = "Vitrine-Access-Counted"

// Limits bound the individual access records of attempts that carry no
// valid credential. Anyone can make such attempts, so logging each one
// would let anyone grow the permanent access log at will. Within the
// limits an attempt gets its own denied record; beyond them it is counted
// by action, reason and source network, and the counts go into the log as
// denied summaries. Attempts with a valid credential are always logged
// one by one. Zero fields take the defaults.
type Limits struct {
	// Burst is how many attempts of one source network (the client's
	// IPv4 /24 or IPv6 /64) are logged individually in a row (default 5);
	// the network earns one more every Every (default 10s).
	Burst int
	Every time.Duration
	// AllBurst and AllEvery bound the same across all networks together
	// (default 50, one more every 500ms), so that many networks cannot
	// flood the log either: an IPv6 /48 holds 65,536 /64s.
	AllBurst int
	AllEvery time.Duration
	// Networks is how many source networks the gateway tells apart
	// (default 4096); the least recently seen is forgotten first, and
	// comes back with a full burst.
	Networks int
	// Counts bounds the distinct (action, reason, network) counts held
	// between two summaries (default 1024). Beyond it, attempts from
	// networks not yet counted are counted under the /0 prefix of their
	// address family, so memory and summaries stay bounded.
	Counts int
	// FlushInterval is how often [Gateway.Run] writes the counts as
	// denied summaries (default 10s).
	FlushInterval time.Duration
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Burst, 5)
	defDur(&l.Every, 10*time.Second)
	def(&l.AllBurst, 50)
	defDur(&l.AllEvery, 500*time.Millisecond)
	def(&l.Networks, 4096)
	def(&l.Counts, 1024)
	defDur(&l.FlushInterval, 10*time.Second)
}

// countKey is what a denied summary counts attempts by.
type countKey struct{ action, reason, network string }

// bucket is a token bucket: tokens at time at.
type bucket struct {
	network string
	tokens  float64
	at      time.Time
}

// has refills b for the time since it was last seen and reports whether
// it holds a token, without taking it.
func (b *bucket) has(now time.Time, burst int, every time.Duration) bool {
	if now.After(b.at) {
		b.tokens = min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(every))
		b.at = now
	}
	return b.tokens >= 1
}

// denials decides which unauthenticated attempts are logged individually
// and counts the others until they are flushed. It is safe for concurrent
// use.
type denials struct {
	lim Limits

	mu      sync.Mutex
	nets    map[string]*list.Element // of *bucket, in lru
	lru     *list.List               // most recently seen first
	all     bucket
	pending map[countKey]int64
	total   int64     // the sum of pending
	from    time.Time // the earliest attempt pending
	to      time.Time // the latest attempt pending
	failed  bool      // the last flush could not write its summaries
	stopped bool      // Run made its final flush: nothing is counted any more

	flushMu sync.Mutex // one flush at a time, so that summaries go out in order
}

func newDenials(lim Limits) *denials {
	lim.setDefaults()
	return &denials{lim: lim, nets: map[string]*list.Element{}, lru: list.New(),
		all: bucket{tokens: float64(lim.AllBurst)}, pending: map[countKey]int64{}}
}

// decide reports whether the attempt of key, at now, gets its own denied
// record. If not, it is counted, and failing says whether the last flush
// could not write the counts.
func (d *denials) decide(now time.Time, key countKey) (individual, failing bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return true, false
	}
	var b *bucket
	if e, ok := d.nets[key.network]; ok {
		d.lru.MoveToFront(e)
		b = e.Value.(*bucket)
	} else {
		if d.lru.Len() >= d.lim.Networks {
			// The network forgotten has no count to lose: counts are
			// kept apart, by network, until they are flushed.
			old := d.lru.Remove(d.lru.Back()).(*bucket)
			delete(d.nets, old.network)
		}
		b = &bucket{network: key.network, tokens: float64(d.lim.Burst), at: now}
		d.nets[key.network] = d.lru.PushFront(b)
	}
	if b.has(now, d.lim.Burst, d.lim.Every) && d.all.has(now, d.lim.AllBurst, d.lim.AllEvery) {
		b.tokens--
		d.all.tokens--
		return true, false
	}
	d.add(key, 1, now, now)
	return false, d.failed
}

// add counts n attempts of key made between from and to. d.mu is held.
func (d *denials) add(key countKey, n int64, from, to time.Time) {
	if _, ok := d.pending[key]; !ok && len(d.pending) >= d.lim.Counts {
		key.network = anyNetwork(key.network)
	}
	if d.total == 0 {
		d.from, d.to = from, to
	} else {
		if from.Before(d.from) {
			d.from = from
		}
		if to.After(d.to) {
			d.to = to
		}
	}
	d.pending[key] += n
	d.total += n
}

// anyNetwork returns the /0 prefix of network's address family, under
// which attempts are counted once too many networks are.
func anyNetwork(network string) string {
	p, err := netip.ParsePrefix(network)
	if err != nil {
		return access.UnknownNetwork
	}
	return netip.PrefixFrom(p.Addr(), 0).Masked().String()
}

// sourceNetwork returns the network an attempt came from: the /24 of an
// IPv4 client, the /64 of an IPv6 one, from the connection's address
// (never from headers the client writes, such as X-Forwarded-For).
func sourceNetwork(remoteAddr string) string {
	a, err := netip.ParseAddr(remoteAddr)
	if ap, perr := netip.ParseAddrPort(remoteAddr); perr == nil {
		a, err = ap.Addr(), nil
	}
	if err != nil {
		return access.UnknownNetwork
	}
	a = a.Unmap().WithZone("")
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return access.UnknownNetwork
	}
	return p.String()
}

// counted answers an attempt without a valid credential that decide
// counted: 401, without a receipt, with [CountedHeader] naming the log
// whose next summary counts it. While the last flush could not write its
// summaries the answer is 503, as for an attempt the log cannot take; the
// attempt is counted all the same.
func (g *Gateway) counted(w http.ResponseWriter, r *http.Request, reason string, failing bool) {
	if failing {
		// No log line per attempt: Run logs the failed flush once, and
		// these attempts are what anyone can send in numbers.
		httpapi.Fail(w, g.logger, errLog, errLog.Error()+" (denied attempt: "+reason+"; denied summaries are waiting to be appended); no data was released, retry later")
		return
	}
	w.Header().Set(CountedHeader, g.cfg.Log.Origin())
	httpapi.Unauthorized(w, "this route needs a principal's bearer token (Authorization: Bearer vp1.…); this attempt is counted in the access log's next summary of denied attempts")
}

// Pending returns how many attempts the gateway counted that are not yet
// in the access log: those since the last flush, and those a failed
// flush could not write.
func (g *Gateway) Pending() int64 {
	d := g.denials
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// Flush appends the counted attempts to the access log as denied
// summaries (access.DeniedSummary), as many as their counts need, and
// returns once the log has durably sequenced them. Nothing is lost when
// the log refuses one: the counts of the summaries it did not take are
// kept for the next flush, and meanwhile counted attempts are answered
// 503. It is safe for concurrent use; flushes run one at a time.
func (g *Gateway) Flush(ctx context.Context) error {
	d := g.denials
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	if d.total == 0 {
		d.failed = false
		d.mu.Unlock()
		return nil
	}
	pending, from, to := d.pending, d.from, d.to
	d.pending, d.total = map[countKey]int64{}, 0
	d.mu.Unlock()

	s := access.DeniedSummary{Time: g.cfg.Now(), Region: g.cfg.Region, From: from, To: to}
	if s.Time.Before(to) {
		s.Time = to // the clock went back
	}
	for _, k := range slices.SortedFunc(maps.Keys(pending), compareKeys) {
		s.Counts = append(s.Counts, access.DeniedCount{Action: k.action, Reason: k.reason, Network: k.network, Count: pending[k]})
	}
	entries, err := split(&s)
	if err != nil {
		d.restore(s.Counts, from, to)
		return fmt.Errorf("building denied summary: %w", err)
	}
	for i, e := range entries {
		if _, err := g.cfg.Log.Append(ctx, e.entry); err != nil {
			var left []access.DeniedCount
			for _, e := range entries[i:] {
				left = append(left, e.counts...)
			}
			d.restore(left, from, to)
			return fmt.Errorf("appending denied summary: %w: %v", errLog, err)
		}
	}
	d.mu.Lock()
	d.failed = false
	d.mu.Unlock()
	return nil
}

func compareKeys(a, b countKey) int {
	return cmp.Or(strings.Compare(a.action, b.action), strings.Compare(a.reason, b.reason), strings.Compare(a.network, b.network))
}

// restore puts back counts a flush could not write, for the next one.
func (d *denials) restore(counts []access.DeniedCount, from, to time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failed = true
	for _, c := range counts {
		d.add(countKey{c.Action, c.Reason, c.Network}, c.Count, from, to)
	}
}

// summaryEntry is one encoded summary and the counts it holds.
type summaryEntry struct {
	entry  []byte
	counts []access.DeniedCount
}

// split encodes s as one summary, or, if its counts do not fit one entry,
// as several with the same window.
func split(s *access.DeniedSummary) ([]summaryEntry, error) {
	b, err := s.Marshal()
	if err == nil {
		return []summaryEntry{{b, s.Counts}}, nil
	}
	if len(s.Counts) < 2 {
		return nil, err
	}
	half := len(s.Counts) / 2
	a, b2 := *s, *s
	a.Counts, b2.Counts = s.Counts[:half], s.Counts[half:]
	first, err := split(&a)
	if err != nil {
		return nil, err
	}
	second, err := split(&b2)
	if err != nil {
		return nil, err
	}
	return append(first, second...), nil
}

// stop makes the gateway log every later attempt individually: nothing
// would flush what it counted.
func (d *denials) stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
}

// finalFlushTimeout bounds the flush of Run's return.
const finalFlushTimeout = 10 * time.Second

// Run writes the counted attempts to the access log every
// Limits.FlushInterval until ctx is done, then flushes once more and
// returns; from then on the gateway logs every attempt individually,
// since nothing would write its counts. Without Run, counts reach the log
// only through [Gateway.Flush]. A flush that fails is logged and retried
// at the next interval; counts the final flush could not write are lost
// with the process, and logged with their number.
func (g *Gateway) Run(ctx context.Context) {
	t := time.NewTicker(g.denials.lim.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.denials.stop()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			defer cancel()
			if err := g.Flush(fctx); err != nil {
				g.logger.ErrorContext(fctx, "final denied summary failed: counted attempts are not in the access log", "err", err, "attempts", g.Pending())
			}
			return
		case <-t.C:
			if err := g.Flush(ctx); err != nil {
				g.logger.ErrorContext(ctx, "denied summary failed; the counts are kept for the next one", "err", err, "attempts", g.Pending())
			}
		}
	}
}
