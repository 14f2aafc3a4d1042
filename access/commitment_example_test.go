package access_test

import (
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/access"
)

// A verifier holding a region's records recomputes a commitment from them
// and checks the one in the access log.
func ExampleCommitment_Verify() {
	entry := []byte(`{"v":1,"kind":"commitment","time":"2026-11-22T10:00:00.000Z","region":"zurich","dataset":"telemetry","count":1,"through":1,"root":"sha256:f7add911ebdda130c985426a586d00a11ec0dd1e393e31da9d74aa15971c2df4"}`)
	if access.EntryKind(entry) != access.KindCommitment {
		panic("not a commitment")
	}
	c, err := access.ParseCommitment(entry)
	if err != nil {
		panic(err)
	}
	tree := access.NewDatasetTree()
	// Record 1 reports the file whose SHA-256 is that of "a".
	sha := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	if err := tree.Append(1, sha, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)); err != nil {
		panic(err)
	}
	fmt.Println(c.Verify(tree))

	// The same record an hour later is another dataset.
	other := access.NewDatasetTree()
	other.Append(1, sha, time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC))
	fmt.Println(c.Verify(other) != nil)
	// Output:
	// <nil>
	// true
}
