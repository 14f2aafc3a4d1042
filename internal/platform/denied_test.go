package platform

import (
	"context"
	"net/http"
	"testing"

	"github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/gateway"
)

// TestDeniedSummaryOnClose: attempts without a credential beyond the
// gateway's allowance are counted, and Close writes their summary to the
// region's access log before the log closes; after a restart the log
// holds it beside the individual denied records and the commitments.
func TestDeniedSummaryOnClose(t *testing.T) {
	data := t.TempDir()
	p := start(t, data)
	const attempts = 12
	counted := 0
	for i := range attempts {
		req, _ := http.NewRequest("GET", p.URL()+"/regions/zurich/v1/records?sha256="+hashOf("x"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
		if resp.Header.Get(gateway.CountedHeader) != "" {
			counted++
		}
	}
	if counted == 0 || counted == attempts {
		t.Fatalf("%d of %d attempts counted, want some but not all", counted, attempts)
	}
	stop(t, p)

	p = start(t, data)
	defer stop(t, p)
	l := p.Log("access-zurich")
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var summarized int64
	individual := 0
	for bi := uint64(0); bi*256 < cp.Size; bi++ {
		b, err := client.GetEntryBundle(context.Background(), l.Reader().ReadEntryBundle, bi, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entries {
			k := access.EntryKind(e)
			kinds[k]++
			switch k {
			case access.KindDeniedSummary:
				s, err := access.ParseDeniedSummary(e)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range s.Counts {
					if c.Action != "read" || c.Reason != "no credential" || c.Network != "127.0.0.0/24" {
						t.Errorf("summary counts %+v", c)
					}
				}
				summarized += s.Total()
			case access.KindAccess:
				if r, err := access.Parse(e); err == nil && r.Reason == "read: no credential" {
					individual++
				}
			}
		}
	}
	if summarized != int64(counted) || individual != attempts-counted {
		t.Errorf("the log holds %d individual denied records and summaries of %d attempts (entries by kind %v), want %d and %d",
			individual, summarized, kinds, attempts-counted, counted)
	}
}
