package platform

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logserver"
)

// BenchmarkAccessAppend appends an access entry and waits for its proof,
// as the gateway does before it releases records, from many goroutines at
// once: to a log in the process ("local", as `vitrine up`) and through the
// logs' own process over HTTP on loopback ("remote", `vitrine serve --role
// logs`, every proof's checkpoint and leaf checked). Both logs are the
// same journaled tiles, checkpointed every 100 ms, cosigned by a witness
// in the logs' process; the time per operation is what a read waits for
// its log entry. docs/performance.md, "The logs in a process of their
// own".
func BenchmarkAccessAppend(b *testing.B) {
	svc, err := StartLogService(b.Context(), LogServiceConfig{Data: b.TempDir(), Name: "bench.test", Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close(b.Context()) })
	d := svc.Description()
	dl, _ := d.log("access-zurich")
	remote, err := logserver.NewRemote(dl.URL, dl.VKey, []byte(d.WitnessPolicy), svc.Token(), &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		log  appendLog
	}{{"local", svc.logs.logs["access-moscow"]}, {"remote", remote}} {
		b.Run(c.name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(32) // 64 goroutines on two cores: reads in flight at once
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i, err := c.log.Append(b.Context(), fmt.Appendf(nil, "access %s %d", c.name, n.Add(1)))
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := c.log.Prove(b.Context(), i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
