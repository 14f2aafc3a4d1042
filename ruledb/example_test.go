package ruledb_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"

	"github.com/vitrine-dev/vitrine/ruledb"
)

func Example() {
	v1, err := ruledb.LoadDir("testdata/sample")
	if err != nil {
		log.Fatal(err)
	}
	extra, err := ruledb.Parse("extra.ndb", strings.NewReader("Example.Rule:0:*:0102{2-4}0304\n"))
	if err != nil {
		log.Fatal(err)
	}
	old, err := ruledb.Compile(v1, 1)
	if err != nil {
		log.Fatal(err)
	}
	next, err := ruledb.Compile(append(v1, extra), 2)
	if err != nil {
		log.Fatal(err)
	}
	delta, err := ruledb.Delta(old, next)
	if err != nil {
		log.Fatal(err)
	}
	got, err := ruledb.ApplyDelta(old, delta)
	if err != nil {
		log.Fatal(err)
	}
	db, err := ruledb.Open(got)
	if err != nil {
		log.Fatal(err)
	}
	oldDB, _ := ruledb.Open(old)
	fmt.Println("version", db.Version(), "signatures", db.Len(), "same bytes", bytes.Equal(got, next))
	for _, s := range ruledb.Diff(oldDB, db).Added {
		fmt.Println("added", s)
	}
	// Output:
	// version 2 signatures 10 same bytes true
	// added Example.Rule:0:*:0102{2-4}0304
}
