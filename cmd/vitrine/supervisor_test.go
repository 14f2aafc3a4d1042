package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/supervisor"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestSupervisorTwoVendors: `vitrine supervisor` runs in its own process
// and two vendors' `vitrine up`, each in its own, become its members: each
// first start writes the platform's entry and waits; the entries go into
// the members file and the supervisor reads it again on SIGHUP. Then the
// supervisor's witness cosigns both vendors' logs, its custody opens their
// sealed records, it gives their endpoints' pseudonyms (no vendor holds a
// key of the supervisor's), and its monitor alerts on both vendors'
// accesses, each grounded in that vendor's own log; an endpoint of one
// vendor lists the accesses to its data through the supervisor.
func TestSupervisorTwoVendors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	hook := &hookReceiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()

	supData, supAddr := t.TempDir(), freeAddr(t)
	sup := startServing(t, bin, supAddr, "/v1/supervisor", http.StatusOK,
		"supervisor", "--data", supData, "--listen", supAddr, "--name", "supervisor.test", "--webhook", hs.URL+"/alerts", "--interval", "500ms")
	defer stopUpCleanly(t, sup)

	type vendor struct {
		name, data string
		p          *upProcess
	}
	vendors := []*vendor{{name: "acme.test"}, {name: "bolt.test"}}
	for _, v := range vendors {
		addr := freeAddr(t)
		v.data = t.TempDir()
		v.p = startProcess(t, bin, addr, "up", "--data", v.data, "--listen", addr, "--name", v.name, "--supervisor", sup.base)
		defer stopUpCleanly(t, v.p)
	}
	// Each waits to be a member, having written its entry.
	members, err := os.ReadFile(filepath.Join(supData, "members.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vendors {
		entry := waitFile(t, filepath.Join(v.data, "member.txt"))
		members = append(members, entry...)
	}
	time.Sleep(500 * time.Millisecond)
	for _, v := range vendors {
		if resp, err := http.Get(v.p.base + "/.well-known/vitrine.json"); err == nil {
			resp.Body.Close()
			t.Fatalf("%s serves before the supervisor lists it", v.name)
		}
	}
	if err := os.WriteFile(filepath.Join(supData, "members.txt"), members, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sup.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, v := range vendors {
		waitServing(t, v.p, "/.well-known/vitrine.json", http.StatusOK, 60*time.Second)
	}
	secret := strings.TrimSpace(string(waitFile(t, filepath.Join(supData, "monitor", monitor.WebhookSecretFile))))

	var about supervisor.About
	(&upClient{t: t}).call("GET", sup.base+"/v1/supervisor", "", "", "", &about)
	for _, v := range vendors {
		// The platform lists the supervisor's witness and monitor, and
		// its logs need the supervisor's witness.
		d := discover(t, v.p.base)
		if len(d.Witnesses) != 1 || d.Witnesses[0].VKey != about.Witness.VKey || d.WitnessPolicy != about.WitnessPolicy {
			t.Errorf("%s: witnesses %+v, policy %q; want the supervisor's", v.name, d.Witnesses, d.WitnessPolicy)
		}
		if len(d.Monitors) != 1 || d.Monitors[0].URL != sup.base+"/monitor/" {
			t.Errorf("%s: monitors %+v, want the supervisor's", v.name, d.Monitors)
		}
		// Nothing of the supervisor's is in the vendor's data.
		for _, f := range []string{"pseudonym.key", "custody", "custody.token", "witness", "monitor"} {
			if _, err := os.Stat(filepath.Join(v.data, f)); err == nil {
				t.Errorf("%s: the vendor holds %s", v.name, f)
			}
		}
		// A read of sealed records: custody at the supervisor opens them.
		c := newUpClient(t, v.p.base, v.data)
		c.ingestRecords("DE", 3)
		analyst := c.principal("analyst:"+v.name, "analyst", "CH", "zurich")
		c.call("GET", "/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 2), analyst, "", "THIRD_PARTY_DATA_REQUEST; order for "+v.name, nil)
	}
	// The supervisor's monitor alerts on both, each grounded in its own
	// vendor's log.
	got := waitAlerts(t, hook, secret, "third-party-request")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n := 0
		for _, a := range got {
			if a.Rule == "third-party-request" {
				n++
			}
		}
		if n == 2 {
			break
		}
		got, _ = hook.alerts(t, secret)
	}
	byPlatform := map[string]monitor.Alert{}
	for _, a := range got {
		if a.Rule == "third-party-request" {
			byPlatform[a.Platform] = a
		}
	}
	for _, v := range vendors {
		a, ok := byPlatform[v.p.base]
		if !ok {
			t.Fatalf("no third-party-request alert of %s: %+v", v.name, got)
		}
		if !strings.Contains(a.Entry, "order for "+v.name) {
			t.Errorf("%s's alert names another entry: %s", v.name, a.Entry)
		}
		checkProof(t, v.p.base, a)
	}

	// An endpoint of acme asks the supervisor who accessed its data.
	acme := vendors[0]
	agentDir := filepath.Join(t.TempDir(), "agent")
	if out, err := runVitrine(t, bin, "agent", "register", "--platform", acme.p.base, "--token", filepath.Join(acme.data, "operator.token"), "--country", "DE", "--dir", agentDir); err != nil {
		t.Fatalf("agent register: %v\n%s", err, out)
	}
	var id struct{ ID, Token string }
	b, err := os.ReadFile(filepath.Join(agentDir, "identity.json"))
	if err != nil || json.Unmarshal(b, &id) != nil {
		t.Fatalf("identity.json: %v %s", err, b)
	}
	c := newUpClient(t, acme.p.base, acme.data)
	c.call("POST", "/regions/zurich/v1/telemetry", id.Token, `{"batch_id":"mine","records":[`+testRecord(fmt.Sprintf("%064x", 5000), "/home/me/x")+`]}`, "", nil)
	analyst := c.principal("analyst:second", "analyst", "CH", "zurich")
	c.call("GET", "/regions/zurich/v1/records?endpoint="+id.ID, analyst, "", "THIRD_PARTY_DATA_REQUEST; court order 14", nil)
	// The access names the endpoint by the pseudonym under the key only
	// the supervisor holds.
	pkey, err := os.ReadFile(filepath.Join(supData, "members", acme.name, "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	want := endpoint.Pseudonym([]byte(strings.TrimSpace(string(pkey))), id.ID)
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = runVitrine(t, bin, "agent", "accesses", "--dir", agentDir); err == nil && strings.Contains(out, "court order 14") {
			break
		}
	}
	if err != nil || !strings.Contains(out, ": 1 accesses, each proven") || !strings.Contains(out, "analyst:second (analyst, CH)") {
		t.Fatalf("agent accesses: %v\n%s", err, out)
	}
	var page monitor.AlertsAnswer
	c.call("GET", sup.base+"/monitor/v1/alerts?rule=third-party-request", "", "", "", &page)
	found := false
	for _, a := range page.Alerts {
		found = found || strings.Contains(a.Entry, "court order 14") && strings.Contains(a.Entry, want)
	}
	if !found {
		t.Errorf("no alert's entry names the endpoint by its pseudonym %s under the supervisor's key", want)
	}

	// The supervisor acknowledges an alert; its acknowledgement log is
	// cosigned by its own witness.
	out, err = runVitrine(t, bin, "monitor", "ack", "--monitor", sup.base+"/monitor", "--token", filepath.Join(supData, supervisor.TokenFile),
		"--alert", fmt.Sprint(page.Alerts[0].ID), "--note", "Reviewed with the vendor.")
	if err != nil {
		t.Fatalf("monitor ack: %v\n%s", err, out)
	}
	var mon monitor.About
	c.call("GET", sup.base+"/monitor/v1/monitor", "", "", "", &mon)
	if mon.Acknowledgements.WitnessPolicy != about.WitnessPolicy {
		t.Errorf("the acknowledgement log's policy %q, want the supervisor's witness", mon.Acknowledgements.WitnessPolicy)
	}
	raw, err := get(context.Background(), sup.base+"/monitor/"+mon.Acknowledgements.Path+"checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy([]byte(about.WitnessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(mon.Acknowledgements.VKey)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := policy.VerifyCheckpoint(raw, v); err != nil || cp.Size != 1 {
		t.Errorf("the acknowledgement log's checkpoint under the supervisor's witness: %v, %+v", err, cp)
	}

	// A members file that does not parse changes nothing: both members
	// stay served.
	bad := append(append([]byte{}, members...), "member evil.example\ndiscovery "+vendors[0].p.base+"\n"...)
	if err := os.WriteFile(filepath.Join(supData, "members.txt"), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sup.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(sup.out.String(), "not taken, nothing changed"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor did not refuse the bad members file:\n%s", sup.out.String())
		}
	}
	var after supervisor.About
	c.call("GET", sup.base+"/v1/supervisor", "", "", "", &after)
	if len(after.Members) != 2 || !strings.Contains(sup.out.String(), "is already member acme.test's") {
		t.Errorf("after a bad members file: %d members\n%s", len(after.Members), sup.out.String())
	}
}
