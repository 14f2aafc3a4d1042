// Package conveyer runs build recipes hermetically: it exports the exact
// source of a release, archives it byte for byte reproducibly, and builds
// the recipe's Go programs so that two runs of the same recipe give
// bit-identical artifacts.
//
// # Recipes
//
// A [Recipe] is read from JSON by [ParseRecipe]; unknown keys and trailing
// data are errors. It names the source (a git repository at a commit, or a
// directory) and its targets: Go programs and rule databases. Rule
// databases are compiled by package ruledb; the conveyer only carries the
// target and points it at the exported source.
//
// # Source
//
// [Export] writes the source into a fresh directory and [Archive] turns it
// into a deterministic tar.gz whose SHA-256 identifies the source in the
// provenance.
//
// # Hermetic Go builds
//
// [Builder.Build] runs in two phases. The first phase fills a module cache
// with "go mod download" through the machine's GOPROXY, with
// GOFLAGS=-mod=readonly so that go.sum is never changed, only followed.
// (With [Builder.Toolchain] naming another Go release, the first phase
// also fetches that toolchain, and the second runs it.)
// The second phase is the build proper: GOPROXY=off, GOSUMDB=off,
// GOFLAGS=-mod=readonly, GOTOOLCHAIN=local, CGO_ENABLED=0, a fresh GOCACHE,
// GOPATH, HOME and TMPDIR, and an environment that holds nothing but PATH,
// HOME, TMPDIR and the GO* variables the builder sets. It starts with
// "go mod verify", so every module in the cache is checked against go.sum
// before any of it is compiled, and then runs
// "go build -trimpath -buildvcs=false" once per platform. Splitting the
// phases keeps the network out of the build: whatever the first phase
// fetched, the second phase can only use what go.sum pins, and it cannot
// fetch anything else.
package conveyer
