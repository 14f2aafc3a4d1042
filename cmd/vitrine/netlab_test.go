//go:build linux

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is a network of hosts on this machine, for tests of a deployment
// across a network: each host is a network namespace with one address on
// a bridge in the root namespace, where the test itself runs and reaches
// every host.
//
// A link between two hosts is cut by pointing each one's neighbour entry
// for the other at a MAC address that no interface has: their packets to
// each other are then dropped on the bridge without a word, as in a
// partition, and connections hang until someone's timeout. (A blackhole
// route would not do: the kernel answers a local connect through one with
// EINVAL at once, a refusal rather than a partition.)
type netLab struct {
	t       *testing.T
	prefix  string // of every namespace and interface the lab makes
	bridge  string
	gateway string // the bridge's address, in the root namespace
	hosts   map[string]*labHost
}

// labHost is one host of a netLab.
type labHost struct {
	name string
	ns   string // its network namespace
	dev  string // its interface on the bridge
	addr string // its address
}

// deadMAC is the MAC address a cut link's packets are sent to.
const deadMAC = "02:00:00:00:de:ad"

// ipCommand runs ip (iproute2) with args.
func ipCommand(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetLab makes a host for each name, on a /24 of 10.213.0.0/16 that
// no interface of this machine uses, and removes them all when the test
// ends. It skips the test, saying why, where network namespaces cannot
// be made (not root, or no CAP_NET_ADMIN and CAP_SYS_ADMIN).
func newNetLab(t *testing.T, names ...string) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("no ip command (iproute2) to make network namespaces with: %v", err)
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("vt%04x", mrand.IntN(1<<16)), hosts: map[string]*labHost{}}
	l.bridge = l.prefix + "-br"
	var namespaces, links []string
	t.Cleanup(func() {
		for _, ns := range namespaces {
			if err := ipCommand("netns", "del", ns); err != nil {
				t.Errorf("removing the network lab: %v", err)
			}
		}
		// The veths went with their namespaces, unless one was left
		// half made.
		for _, dev := range links {
			if exec.Command("ip", "link", "show", dev).Run() == nil {
				if err := ipCommand("link", "del", dev); err != nil {
					t.Errorf("removing the network lab: %v", err)
				}
			}
		}
	})
	for i, name := range names {
		ns := l.prefix + "-" + name
		if err := ipCommand("netns", "add", ns); err != nil {
			if i == 0 {
				t.Skipf("cannot make network namespaces here (the test needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN): %v", err)
			}
			t.Fatal(err)
		}
		namespaces = append(namespaces, ns)
	}
	subnet := freeSubnet(t)
	l.gateway = subnet + "1"
	links = append(links, l.bridge)
	must := func(args ...string) {
		t.Helper()
		if err := ipCommand(args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := ipCommand("link", "add", l.bridge, "type", "bridge"); err != nil {
		t.Skipf("cannot make a network bridge here: %v", err)
	}
	must("addr", "add", l.gateway+"/24", "dev", l.bridge)
	must("link", "set", l.bridge, "up")
	for i, name := range names {
		h := &labHost{name: name, ns: l.prefix + "-" + name, dev: l.prefix + "-" + name + "1", addr: subnet + strconv.Itoa(i+2)}
		root := l.prefix + "-" + name + "0"
		links = append(links, root)
		must("link", "add", root, "type", "veth", "peer", "name", h.dev)
		must("link", "set", h.dev, "netns", h.ns)
		must("link", "set", root, "master", l.bridge)
		must("link", "set", root, "up")
		must("-n", h.ns, "addr", "add", h.addr+"/24", "dev", h.dev)
		must("-n", h.ns, "link", "set", h.dev, "up")
		must("-n", h.ns, "link", "set", "lo", "up")
		l.hosts[name] = h
	}
	return l
}

// freeSubnet returns the first three octets, with the dot, of a /24 of
// 10.213.0.0/16 that no address or route of this machine is in.
func freeSubnet(t *testing.T) string {
	t.Helper()
	addrs, err := exec.Command("ip", "-4", "-o", "addr").Output()
	if err != nil {
		t.Fatalf("ip addr: %v", err)
	}
	routes, err := exec.Command("ip", "-4", "route").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for range 100 {
		s := fmt.Sprintf("10.213.%d.", 16+mrand.IntN(224))
		if !bytes.Contains(addrs, []byte(s)) && !bytes.Contains(routes, []byte(s)) {
			return s
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return ""
}

// setLink cuts the link between hosts a and b (up false) or restores it.
func (l *netLab) setLink(a, b string, up bool) {
	l.t.Helper()
	ha, hb := l.hosts[a], l.hosts[b]
	for _, p := range [][2]*labHost{{ha, hb}, {hb, ha}} {
		from, to := p[0], p[1]
		args := []string{"-n", from.ns, "neigh", "replace", to.addr, "lladdr", deadMAC, "nud", "permanent", "dev", from.dev}
		if up {
			args = []string{"-n", from.ns, "neigh", "del", to.addr, "dev", from.dev}
		}
		if err := ipCommand(args...); err != nil {
			l.t.Fatal(err)
		}
	}
}

// start runs the command with args in h's namespace, with env added to
// the test's environment, to be reached at port on h's address. The test
// kills it when it ends.
func (h *labHost) start(t *testing.T, bin string, env []string, port int, args ...string) *upProcess {
	t.Helper()
	out := new(lockedBuffer)
	// ip netns exec execs the command in place: its pid is the command's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &upProcess{cmd: cmd, base: "http://" + net.JoinHostPort(h.addr, strconv.Itoa(port)), out: out, args: args}
	t.Cleanup(p.kill)
	return p
}

// listen listens on addr in h's namespace. A socket belongs to the
// namespace it was made in, whichever thread accepts on it later.
func (h *labHost) listen(addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the namespace and never leaves: the
		// goroutine ends locked to it, and the runtime then ends the
		// thread instead of reusing it.
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/run/netns", h.ns))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("entering %s: %w", h.ns, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// relay passes every connection accepted on ln to target until the test
// ends, when it closes them all.
func relay(t *testing.T, ln net.Listener, target string) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false
		}
		conns[c] = true
		return true
	}
	untrack := func(c net.Conn) {
		c.Close()
		mu.Lock()
		defer mu.Unlock()
		delete(conns, c)
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer untrack(c)
				if !track(c) {
					return
				}
				d, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer untrack(d)
				if !track(d) {
					return
				}
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(d, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, d); done <- struct{}{} }()
				<-done
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
}

// tlsFront serves https on port of h's address, in h's namespace, for the
// plain http server at backend, as the TLS terminator in front of a host
// does. It returns the file of its (self-signed) certificate, for the
// clients' SSL_CERT_FILE.
func tlsFront(t *testing.T, h *labHost, port int, backend string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: h.name}, IPAddresses: []net.IP{net.ParseIP(h.addr)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), h.name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := h.listen(net.JoinHostPort(h.addr, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	relay(t, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}), backend)
	return file
}
