package scan_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/scan"
)

func Example() {
	src, err := ruledb.Parse("example.ndb", strings.NewReader("Example.Body:0:*:6576696c{-4}636f6465\n"))
	if err != nil {
		log.Fatal(err)
	}
	data, err := ruledb.Compile([]*ruledb.Source{src}, 1)
	if err != nil {
		log.Fatal(err)
	}
	db, err := ruledb.Open(data)
	if err != nil {
		log.Fatal(err)
	}
	s, err := scan.New(db)
	if err != nil {
		log.Fatal(err)
	}
	file := "\x00\x01 some evil--code here"
	matches, err := s.Scan(strings.NewReader(file), int64(len(file)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(matches)
	// Output: [Example.Body (body)]
}
