// Command hello is a tiny program with one module dependency, built by the
// conveyer's tests.
package main

import (
	"fmt"

	"golang.org/x/mod/semver"
)

func main() {
	fmt.Println("hello", semver.Canonical("v1.2"))
}
