package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
)

// TestLinkHealth: three lab machines with UDP between m2 and m3 dropped
// on purpose (an nftables table of the test's own in m3's namespace,
// before any handshake). `network show` names that link, down, with its
// cause in words, and the other two ok; `doctor` exits 1 naming it. The
// control: with the table deleted the link comes up and doctor passes.
func TestLinkHealth(t *testing.T) {
	needE2E(t)
	testbed.NeedPrograms(t, "/usr/sbin/nft")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, name, underlay := newE2E(t, ctx, "lnk")
	addr := func(host int) string { return sim.HostAddr(underlay, host).Addr().String() }
	e.labUp(name, "--underlay", underlay.String(), "--machines", "3", "--add=false", "--demo=false", "--open=false")
	inv := []string{"--inventory", e.lab.Inventory}

	// drop makes m3 drop, from and to m2, what match says (nft), in a
	// table of the test's own; undrop deletes it.
	drop := func(match string) {
		t.Helper()
		from, to := "ip saddr "+addr(2), "ip daddr "+addr(2)
		rules := fmt.Sprintf("table inet linktest {\n"+
			"\tchain in { type filter hook input priority -10; %s %s drop; }\n"+
			"\tchain out { type filter hook output priority -10; %s %s drop; }\n}\n", from, match, to, match)
		e.onMachine("m3", "/usr/sbin/nft", "-f", writeFile(t, rules))
	}
	undrop := func() { e.onMachine("m3", "/usr/sbin/nft", "delete", "table", "inet", "linktest") }

	// Before any machine is added (so before any handshake): m3 drops
	// every UDP packet from and to m2's underlay address.
	drop("meta l4proto udp")
	for i, m := range []string{"m1", "m2", "m3"} {
		e.must(append(inv, "machine", "add", m, "--address", addr(i+1), "--port", "22", "--user", "root",
			"--identity", e.lab.Key, "--accel", "tcg")...)
	}
	e.must(append(inv, "network", "create", "net1", "--subnet", "10.71.0.0/24")...)

	show := func() map[string]cloud.LinkStatus {
		var links []cloud.LinkStatus
		out := e.must(append(inv, "network", "show", "net1", "--json")...)
		if err := json.Unmarshal([]byte(out), &links); err != nil {
			t.Fatalf("network show --json: %v: %s", err, out)
		}
		by := map[string]cloud.LinkStatus{}
		for _, l := range links {
			by[l.A+"-"+l.B] = l
		}
		return by
	}
	// wait polls show until ok holds, for up to d.
	wait := func(what string, d time.Duration, ok func(map[string]cloud.LinkStatus) bool) map[string]cloud.LinkStatus {
		t.Helper()
		var by map[string]cloud.LinkStatus
		for deadline := time.Now().Add(d); ; time.Sleep(2 * time.Second) {
			if by = show(); ok(by) {
				return by
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s after %v: %+v", what, d, by)
			}
		}
	}
	by := wait("handshakes on m1's links", 90*time.Second, func(by map[string]cloud.LinkStatus) bool {
		return by["m1-m2"].State == cloud.LinkOK && by["m1-m3"].State == cloud.LinkOK
	})
	if len(by) != 3 {
		t.Fatalf("net1 has links %+v, want three pairs", by)
	}
	bad := by["m2-m3"]
	if bad.State != cloud.LinkDown || bad.HandshakeAge >= 0 || bad.Via != "" ||
		!strings.Contains(bad.Why, "no handshake ever: UDP between them is blocked, or an endpoint is wrong") ||
		!strings.Contains(bad.Why, "m2 sends to m3 at "+addr(3)) {
		t.Errorf("m2–m3 with UDP dropped: %+v; want down, never shaken hands, UDP blocked or a wrong endpoint named", bad)
	}
	for _, l := range []string{"m1-m2", "m1-m3"} {
		if by[l].BytesAB == 0 || by[l].BytesBA == 0 || by[l].Why != "" {
			t.Errorf("%s is ok but shows %+v; want bytes both ways and no why", l, by[l])
		}
	}
	text := e.must(append(inv, "network", "show", "net1")...)
	if !strings.Contains(text, "m2 – m3 down: no handshake ever: UDP between them is blocked") {
		t.Errorf("network show names no broken m2–m3:\n%s", text)
	}
	code, out, errs := e.exitCode(append(inv, "doctor")...)
	if code != 1 || !strings.Contains(errs, "network net1 link m2–m3") || !strings.Contains(out, "m2 – m3 down: no handshake ever: UDP") {
		t.Errorf("doctor with m2–m3 down: exit %d\n%s%s; want exit 1 naming the link and its cause", code, out, errs)
	}
	if strings.Contains(out, "m1 – m2") || strings.Contains(out, "m1 – m3") {
		t.Errorf("doctor blames a link that works:\n%s", out)
	}

	// The drop gone, the link comes up: a handshake, and echoes both
	// small and full-size with a round trip.
	undrop()
	up := func(what string) {
		t.Helper()
		by := wait(what, 3*time.Minute, func(by map[string]cloud.LinkStatus) bool {
			l := by["m2-m3"]
			return l.State == cloud.LinkOK && l.RTTMillis >= 0 && l.FullSizeOK
		})
		if l := by["m2-m3"]; l.FullSize < 1280 || l.BytesAB == 0 {
			t.Errorf("m2–m3 up: %+v; want a full-size echo of at least 1280 bytes across and bytes", l)
		}
	}
	up("m2–m3 up with echoes once UDP passes")

	// An MTU black hole: m3 drops the big WireGuard packets from and to
	// m2 (UDP longer than 1300 bytes), small ones and handshakes pass.
	drop("udp length > 1300")
	by = wait("m2–m3 down for its full-size frames", time.Minute, func(by map[string]cloud.LinkStatus) bool {
		return by["m2-m3"].State == cloud.LinkDown
	})
	if l := by["m2-m3"]; !strings.Contains(l.Why, "full-size ones") || !strings.Contains(l.Why, "MTU black hole") || l.RTTMillis < 0 {
		t.Errorf("m2–m3 with big packets dropped: %+v; want an MTU black hole named, small echoes answered", l)
	}
	if by["m1-m3"].State != cloud.LinkOK {
		t.Errorf("m1–m3 with only m2's big packets dropped: %+v", by["m1-m3"])
	}
	undrop()
	up("m2–m3 up once big packets pass")

	// Handshake but no frames: m3 drops what comes out of the tunnel
	// from m2 (its mesh address on the WireGuard device), not the tunnel.
	var machines []struct {
		Name   string `json:"name"`
		MeshIP string `json:"mesh_ip"`
	}
	if err := json.Unmarshal([]byte(e.must(append(inv, "machine", "list", "--json")...)), &machines); err != nil {
		t.Fatal(err)
	}
	mesh2 := ""
	for _, m := range machines {
		if m.Name == "m2" {
			mesh2 = m.MeshIP
		}
	}
	e.onMachine("m3", "/usr/sbin/nft", "-f", writeFile(t, fmt.Sprintf("table inet linktest {\n"+
		"\tchain in { type filter hook input priority -10; iifname \"btwg0\" ip saddr %s drop; }\n}\n", mesh2)))
	by = wait("m2–m3 down for its frames", time.Minute, func(by map[string]cloud.LinkStatus) bool {
		return by["m2-m3"].State == cloud.LinkDown
	})
	if l := by["m2-m3"]; !strings.Contains(l.Why, "handshake but no frames") || !strings.Contains(l.Why, "firewall") || l.HandshakeAge < 0 {
		t.Errorf("m2–m3 with the tunnel's traffic dropped: %+v; want handshake but no frames, a firewall", l)
	}
	code, out, errs = e.exitCode(append(inv, "doctor")...)
	if code != 1 || !strings.Contains(out, "m2 – m3 down: handshake but no frames") {
		t.Errorf("doctor with m2–m3 carrying no frames: exit %d\n%s%s", code, out, errs)
	}

	// The control: every drop gone, every link up, and doctor passes.
	undrop()
	up("m2–m3 up once its frames pass")
	if code, out, errs := e.exitCode(append(inv, "doctor")...); code != 0 || !strings.Contains(out, "all checks passed") {
		t.Errorf("doctor with every link up: exit %d\n%s%s", code, out, errs)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// exitCode runs butter with args and returns its exit code, stdout and
// stderr.
func (e *e2e) exitCode(args ...string) (int, string, string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, e.butter, args...)
	cmd.Env = e.env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	}
	e.t.Fatalf("butter %s: %v", strings.Join(args, " "), err)
	return 0, "", ""
}
