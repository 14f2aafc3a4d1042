package store_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/store"
	_ "github.com/vitrine-dev/vitrine/internal/store/postgres"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec, kind, target string
		wantErr            string
	}{
		{spec: "sqlite:/var/lib/vitrine/zurich.db", kind: "sqlite", target: "/var/lib/vitrine/zurich.db"},
		{spec: "sqlite:data/moscow.db", kind: "sqlite", target: "data/moscow.db"},
		{spec: "sqlite:", wantErr: "needs a file path"},
		{spec: "postgres://vitrine@db:5432/vitrine?sslmode=disable", kind: "postgres", target: "postgres://vitrine@db:5432/vitrine?sslmode=disable"},
		{spec: "postgresql://db/vitrine", kind: "postgres", target: "postgresql://db/vitrine"},
		{spec: "", wantErr: "want sqlite:PATH or a postgres:// URL"},
		{spec: "/var/lib/vitrine/zurich.db", wantErr: "want sqlite:PATH or a postgres:// URL"},
		{spec: "mysql://root:hunter2@db/vitrine", wantErr: "mysql://root:xxxxx@db/vitrine"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			kind, target, err := store.ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil || kind != tt.kind || target != tt.target {
				t.Errorf("ParseSpec(%q) = %q, %q, %v; want %q, %q", tt.spec, kind, target, err, tt.kind, tt.target)
			}
		})
	}
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zurich.db")
	s, err := store.Open(t.Context(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*sqlite.Store); !ok {
		t.Errorf("store.Open(sqlite:…) = %T, want *sqlite.Store", s)
	}
}

func TestOpenBadSpec(t *testing.T) {
	if _, err := store.Open(t.Context(), "redis://localhost"); err == nil {
		t.Fatal("store.Open of a redis URL succeeded")
	}
	if _, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")); err == nil {
		t.Fatal("store.Open in a missing directory succeeded")
	} else if errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("wrong error: %v", err)
	}
}
