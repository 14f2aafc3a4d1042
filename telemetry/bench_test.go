package telemetry

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The two benchmarks below run side by side: ParseBatch and the baseline it
// replaces, encoding/json with DisallowUnknownFields into the same types
// (which checks no rule of a record at all). Run:
//
//	go test ./telemetry -run '^$' -bench 'ParseBatch500|StdlibJSON500' -count 5

func BenchmarkParseBatch500(b *testing.B) {
	body := genBody(1, 500)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseBatch(body, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkStdlibJSON500(b *testing.B) {
	body := genBody(1, 500)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var batch Batch
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "records/s")
}
