package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/supervisor"
)

// TestLogsProcessWithSupervisor: a member platform whose logs run in a
// process of their own, cosigned by its supervisor's witness. The logs
// process takes the supervisor's witness policy from its description; the
// platform joins the supervisor with the logs process's keys, lists the
// supervisor's witness, and a read of sealed records is opened by custody
// at the supervisor against an access entry the supervisor's witness
// cosigned.
func TestLogsProcessWithSupervisor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	supData, supAddr := t.TempDir(), freeAddr(t)
	sup := startServing(t, bin, supAddr, "/v1/supervisor", http.StatusOK,
		"supervisor", "--data", supData, "--listen", supAddr, "--name", "supervisor.test", "--interval", "500ms")
	defer stopUpCleanly(t, sup)

	dir := t.TempDir()
	coreData, logsData := filepath.Join(dir, "core"), filepath.Join(dir, "logs")
	coreAddr, logsAddr := freeAddr(t), freeAddr(t)
	cfg := map[string]any{
		"name": "acme.test", "data": coreData, "listen": coreAddr, "supervisor_url": sup.base,
		"logs_url": "http://" + logsAddr, "logs_token": filepath.Join(logsData, "logs.token"),
		"checkpoint_interval": "200ms", "commitment_interval": "1h",
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	// The logs serve their description at once; their checkpoints wait
	// for the supervisor to list the member.
	logs := startServing(t, bin, logsAddr, "/v1/logs", http.StatusOK, "serve", "--config", cfgFile, "--role", "logs", "--listen", logsAddr, "--data", logsData)
	defer logs.kill()
	core := startProcess(t, bin, coreAddr, "serve", "--config", cfgFile, "--role", "all")
	defer stopUpCleanly(t, core)
	members, err := os.ReadFile(filepath.Join(supData, "members.txt"))
	if err != nil {
		t.Fatal(err)
	}
	members = append(members, waitFile(t, filepath.Join(coreData, "member.txt"))...)
	if err := os.WriteFile(filepath.Join(supData, "members.txt"), members, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sup.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServing(t, core, "/.well-known/vitrine.json", http.StatusOK, 60*time.Second)
	waitServing(t, logs, "/readyz", http.StatusOK, 30*time.Second)

	var about supervisor.About
	(&upClient{t: t}).call("GET", sup.base+"/v1/supervisor", "", "", "", &about)
	d := discover(t, core.base)
	if len(d.Witnesses) != 1 || d.Witnesses[0].VKey != about.Witness.VKey || d.WitnessPolicy != about.WitnessPolicy {
		t.Fatalf("witnesses %+v, policy %q; want the supervisor's", d.Witnesses, d.WitnessPolicy)
	}
	// The member's logs, as the supervisor lists them, are the logs
	// process's.
	for _, m := range about.Members {
		if m.Name != "acme.test" {
			continue
		}
		for _, dl := range d.Logs {
			vk, err := os.ReadFile(filepath.Join(logsData, "logs", dl.Name, "log.vkey"))
			if err != nil || !slices.Contains(m.Logs, strings.TrimSpace(string(vk))) {
				t.Errorf("the supervisor lists %v; the logs process holds %s for %s (%v)", m.Logs, vk, dl.Name, err)
			}
		}
	}
	for _, f := range []string{"logs", "witness", "custody", "pseudonym.key"} {
		if _, err := os.Stat(filepath.Join(coreData, f)); err == nil {
			t.Errorf("the platform's process holds %s", f)
		}
	}
	// Every log's checkpoint is cosigned under the supervisor's policy.
	for _, dl := range d.Logs {
		l, err := d.OpenLog(dl.Name, []byte(about.WitnessPolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(t.Context()); err != nil {
			t.Fatalf("log %s: %v", dl.Name, err)
		}
	}
	// A read of sealed records: custody at the supervisor opens them.
	c := newUpClient(t, core.base, coreData)
	c.ingestRecords("DE", 3)
	analyst := c.principal("analyst:ana", "analyst", "CH", "zurich")
	c.call("GET", "/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 2), analyst, "", "THIRD_PARTY_DATA_REQUEST; order 1", nil)
}
