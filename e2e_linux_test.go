package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/butter-cloud/butter/cli"
	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
)

// The operator side end to end: the real butter binary, driven through
// its CLI, over real SSH to a lab's machines (one behind NAT), each with
// its own sshd, libvirtd and helper.

func needE2E(t *testing.T) {
	t.Helper()
	testbed.NeedLab(t)
	testbed.NeedPrograms(t, "/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/usr/sbin/iptables", "go")
}

type e2e struct {
	t      *testing.T
	ctx    context.Context
	butter string
	home   string // its HOME
	env    []string
	lab    lab.CloudLab
	// transcript is the protocol transcript's file (BUTTER_PROTOCOL_LOG).
	transcript string
	// logs is everything butter printed, stdout and stderr, for the
	// secrets check.
	logs bytes.Buffer
}

// readLab reads lab name's record, which `lab up` leaves in the
// operator's config folder.
func (e *e2e) readLab(name string) {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, ".config", "butter", "lab-"+name, "lab.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &e.lab); err != nil {
		e.t.Fatal(err)
	}
}

// run runs butter with args and returns stdout; stderr goes into the
// error.
func (e *e2e) run(stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(e.ctx, e.butter, args...)
	cmd.Env = e.env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	fmt.Fprintf(&e.logs, "$ butter %s\n%s%s", strings.Join(args, " "), out.Bytes(), errb.Bytes())
	if err != nil {
		return out.String(), fmt.Errorf("butter %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (e *e2e) must(args ...string) string {
	e.t.Helper()
	out, err := e.run(nil, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// onMachine runs a command inside lab machine m's namespaces.
func (e *e2e) onMachine(m string, args ...string) string {
	e.t.Helper()
	out, err := e.runner(m)(e.ctx, args[0], args[1:]...)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(out)
}

// runner runs commands inside lab machine m's namespaces.
func (e *e2e) runner(m string) testbed.Runner {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		ns := e.lab.Name + "-" + m
		full := append([]string{"--net=/run/netns/" + ns, "--mount=" + filepath.Join(sim.StateRoot, e.lab.Name, "ns", m), "--", name}, args...)
		out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("on %s: %s %s: %v: %s", m, name, strings.Join(args, " "), err, out)
		}
		return out, nil
	}
}

// chainFacts is what machine m's chains must be built from: its facts as
// its helper reports them (`butter helper facts` on the machine), with the
// kernel's gretap and the uplink's MTU checked again on the machine without
// the helper.
func (e *e2e) chainFacts(m string) testbed.ChainFacts {
	e.t.Helper()
	f := e.facts(m)
	gretap, err := testbed.KernelGretap(e.ctx, e.runner(m), "/usr/sbin/ip")
	if err != nil {
		e.t.Fatal(err)
	}
	if gretap != f.Gretap {
		e.t.Errorf("%s: facts say gretap=%v, the kernel says %v", m, f.Gretap, gretap)
	}
	mtu := strings.TrimSpace(e.onMachine(m, "cat", "/sys/class/net/"+f.Uplink+"/mtu"))
	if mtu != fmt.Sprint(f.UplinkMTU) {
		e.t.Errorf("%s: facts say uplink %q has MTU %d, the kernel says %s", m, f.Uplink, f.UplinkMTU, mtu)
	}
	cf, err := testbed.FactsForChain(f, 0) // the inventory sets no mesh MTU
	if err != nil {
		e.t.Fatalf("%s: %v", m, err)
	}
	return cf
}

// checkKernelChain checks, on machine m, network id's bridge and its
// tunnel ports as the kernel shows them (no VMs on it yet).
func (e *e2e) checkKernelChain(m string, id int, kind string, mtu, ports int) {
	e.t.Helper()
	br := plumbing.BridgeName(id)
	links, n, err := testbed.BridgePorts(e.ctx, e.runner(m), "/usr/sbin/ip", br, kind, mtu)
	if err != nil {
		e.t.Fatal(err)
	}
	if n != ports || len(links) != ports {
		e.t.Errorf("%s: %s has ports %+v; want %d %s at MTU %d", m, br, links, ports, kind, mtu)
	}
}

// newE2E builds butter into a home of its own for t, and claims a lab
// name and an underlay of its own (the host link routes the underlay in
// the root namespace); the lab is taken down when t ends, and its
// namespaces must be gone. butter's config, cache and state are under
// that home, with no agent, and env's variables set.
func newE2E(t *testing.T, ctx context.Context, prefix string, env ...string) (*e2e, string, netip.Prefix) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "butter")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build butter: %v: %s", err, out)
	}
	home := filepath.Join(dir, "home")
	e := &e2e{t: t, ctx: ctx, butter: bin, home: home,
		env: append(append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
			"XDG_CACHE_HOME="+filepath.Join(home, ".cache"), "XDG_STATE_HOME="+filepath.Join(home, ".local", "state"),
			"SSH_AUTH_SOCK=", cli.ProtocolLogEnv+"="+filepath.Join(dir, "protocol.log")), env...),
		transcript: filepath.Join(dir, "protocol.log")}
	name := testbed.ClaimLab(t, prefix)
	t.Cleanup(func() {
		var cancel context.CancelFunc
		e.ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := e.run(nil, "lab", "down", "--name", name); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if _, err := os.Stat("/run/netns/" + name + "-m1"); err == nil {
			t.Errorf("lab down left the machines' namespaces")
		}
	})
	return e, name, testbed.Underlay(name)
}

// labUp runs `butter lab up --name name` with args and reads the lab.
func (e *e2e) labUp(name string, args ...string) {
	e.t.Helper()
	e.must(append([]string{"lab", "up", "--name", name}, args...)...)
	e.readLab(name)
}

func TestEndToEnd(t *testing.T) {
	needE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, name, underlay := newE2E(t, ctx, "e2e")
	addr := func(host int) string { return sim.HostAddr(underlay, host).Addr().String() }
	start := time.Now()
	e.labUp(name, "--underlay", underlay.String(), "--machines", "2", "--nat", "1", "--add=false", "--open=false")
	t.Logf("lab up in %s", time.Since(start))
	inv := []string{"--inventory", e.lab.Inventory}
	known, err := os.ReadFile(e.lab.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}

	// m2's key is unknown to butter: without a terminal, nothing prompts.
	var m2fp string
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(string(known)), "\n") {
		if strings.HasPrefix(line, addr(2)+" ") {
			_, _, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
			if err != nil {
				t.Fatal(err)
			}
			m2fp = ssh.FingerprintSHA256(key)
			continue
		}
		kept = append(kept, line)
	}
	if m2fp == "" {
		t.Fatalf("no known_hosts line for m2 in %s", known)
	}
	os.WriteFile(e.lab.KnownHosts, []byte(strings.Join(kept, "\n")+"\n"), 0o600)

	add := func(m, addr, port string, extra ...string) error {
		args := append(append([]string{}, inv...), "machine", "add", m, "--address", addr, "--port", port,
			"--user", "root", "--identity", e.lab.Key, "--accel", "tcg")
		_, err := e.run(nil, append(args, extra...)...)
		return err
	}
	start = time.Now()
	if err := add("m1", addr(1), "22"); err != nil {
		t.Fatal(err)
	}
	t.Logf("machine add (fresh, helper upload included) in %s", time.Since(start))
	err = add("m2", addr(2), "22")
	if err == nil || !strings.Contains(err.Error(), "--accept-new-host-key") || !strings.Contains(err.Error(), m2fp) {
		t.Fatalf("an unknown host key without a terminal: %v, want a refusal showing %s and the flags", err, m2fp)
	}
	if err := add("m2", addr(2), "22", "--host-key", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); err == nil {
		t.Fatal("a wrong pinned host key was accepted")
	}
	if err := add("m2", addr(2), "22", "--host-key", m2fp); err != nil {
		t.Fatal(err)
	}
	if err := add("m3", addr(254), "2203"); err != nil { // behind the NAT router's port forward
		t.Fatal(err)
	}
	var machines []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		MeshIP string `json:"mesh_ip"`
		NAT    bool   `json:"nat"`
	}
	if err := json.Unmarshal([]byte(e.must(append(inv, "machine", "list", "--json")...)), &machines); err != nil {
		t.Fatal(err)
	}
	if len(machines) != 3 || !machines[2].NAT || machines[0].NAT {
		t.Fatalf("machines = %+v, want three with m3 behind NAT", machines)
	}
	// What the networks must be, from m1's facts (all three machines
	// share this kernel, and their uplinks' MTU must agree).
	facts := map[string]testbed.ChainFacts{}
	for _, m := range machines {
		facts[m.Name] = e.chainFacts(m.Name)
	}
	for _, m := range machines {
		if facts[m.Name] != facts["m1"] {
			t.Fatalf("the machines' chain facts differ: %+v", facts)
		}
	}
	cf := facts["m1"]
	kind1, mtu1, ports1 := testbed.ExpectedChain(cf, helperapi.TunnelAuto, 2)  // net1: auto, on all three
	kind2, mtu2, ports2 := testbed.ExpectedChain(cf, helperapi.TunnelVXLAN, 1) // net2: vxlan, on m1 and m3
	t.Logf("facts: gretap=%v, WireGuard MTU %d: net1 (auto) must be %s at %d, net2 (vxlan) %s at %d", cf.Gretap, cf.WireGuardMTU, kind1, mtu1, kind2, mtu2)

	start = time.Now()
	e.must(append(inv, "network", "create", "net1", "--subnet", "10.61.0.0/24")...)
	t.Logf("network create on three machines in %s", time.Since(start))
	e.must(append(inv, "network", "create", "net2", "--subnet", "10.62.0.0/24", "--machines", "m1,m3", "--tunnel", "vxlan")...)
	// gretap forced: where the kernel has none, every machine refuses it
	// and the network is not made; where it has, it is made.
	out, err := e.run(nil, append(inv, "network", "create", "net3", "--subnet", "10.63.0.0/24", "--machines", "m1,m2", "--tunnel", "gretap")...)
	switch {
	case !cf.Gretap && err == nil:
		t.Errorf("network create --tunnel gretap succeeded on a kernel without gretap: %s", out)
	case !cf.Gretap && !strings.Contains(err.Error(), "gretap"):
		t.Errorf("network create --tunnel gretap without gretap fails without naming gretap: %v", err)
	case !cf.Gretap:
		t.Logf("network create --tunnel gretap refused as it should: %v", err)
	case err != nil:
		t.Errorf("network create --tunnel gretap on a kernel with gretap: %v", err)
	default:
		e.must(append(inv, "network", "remove", "net3")...)
	}
	var nets []cloud.NetworkStatus
	if err := json.Unmarshal([]byte(e.must(append(inv, "network", "list", "--json")...)), &nets); err != nil {
		t.Fatal(err)
	}
	if len(nets) != 2 || len(nets[1].Machines) != 2 {
		t.Fatalf("networks = %+v, want net1 and net2 (on two machines)", nets)
	}
	if nets[0].Tunnel != kind1 || nets[0].MTU != mtu1 {
		t.Errorf("net1 (auto) is %s at MTU %d, want %s at %d", nets[0].Tunnel, nets[0].MTU, kind1, mtu1)
	}
	if nets[1].Tunnel != kind2 || nets[1].MTU != mtu2 {
		t.Errorf("net2 (--tunnel vxlan) is %s at MTU %d, want %s at %d", nets[1].Tunnel, nets[1].MTU, kind2, mtu2)
	}
	e.checkKernelChain("m1", nets[0].ID, kind1, mtu1, ports1)
	e.checkKernelChain("m1", nets[1].ID, kind2, mtu2, ports2)
	// A machine whose apply failed part-way is rolled back too: no
	// half-built bridge of the refused network stays behind.
	for m, want := range map[string]int{"m1": 2, "m2": 1} {
		if links := e.onMachine(m, "/usr/sbin/ip", "-o", "link", "show", "type", "bridge"); strings.Count(links, ": btbr") != want {
			t.Errorf("%s keeps other than the %d bridges of its networks after the refused gretap network:\n%s", m, want, links)
		}
	}

	// Every machine has its WireGuard key now (net1 spans all three):
	// read them from the machines' state for the secrets check at the end.
	keys := map[string]wgtypes.Key{}
	for _, m := range machines {
		raw := e.onMachine(m.Name, "cat", filepath.Join(helperapi.DefaultStateDir, "wireguard.key"))
		k, err := wgtypes.ParseKey(strings.TrimSpace(raw))
		if err != nil {
			t.Fatalf("%s's WireGuard key file: %v", m.Name, err)
		}
		keys[m.Name] = k
		// The control: the grep finds a key where it is.
		if found := findKeys(keys, map[string][]byte{"the key file": []byte(raw)}); len(found) == 0 {
			t.Fatalf("control: the grep does not find %s's key in its own key file", m.Name)
		}
	}

	vm := func(name, machine, network, ip string) {
		t.Helper()
		start := time.Now()
		e.must(append(inv, "vm", "create", name, "--machine", machine, "--network", network, "--ip", ip,
			"--image", e.lab.TinyImage, "--memory", "128M")...)
		t.Logf("vm create %s in %s", name, time.Since(start))
	}
	vm("a1", "m1", "net1", "10.61.0.11")
	vm("a3", "m3", "net1", "10.61.0.13") // behind NAT, another machine
	vm("b1", "m1", "net2", "10.62.0.11")
	vm("b3", "m3", "net2", "10.62.0.13") // b1's positive control: a VM of its own network
	var vms []cloud.VMStatus
	if err := json.Unmarshal([]byte(e.must(append(inv, "vm", "list", "--json")...)), &vms); err != nil {
		t.Fatal(err)
	}
	if len(vms) != 4 || vms[0].Name != "a1" || vms[0].IP != "10.61.0.11" || vms[0].State != "running" || vms[0].MemoryMiB != 128 {
		t.Fatalf("vms = %+v", vms)
	}

	// Through the console of b1, first: the target of a1's isolation
	// check is up and answers on its own network (it reaches b3 across
	// machines), so a1 failing to reach it below is isolation, not a VM
	// that never booted. b1 does not reach a1 either.
	scriptB := strings.Join([]string{
		"", "sleep 5",
		"ping -c 3 -W 2 10.62.0.13 && echo REACH-B-$((40+2))",
		"ip route add 10.61.0.0/24 dev eth0",
		"ping -c 3 -W 2 10.61.0.11 >/dev/null || echo ISOLATED-B-$((40+2))",
		"",
	}, "\n")
	out, err = e.run(strings.NewReader(scriptB), append(inv, "vm", "console", "b1", "--idle", "8s")...)
	if err != nil {
		t.Fatalf("console: %v\n%s", err, out)
	}
	if !strings.Contains(out, "REACH-B-42") {
		t.Fatalf("control: b1 does not reach b3 on its own network, so isolation from a1 would say nothing; the console showed:\n%s", out)
	}
	if !strings.Contains(out, "ISOLATED-B-42") {
		t.Errorf("b1 (net2) reaches a1 (net1); the console showed:\n%s", out)
	}

	// Through the console of a1: reach a3 across machines (and the NAT),
	// a full-size frame without fragments, and not b1 on the other
	// network (which shares no addresses with net1, so the guest has no
	// route there either: give it one through its own NIC). Both pings,
	// to a3 (the control: a1 reaches a VM of its own network) and to b1
	// (which answered b3 above), get three echoes of 2 s.
	script := strings.Join([]string{
		"", "sleep 5",
		"ping -c 3 -W 2 10.61.0.13 && echo REACH-$((40+2))",
		fmt.Sprintf("ping -c 2 -W 2 -s %d 10.61.0.13 && echo BIG-$((40+2))", mtu1-28),
		fragCreates("FRAGS-"),
		// One byte over the MTU no longer fits a frame: busybox's ping
		// cannot set DF, so the guest must fragment it.
		fmt.Sprintf("ping -c 1 -W 2 -s %d 10.61.0.13", mtu1-27),
		fragCreates("OVER-"),
		"ip route add 10.62.0.0/24 dev eth0",
		"ping -c 3 -W 2 10.62.0.11 >/dev/null || echo ISOLATED-$((40+2))",
		"",
	}, "\n")
	out, err = e.run(strings.NewReader(script), append(inv, "vm", "console", "a1", "--idle", "8s")...)
	if err != nil {
		t.Fatalf("console: %v\n%s", err, out)
	}
	over := regexp.MustCompile(`OVER-(\d+)`).FindStringSubmatch(out)
	if over == nil || over[1] == "0" {
		t.Errorf("one byte over the MTU should have been fragmented by the guest (FragCreates %v); the console showed:\n%s", over, out)
	}
	for _, want := range []string{"REACH-42", "BIG-42", "FRAGS-0", "ISOLATED-42"} {
		if !strings.Contains(out, want) {
			t.Errorf("console of a1 lacks %s; it showed:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(sim.TinyGuestReady + ` host=a1 addr=10\.61\.0\.11/24 mtu=` + fmt.Sprint(mtu1) + `\b`).MatchString(out) {
		t.Errorf("the console did not replay a1's boot line; it showed:\n%s", out)
	}

	// No WireGuard private key in what butter printed, the protocol
	// transcript, the inventory, or the helpers' logs on the machines.
	texts := map[string][]byte{"butter's output": e.logs.Bytes()}
	transcript, err := os.ReadFile(e.transcript)
	if err != nil || !bytes.Contains(transcript, []byte(`"method":"`+helperapi.MethodFacts+`"`)) {
		t.Fatalf("the protocol transcript: %v; it holds no facts call:\n%.2000s", err, transcript)
	}
	texts["the protocol transcript"] = transcript
	for _, f := range []string{e.lab.Inventory, filepath.Join(filepath.Dir(e.lab.Inventory), "lab.json")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = b
	}
	for _, m := range machines {
		texts[m.Name+"'s helper log"] = []byte(e.onMachine(m.Name, "sh", "-c", "cat "+filepath.Join(helperapi.DefaultStateDir, "helper.log")+" 2>/dev/null; journalctl -q --no-pager -u butter-helper 2>/dev/null; true"))
	}
	if found := findKeys(keys, texts); len(found) > 0 {
		t.Errorf("WireGuard private keys leaked: %s", strings.Join(found, "; "))
	}
	t.Logf("secrets check: %d keys (base64 and hex) not found in %d texts (%d bytes of butter output, %d of transcript)", len(keys), len(texts), e.logs.Len(), len(transcript))

	// Remove everything; the machines keep nothing of ours but the helper.
	for _, v := range []string{"a1", "a3", "b1", "b3"} {
		e.must(append(inv, "vm", "remove", v)...)
	}
	e.must(append(inv, "network", "remove", "net1")...)
	e.must(append(inv, "network", "remove", "net2")...)
	for _, m := range []string{"m1", "m2", "m3"} {
		e.must(append(inv, "machine", "remove", m)...)
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		if links := e.onMachine(m, "ip", "-o", "link"); strings.Contains(links, ": bt") {
			t.Errorf("%s keeps links of ours:\n%s", m, links)
		}
		if files := e.onMachine(m, "find", "/var/lib/libvirt/butter/vms", "-type", "f"); strings.TrimSpace(files) != "" {
			t.Errorf("%s keeps VM files: %s", m, files)
		}
		if bins := e.onMachine(m, "ls", "/var/lib/butter/bin"); !strings.Contains(bins, "butter-") {
			t.Errorf("%s lost the helper: %q", m, bins)
		}
	}
	if left := e.must(append(inv, "machine", "list", "--json")...); strings.TrimSpace(left) != "[]" {
		t.Errorf("machines left: %s", left)
	}
}

// fragCreates is a guest shell line printing the IP FragCreates counter
// after prefix, found by its name in /proc/net/snmp's header.
func fragCreates(prefix string) string {
	return `awk '/^Ip:/{n++; if (n==1) {for (i=1;i<=NF;i++) if ($i=="FragCreates") c=i} else {print "` + prefix + `" $c; exit}}' /proc/net/snmp`
}
