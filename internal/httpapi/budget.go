package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultBodyBudget is the default number of request-body bytes a
// [BodyBudget] lets a process hold in memory at once.
const DefaultBodyBudget = 64 << 20

// Bodies of at most smallBody bytes may use the whole budget; larger ones
// share at most three quarters of it, so that a flood of large bodies still
// leaves room for ordinary ones (a batch of 500 records is about 120 KB).
const smallBody = 1 << 20

// chunkedStep is the first buffer of a body sent without a declared
// length; the buffer doubles from there, each size reserved before it is
// allocated.
const chunkedStep = 64 << 10

// budgetRetry is the Retry-After of a request refused for want of budget.
// Budget comes back as the requests in flight are answered, and the server's
// ReadTimeout bounds how long a slow sender holds it.
const budgetRetry = 5 * time.Second

var (
	errBudgetFull   = errors.New("request bodies in memory: budget exhausted")
	errSenderBudget = errors.New("request bodies in memory: the sender's share is in use")
	errNeverFits    = errors.New("request bodies in memory: larger than the budget")
)

// BodyBudget bounds the request bodies held in memory at once, in all and
// per sender (a key such as the authenticated endpoint id). Its methods are
// safe for concurrent use, and never wait for budget: a request that does
// not fit is refused at once.
//
// What it counts is the buffers [BodyBudget.Read] allocates. A handler
// holds more while it works on a body (a parser's copy, the values parsed
// from it), a small multiple of what the budget counts: it keeps the body's
// reservation until it has dropped those too.
type BodyBudget struct {
	total, large, perKey int64

	mu      sync.Mutex
	inUse   int64            // bytes reserved in all
	inLarge int64            // of them, by reservations over smallBody
	peak    int64            // the most inUse has been
	byKey   map[string]int64 // bytes reserved per key; no zero entries
}

// NewBodyBudget returns a budget of total bytes, of which one key may hold
// at most perKey. A total of zero or less means [DefaultBodyBudget]; a
// perKey of zero or less, or above total, means total.
func NewBodyBudget(total, perKey int64) *BodyBudget {
	if total <= 0 {
		total = DefaultBodyBudget
	}
	if perKey <= 0 || perKey > total {
		perKey = total
	}
	return &BodyBudget{total: total, large: total / 4 * 3, perKey: perKey, byKey: map[string]int64{}}
}

// InUse returns the bytes reserved now.
func (b *BodyBudget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}

// Peak returns the most bytes that were reserved at once.
func (b *BodyBudget) Peak() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// reserve grows a reservation of key from have bytes (zero for a new one)
// to want. It returns errSenderBudget when key would hold more than its
// share, errBudgetFull when the budget has no room now, and errNeverFits
// when it never will.
func (b *BodyBudget) reserve(key string, have, want int64) error {
	lim := b.total
	if want > smallBody {
		lim = b.large
	}
	if want > lim || want > b.perKey {
		return errNeverFits
	}
	large := want // what the reservation adds to the large share
	if want <= smallBody {
		large = 0
	} else if have > smallBody {
		large -= have
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.byKey[key]+want-have > b.perKey:
		return errSenderBudget
	case b.inUse+want-have > b.total, b.inLarge+large > b.large:
		return errBudgetFull
	}
	b.inUse += want - have
	b.peak = max(b.peak, b.inUse)
	b.inLarge += large
	b.byKey[key] += want - have
	return nil
}

// free gives back a reservation of n bytes of key's.
func (b *BodyBudget) free(key string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse -= n
	if n > smallBody {
		b.inLarge -= n
	}
	if b.byKey[key] -= n; b.byKey[key] <= 0 {
		delete(b.byKey, key)
	}
}

// Read reads r's body, at most limit bytes, into memory reserved from b for
// key. The caller calls release (once or more; only the first frees) when
// it no longer holds the body or anything that shares its memory; ok is
// false when Read has answered the request instead:
//
//   - 413 when the body is over limit, or over what the budget can ever
//     hold;
//   - 429 when key already holds its share of the budget;
//   - 503 when the budget is exhausted now;
//   - 400 when the body cannot be read (the server's ReadTimeout ends a
//     body that trickles in).
//
// The 429 and 503 answers carry a Retry-After and close the connection:
// the rest of the body is never read.
//
// A body of declared length is reserved and allocated whole before it is
// read, in one allocation. One sent in chunks is read into a buffer that
// doubles from 64 KiB, each new size reserved before it is allocated (the
// reservation grows to it; the buffer it replaces is garbage once copied).
func (b *BodyBudget) Read(w http.ResponseWriter, r *http.Request, key string, limit int64) (body []byte, release func(), ok bool) {
	n := r.ContentLength
	if n > limit {
		tooLarge(w, limit)
		return nil, nil, false
	}
	if n == 0 {
		return []byte{}, func() {}, true
	}
	if n < 0 {
		return b.readChunked(w, r, key, limit)
	}
	if err := b.reserve(key, 0, n); err != nil {
		b.refuse(w, err)
		return nil, nil, false
	}
	release = b.releaser(key, &n)
	body = make([]byte, n)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		release()
		Error(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, nil, false
	}
	return body, release, true
}

// readChunked is Read for a body without a declared length.
func (b *BodyBudget) readChunked(w http.ResponseWriter, r *http.Request, key string, limit int64) ([]byte, func(), bool) {
	var held int64
	release := b.releaser(key, &held)
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= limit {
				// Full at the limit: the end of the body, or one byte
				// too many. (Reserving limit+1 to tell them apart was
				// more than a sender whose share is limit may hold.)
				var one [1]byte
				switch _, err := io.ReadAtLeast(r.Body, one[:], 1); {
				case err == io.EOF:
					return buf, release, true
				case err != nil:
					release()
					Error(w, http.StatusBadRequest, "reading request body: "+err.Error())
					return nil, nil, false
				}
				release()
				w.Header().Set("Connection", "close")
				tooLarge(w, limit)
				return nil, nil, false
			}
			next := min(max(2*int64(cap(buf)), chunkedStep), limit)
			if err := b.reserve(key, held, next); err != nil {
				release()
				b.refuse(w, err)
				return nil, nil, false
			}
			held = next
			// The old buffer is garbage once copied: the reservation
			// counts the new one only.
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				release()
				tooLarge(w, limit)
				return nil, nil, false
			}
			return buf, release, true
		}
		if err != nil {
			release()
			Error(w, http.StatusBadRequest, "reading request body: "+err.Error())
			return nil, nil, false
		}
	}
}

// releaser returns a function that frees *held bytes of key's once, however
// often it is called.
func (b *BodyBudget) releaser(key string, held *int64) func() {
	return func() {
		if *held > 0 {
			b.free(key, *held)
			*held = 0
		}
	}
}

// refuse answers a request that reserve refused.
func (b *BodyBudget) refuse(w http.ResponseWriter, err error) {
	if err == errNeverFits {
		Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the %d bytes this server holds in memory for one request; send it in smaller parts", min(b.perKey, b.large)))
		return
	}
	// Close the connection rather than read a body that will not be used.
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", strconv.Itoa(int(budgetRetry.Seconds())))
	if err == errSenderBudget {
		Error(w, http.StatusTooManyRequests, fmt.Sprintf("this sender already has %d bytes of request bodies in flight, its limit: the request was refused unread and nothing was stored; retry once the requests in flight are answered", b.perKey))
		return
	}
	Error(w, http.StatusServiceUnavailable, fmt.Sprintf("the server holds its limit of request bodies in memory (%d bytes): the request was refused unread and nothing was stored; retry in a few seconds", b.total))
}

func tooLarge(w http.ResponseWriter, limit int64) {
	Error(w, http.StatusRequestEntityTooLarge, "request body is larger than "+strconv.FormatInt(limit, 10)+" bytes")
}
