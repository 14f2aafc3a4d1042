package region

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/telemetry"
)

// Flags of TestSlowBodiesAgainstServer, which measures a running
// `vitrine up` and is skipped without -slowbodies.url.
var (
	slowURL       = flag.String("slowbodies.url", "", "base URL of a running `vitrine up` to send slow bodies to (loopback only)")
	slowToken     = flag.String("slowbodies.operator-token", "", "file holding its operator token")
	slowPID       = flag.Int("slowbodies.pid", 0, "its process id, to sample VmRSS from /proc")
	slowConns     = flag.Int("slowbodies.conns", 40, "connections sending slow bodies")
	slowEndpoints = flag.Int("slowbodies.endpoints", 40, "endpoints they send for, in turn")
	slowSend      = flag.Duration("slowbodies.send", 20*time.Second, "how long each body takes to send all but its last byte")
	slowHold      = flag.Duration("slowbodies.hold", 10*time.Second, "how long each connection then holds its body before giving up")
	slowMaxRSS    = flag.Int("slowbodies.max-rss-mib", 300, "fail if the server's VmRSS goes over this")
)

// TestSlowBodiesAgainstServer is the memory measurement of
// docs/performance.md ("Slow telemetry bodies"): 40 connections each
// send a 16 MiB body slowly, never its last byte, to a running server,
// while another endpoint posts a small batch every half second. A refused
// connection waits a second and starts again. It samples the server's
// VmRSS every 100 ms and fails if it goes over -slowbodies.max-rss-mib or
// if a small batch is not stored.
//
//	go test ./internal/region -run TestSlowBodiesAgainstServer -v -args \
//	  -slowbodies.url http://127.0.0.1:18080 -slowbodies.operator-token DATA/operator.token -slowbodies.pid PID
func TestSlowBodiesAgainstServer(t *testing.T) {
	if *slowURL == "" {
		t.Skip("measures a running server: give -slowbodies.url (see the doc comment)")
	}
	u, err := url.Parse(*slowURL)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		t.Fatalf("-slowbodies.url must be a loopback address, not %s", u.Host)
	}
	tokb, err := os.ReadFile(*slowToken)
	if err != nil {
		t.Fatal(err)
	}
	operator := strings.TrimSpace(string(tokb))
	type registered struct {
		Token     string `json:"token"`
		IngestURL string `json:"ingest_url"`
	}
	register := func() registered {
		req, _ := http.NewRequest("POST", *slowURL+"/v1/endpoints", strings.NewReader(`{"country":"DE"}`))
		req.Header.Set("Authorization", "Bearer "+operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r registered
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("registering an endpoint: %d %v", resp.StatusCode, err)
		}
		return r
	}
	victim := register()
	attackers := make([]registered, *slowEndpoints)
	for i := range attackers {
		attackers[i] = register()
	}

	// Sample the server's VmRSS.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peakRSS, startRSS int64
	rss := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", *slowPID))
		if err != nil {
			return 0
		}
		for l := range strings.Lines(string(b)) {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	startRSS = rss()
	wg.Go(func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			peakRSS = max(peakRSS, rss())
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	})

	// The small batches of another endpoint.
	var victimCodes []int
	var victimLat []time.Duration
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			b := smallBatch(fmt.Sprintf("victim-%d-%d", time.Now().UnixNano(), i))
			req, _ := http.NewRequest("POST", victim.IngestURL, bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+victim.Token)
			t0 := time.Now()
			resp, err := http.DefaultClient.Do(req)
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			victimCodes = append(victimCodes, code)
			victimLat = append(victimLat, time.Since(t0))
		}
	})

	// The slow bodies, until the deadline.
	deadline := time.Now().Add(*slowSend + *slowHold)
	var mu sync.Mutex
	codes := map[string]int{}
	var aw sync.WaitGroup
	for i := range *slowConns {
		a := attackers[i%len(attackers)]
		aw.Go(func() {
			for time.Now().Before(deadline) {
				code := sendSlowBody(a.IngestURL, a.Token, deadline)
				mu.Lock()
				codes[code]++
				mu.Unlock()
				if code != "no answer by the end" {
					time.Sleep(time.Second)
				}
			}
		})
	}
	aw.Wait()
	close(stop)
	wg.Wait()

	var names []string
	for k := range codes {
		names = append(names, fmt.Sprintf("%s ×%d", k, codes[k]))
	}
	sort.Strings(names)
	ok := 0
	var maxLat time.Duration
	for i, c := range victimCodes {
		if c == 200 {
			ok++
		}
		maxLat = max(maxLat, victimLat[i])
	}
	t.Logf("%d connections for %d endpoints, %s to send each body but its last byte, then %s held", *slowConns, *slowEndpoints, *slowSend, *slowHold)
	t.Logf("server VmRSS: %d MiB before, peak %d MiB", startRSS>>20, peakRSS>>20)
	t.Logf("slow bodies: %s", strings.Join(names, ", "))
	t.Logf("another endpoint's small batches: %d of %d stored (200), slowest answer %s", ok, len(victimCodes), maxLat.Round(time.Millisecond))
	if peakRSS>>20 > int64(*slowMaxRSS) {
		t.Errorf("the server's VmRSS reached %d MiB; want at most %d", peakRSS>>20, *slowMaxRSS)
	}
	if ok != len(victimCodes) || ok == 0 {
		t.Errorf("%d of %d small batches of another endpoint were stored; want all", ok, len(victimCodes))
	}
}

// sendSlowBody posts a body of telemetry.MaxBatchBytes to ingestURL over a
// connection of its own, all but its last byte spread over -slowbodies.send,
// and holds it until deadline. It returns the status the server answered
// ("503", ...), "no answer by the end" if there was none by the deadline,
// or "error: ..." if the connection failed first.
func sendSlowBody(ingestURL, token string, deadline time.Time) string {
	u, err := url.Parse(ingestURL)
	if err != nil {
		return "error: " + err.Error()
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return "error: dial"
	}
	defer c.Close()
	const size = telemetry.MaxBatchBytes
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, token, size)
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- "error: reading the answer"
			return
		}
		resp.Body.Close()
		answered <- strconv.Itoa(resp.StatusCode)
	}()
	const chunk = 32 << 10
	pause := *slowSend / time.Duration((size-1)/chunk)
	junk := bytes.Repeat([]byte(" "), chunk)
	for sent := 0; sent < size-1; {
		n := min(chunk, size-1-sent)
		if _, err := c.Write(junk[:n]); err != nil {
			select {
			case a := <-answered:
				return a
			case <-time.After(time.Second):
				return "error: writing"
			}
		}
		sent += n
		select {
		case a := <-answered:
			return a
		case <-time.After(pause):
		}
		if time.Now().After(deadline) {
			return "no answer by the end"
		}
	}
	select {
	case a := <-answered:
		return a
	case <-time.After(time.Until(deadline)):
		return "no answer by the end"
	}
}
