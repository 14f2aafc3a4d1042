// Package metricstest reads what a /metrics route serves, for tests: the
// Prometheus text format, parsed by Prometheus's own parser (expfmt).
package metricstest

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one scrape: the text served and the families parsed from it.
type Scrape struct {
	Text     string
	Families map[string]*dto.MetricFamily
}

// ScrapeHandler asks h for GET /metrics.
func ScrapeHandler(t testing.TB, h http.Handler) *Scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return parse(t, rec.Body.String())
}

// ScrapeURL asks u with hc, sending token as a bearer token if it is not
// empty.
func ScrapeURL(t testing.TB, hc *http.Client, u, token string) *Scrape {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", u, resp.StatusCode, err, b)
	}
	return parse(t, string(b))
}

func parse(t testing.TB, text string) *Scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the metrics: %v\n%s", err, text)
	}
	return &Scrape{Text: text, Families: fams}
}

// Value returns the value of the sample of the family name whose labels
// are exactly labels: a counter's, a gauge's, or a histogram's count.
// It reports false if there is no such sample.
func (s *Scrape) Value(name string, labels map[string]string) (float64, bool) {
	f := s.Families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// Get is Value for a sample that must be there.
func (s *Scrape) Get(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := s.Value(name, labels)
	if !ok {
		t.Fatalf("no sample %s%v in:\n%s", name, labels, s.Grep(name))
	}
	return v
}

// Want is a sample a scrape must have: the family Name's sample with
// exactly Labels, of Value (a histogram's count).
type Want struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Check reports every sample of wants that the scrape lacks or has
// another value of.
func (s *Scrape) Check(t testing.TB, wants ...Want) {
	t.Helper()
	for _, w := range wants {
		if got, ok := s.Value(w.Name, w.Labels); !ok {
			t.Errorf("no sample %s%v in:\n%s", w.Name, w.Labels, s.Grep(w.Name))
		} else if got != w.Value {
			t.Errorf("%s%v = %v, want %v", w.Name, w.Labels, got, w.Value)
		}
	}
}

// LabelNames returns the label names of the family name's samples, each
// set sorted and joined with commas, the sets sorted and without
// repetition.
func (s *Scrape) LabelNames(name string) []string {
	f := s.Families[name]
	if f == nil {
		return nil
	}
	var sets []string
	for _, m := range f.Metric {
		var names []string
		for _, l := range m.Label {
			names = append(names, l.GetName())
		}
		slices.Sort(names)
		sets = append(sets, strings.Join(names, ","))
	}
	slices.Sort(sets)
	return slices.Compact(sets)
}

// Grep returns the lines of the text that mention name.
func (s *Scrape) Grep(name string) string {
	var out []string
	for line := range strings.Lines(s.Text) {
		if strings.Contains(line, name) {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
