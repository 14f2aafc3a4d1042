package telemetry

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"
)

// testNow is the time tests judge record times against.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// genRecords returns n typical records, the same ones for the same seed:
// mostly files, some detections and URLs, about 250 bytes each in JSON.
func genRecords(seed uint64, n int) []Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	detections := []string{"EICAR-Test-File", "Trojan.Win32.Agent.xyz", "HEUR:Trojan.Script.Generic", "not-a-virus:AdWare.Win32.Agent"}
	recs := make([]Record, n)
	for i := range recs {
		var sum [32]byte
		for j := range sum {
			sum[j] = byte(rng.Uint32())
		}
		r := Record{
			Time:    testNow.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Millisecond),
			Kind:    KindFile,
			SHA256:  hex.EncodeToString(sum[:]),
			Size:    rng.Int64N(50 << 20),
			Path:    fmt.Sprintf("C:/Users/user%04d/AppData/Local/Temp/setup_%06d.exe", rng.IntN(10000), rng.IntN(1000000)),
			Product: "vitrine-agent/1.0.0",
			RuleDB:  uint64(40 + rng.IntN(5)),
		}
		switch rng.IntN(10) {
		case 0:
			r.Kind = KindDetection
			r.Detection = detections[rng.IntN(len(detections))]
		case 1:
			r.Kind = KindURL
			r.URL = fmt.Sprintf("https://downloads.example.com/files/%d/setup.exe?ref=%d", rng.IntN(100000), rng.IntN(1000))
		}
		recs[i] = r
	}
	return recs
}

// genBody returns the JSON body of a batch of n typical records.
func genBody(seed uint64, n int) []byte {
	b, err := json.Marshal(&Batch{BatchID: fmt.Sprintf("batch-%d", seed), Records: genRecords(seed, n)})
	if err != nil {
		panic(err)
	}
	return b
}
