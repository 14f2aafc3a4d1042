package config

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	doc := `{
  "name": "vitrine.example",
  "listen": "127.0.0.1:9090",
  "residency": {
    "version": 2,
    "default": "moscow",
    "regions": [
      {"name": "zurich", "countries": ["CH", "DE"]},
      {"name": "moscow"}
    ]
  },
  "stores": {"zurich": "sqlite:/tmp/z.db"},
  "checkpoint_interval": "1s",
  "commitment_interval": "30m"
}
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "vitrine.example" || c.Listen != "127.0.0.1:9090" || c.Stores["zurich"] != "sqlite:/tmp/z.db" ||
		time.Duration(c.CheckpointInterval) != time.Second || time.Duration(c.CommitmentInterval) != 30*time.Minute {
		t.Errorf("parsed %+v", c)
	}
	if c.Residency == nil || c.Residency.Version != 2 {
		t.Fatalf("residency %+v", c.Residency)
	}
	if r, _ := c.Residency.RegionFor("DE"); r != "zurich" {
		t.Errorf("DE -> %s, want zurich", r)
	}
	if r, _ := c.Residency.RegionFor("US"); r != "moscow" {
		t.Errorf("US -> %s, want moscow", r)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, doc string
		line      string
		msg       string
	}{
		{"unknown key", "{\n\"name\": \"x\",\n\"colour\": 1\n}", "line 3", `unknown key "colour"`},
		{"unknown country", "{\n\"residency\": {\"version\": 1, \"default\": \"a\", \"regions\": [\n{\"name\": \"a\", \"countries\": [\"DE\",\n\"XX\"]}]}\n}", "line 4", "XX"},
		{"unknown key in residency", "{\n\"residency\": {\"version\": 1,\n\"colour\": 2, \"default\": \"a\", \"regions\": [{\"name\": \"a\"}]}\n}", "line 3", "colour"},
		{"wrong type", "{\n\"listen\": 8080\n}", "line 2", "listen"},
		{"duplicate key", "{\n\"name\": \"a\",\n\"name\": \"b\"\n}", "line 3", "twice"},
		{"trailing data", "{}\n{}", "line 2", "after"},
		{"not an object", "[1]", "line 1", "object"},
		{"store of unknown region", "{\"residency\": {\"version\": 1, \"default\": \"a\", \"regions\": [{\"name\": \"a\"}]}, \"stores\": {\"b\": \"sqlite:x\"}}", "", `no region "b"`},
		{"bad store", "{\"stores\": {\"zurich\": \"mysql://x\"}}", "", "postgres://"},
		{"duration not a string", "{\n\"checkpoint_interval\": 200\n}", "line 2", "200ms"},
		{"bad duration", "{\n\"commitment_interval\": \"an hour\"\n}", "line 2", "commitment_interval"},
		{"negative duration", "{\n\"commitment_interval\": \"-1h\"\n}", "line 2", "negative"},
		{"the known keys listed", "{\"tuf\": 1}", "line 1", "debug_listen"},
		{"log store of no log", `{"log_stores": {"access-paris": "journal"}}`, "log_stores", `no log is named "access-paris"`},
		{"log store not a location", `{"log_stores": {"default": "sqlite:/x"}}`, "log_stores", `want "journal", mysql://`},
		{"log store with a password", `{"log_stores": {"policy": "mysql://u:secret@h:3306/d"}}`, "log_stores", "password_file"},
		{"certificate without its key", `{"tls_cert": "/etc/cert.pem"}`, "tls_cert", "set both"},
		{"key without its certificate", `{"tls_key": "/etc/key.pem"}`, "tls_key", "set both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			if !strings.Contains(err.Error(), tc.line) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to contain %q and %q", err, tc.line, tc.msg)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"name":"x","residency":{"version":1,"default":"a","regions":[{"name":"a"}]}}`))
	f.Add([]byte(`{"stores":{"a":"sqlite:b"}}`))
	f.Add([]byte(`{"log_stores":{"default":"mysql://u@h:3306/d","release":"journal"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse(doc)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
