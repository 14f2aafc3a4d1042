package access_test

import (
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/access"
)

func ExampleRecord_Marshal() {
	j, err := access.ParseJustification("CUSTOMER_INITIATED_SUPPORT; case 1234")
	if err != nil {
		panic(err)
	}
	r := access.Record{
		Time:          time.Date(2026, 11, 22, 10, 0, 0, 123_456_789, time.UTC),
		Region:        "zurich",
		Principal:     access.Principal{ID: "analyst:jdoe", Role: "analyst", Location: "CH"},
		Action:        "read",
		Resource:      access.Resource{Dataset: "telemetry", Query: "sha256=e3b0c442", Count: 2, Digest: access.Digest([]int64{42, 7})},
		Justification: j,
		Subjects:      []string{"hmac-sha256:5f1d0e0c2ac8b0a1a5fd2e6dcf25d76a1be3aa1fbdd2a2ef6a1c3be2ee9c6b71"},
		Request:       "req-0001",
		Outcome:       "granted",
	}
	b, err := r.Marshal()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
	back, err := access.Parse(b)
	fmt.Println(back.Time, err)
	// Output:
	// {"v":1,"kind":"access","time":"2026-11-22T10:00:00.123Z","region":"zurich","principal":{"id":"analyst:jdoe","role":"analyst","location":"CH"},"action":"read","resource":{"dataset":"telemetry","query":"sha256=e3b0c442","count":2,"digest":"sha256:984f3ff2dd723404853d636a410bdff3bf2fa57593b45c816b1d595b6f33a3c9"},"justification":{"code":"CUSTOMER_INITIATED_SUPPORT","detail":"case 1234"},"subjects":["hmac-sha256:5f1d0e0c2ac8b0a1a5fd2e6dcf25d76a1be3aa1fbdd2a2ef6a1c3be2ee9c6b71"],"request":"req-0001","outcome":"granted"}
	// 2026-11-22 10:00:00.123 +0000 UTC <nil>
}

func ExampleDigest() {
	fmt.Println(access.Digest(nil))
	fmt.Println(access.Digest([]int64{42, 7, 42}) == access.Digest([]int64{7, 42}))
	// Output:
	// sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
	// true
}
