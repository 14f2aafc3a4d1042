package client_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/tlog"
)

// base is the URL of a running platform (`vitrine up`) for the examples.
var base string

// exampleMain runs a platform for the examples; they read it as an
// outsider would, by URL alone. Everything it writes, the TUF root's
// offline keys included, is under one directory that stop removes.
func exampleMain() (stop func()) {
	dir, err := os.MkdirTemp("", "vitrine-client-example-")
	if err != nil {
		panic(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := platform.Start(context.Background(), platform.Config{Data: filepath.Join(dir, "data"), TUFOfflineDir: filepath.Join(dir, "offline"), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		panic(err)
	}
	base = p.URL()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
		_ = os.RemoveAll(dir)
	}
}

// Read a platform's discovery document: where its logs are and which keys
// and witness policy to expect. It proves nothing by itself; a client pins
// what it reads there and checks everything else against it.
func ExampleFetchDiscovery() {
	defer exampleMain()()
	d, err := client.FetchDiscovery(context.Background(), nil, base)
	if err != nil {
		panic(err)
	}
	for _, l := range d.Logs {
		fmt.Println(l.Name, l.Origin)
	}
	// Output:
	// release vitrine.local/logs/release
	// policy vitrine.local/logs/policy
	// access-zurich vitrine.local/logs/access-zurich
	// access-moscow vitrine.local/logs/access-moscow
	// review vitrine.local/logs/review
}

// Verify a log's checkpoint: the log's signature and the witness quorum.
func ExampleLog_Checkpoint() {
	defer exampleMain()()
	ctx := context.Background()
	d, err := client.FetchDiscovery(ctx, nil, base)
	if err != nil {
		panic(err)
	}
	log, err := d.OpenLog("policy", nil, nil)
	if err != nil {
		panic(err)
	}
	cp, err := log.Checkpoint(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %d entries, cosigned by %v\n", cp.Origin, cp.Size, cp.Cosigners)
	// Output:
	// vitrine.local/logs/policy: 1 entries, cosigned by [supervisor]
}

// Follow a log: every entry, in order, each handed out only once it is
// proven to be in a witnessed checkpoint. Save the state to go on from it
// later, with the log's new checkpoint proven consistent with this one.
func ExampleFollower() {
	defer exampleMain()()
	ctx := context.Background()
	d, err := client.FetchDiscovery(ctx, nil, base)
	if err != nil {
		panic(err)
	}
	log, err := d.OpenLog("policy", nil, nil)
	if err != nil {
		panic(err)
	}
	f, err := client.NewFollower(log, nil) // or from client.LoadState(path)
	if err != nil {
		panic(err)
	}
	_, err = f.Update(ctx, func(index uint64, entry []byte) error {
		first, _, _ := bytes.Cut(entry, []byte("\n"))
		fmt.Printf("entry %d: %s\n", index, first)
		return nil
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("followed to", f.State().Size)
	// Output:
	// entry 0: vitrine residency policy v1
	// followed to 1
}

// Prove an entry: its bytes and a C2SP tlog-proof, built from the log's
// tiles alone and checked before either is returned. The proof verifies
// offline, for anyone who trusts the log's key and witness policy.
func ExampleLog_Entry() {
	defer exampleMain()()
	ctx := context.Background()
	d, err := client.FetchDiscovery(ctx, nil, base)
	if err != nil {
		panic(err)
	}
	log, err := d.OpenLog("policy", nil, nil)
	if err != nil {
		panic(err)
	}
	cp, err := log.Checkpoint(ctx)
	if err != nil {
		panic(err)
	}
	entry, proof, err := log.Entry(ctx, cp, 0)
	if err != nil {
		panic(err)
	}
	// Later, elsewhere, from the proof's bytes alone:
	p, err := tlog.ParseProof(proof.Marshal())
	if err != nil {
		panic(err)
	}
	if _, err := p.Verify(tlog.LeafHash(entry), log.Verifier, log.Policy); err != nil {
		panic(err)
	}
	fmt.Printf("entry %d of %s is proven\n", p.Index, cp.Origin)
	// Output:
	// entry 0 of vitrine.local/logs/policy is proven
}
