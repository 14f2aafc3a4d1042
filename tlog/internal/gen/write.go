//go:build ignore

// Command write regenerates the test vectors of package tlog:
//
//	go run ./tlog/internal/gen/write.go -dir tlog/testdata
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/vitrine-dev/vitrine/tlog/internal/gen"
)

func main() {
	dir := flag.String("dir", "tlog/testdata", "testdata directory to write")
	flag.Parse()
	files, err := gen.Vectors()
	if err != nil {
		log.Fatalf("generating vectors: %v", err)
	}
	for name, b := range files {
		path := filepath.Join(*dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("wrote %d files under %s", len(files), *dir)
}
