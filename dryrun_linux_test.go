package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/lab/sim"
)

// TestDryRun: on a lab of three machines, two of them in the cloud,
// `network create --dry-run` changes nothing (the inventory's folder byte
// for byte, each machine's links, tables and applied spec), and the
// commands it prints for m1, run by hand with sh on m3 (a lab machine
// never added, with a stand-in for the mesh device), build the same
// bridge and tunnels the helper builds on m1 for the same network. With
// m2 away, a dry run says so and still shows m1's plan.
func TestDryRun(t *testing.T) {
	needE2E(t)
	testbed.NeedPrograms(t, "/usr/sbin/nft", "/usr/sbin/ip", "/usr/sbin/bridge", "/usr/sbin/sysctl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, name, underlay := newE2E(t, ctx, "dry")
	addr := func(host int) string { return sim.HostAddr(underlay, host).Addr().String() }
	e.labUp(name, "--underlay", underlay.String(), "--machines", "3", "--add=false", "--demo=false", "--open=false")
	inv := []string{"--inventory", e.lab.Inventory}
	for i, m := range []string{"m1", "m2"} {
		e.must(append(inv, "machine", "add", m, "--address", addr(i+1), "--port", "22", "--user", "root",
			"--identity", e.lab.Key, "--accel", "tcg")...)
	}

	before := e.dryRunState(e.lab.Inventory, "m1", "m2")
	create := append(inv, "network", "create", "net1", "--subnet", "10.72.0.0/24")
	start := time.Now()
	out := e.must(append(create, "--dry-run")...)
	t.Logf("network create --dry-run took %v", time.Since(start))
	if d := cmp.Diff(before, e.dryRunState(e.lab.Inventory, "m1", "m2")); d != "" {
		t.Fatalf("the dry run changed something (-before +after):\n%s\nit printed:\n%s", d, out)
	}
	script := machineScript(t, out, "m1")
	if !strings.Contains(script, "ip link add name btbr1 ") || !strings.Contains(script, "nft -f -") || !strings.Contains(out, "# machine m2: apply generation 3") {
		t.Fatalf("the dry run printed no bridge for m1, or nothing for m2:\n%s", out)
	}
	if strings.Contains(out, "private-key") {
		t.Errorf("a network create should not touch WireGuard keys:\n%s", out)
	}

	// m3 is a fresh lab machine: the mesh device the tunnels ride on is
	// a stand-in there (a TUN device, as userspace WireGuard's is, with
	// m1's mesh address); the rest is the
	// printed script, run by hand.
	var meshAddr string
	for _, l := range e.links("m1") {
		if l.Name == "btwg0" {
			meshAddr = l.Addrs
		}
	}
	e.onMachine("m3", "/usr/sbin/ip", "tuntap", "add", "btwg0", "mode", "tun")
	e.onMachine("m3", "/usr/sbin/ip", "addr", "add", meshAddr, "dev", "btwg0")
	e.onMachine("m3", "/usr/sbin/ip", "link", "set", "btwg0", "up")
	e.onMachine("m3", "/bin/sh", "-ec", script)

	e.must(create...)
	helper, byHand := e.links("m1"), e.links("m3")
	t.Logf("m1's script, run by hand on m3:\n%s\nlinks the helper built on m1: %+v", script, helper)
	notMesh := func(ls []dryLink) []dryLink {
		return slices.DeleteFunc(ls, func(l dryLink) bool { return l.Name == "btwg0" })
	}
	if d := cmp.Diff(notMesh(helper), notMesh(byHand)); d != "" {
		t.Errorf("links built by hand from the dry run differ from the helper's (-helper +by hand):\n%s\nscript:\n%s", d, script)
	}
	if len(notMesh(helper)) < 2 {
		t.Errorf("the helper built %+v on m1; want a bridge and its tunnels", helper)
	}

	rotateKeyDryRun(e)
	adoptDryRun(e, addr(1))
	vmCreateDryRun(e)

	// m2 away (its cable pulled): the dry run of turning egress on says
	// so and still shows m1's commands, and changes nothing either.
	e.unplug("m2", false)
	defer e.unplug("m2", true)
	before = e.dryRunState(e.lab.Inventory, "m1")
	start = time.Now()
	out = e.must(append(inv, "network", "set", "net1", "--egress=true", "--dry-run")...)
	t.Logf("network set --dry-run with m2 away took %v", time.Since(start))
	if d := cmp.Diff(before, e.dryRunState(e.lab.Inventory, "m1")); d != "" {
		t.Fatalf("the dry run changed something (-before +after):\n%s", d)
	}
	m1, m2 := machineScript(t, out, "m1"), machineScript(t, out, "m2")
	if !strings.Contains(m2, "# away (") || !strings.Contains(m1, "sysctl -w net.ipv4.conf.btbr1.forwarding=1") ||
		!strings.Contains(m1, "masquerade") {
		t.Errorf("want m2 away and m1's egress (forwarding, masquerade):\n%s", out)
	}
}

// rotateKeyDryRun: `machine rotate-key m1 --dry-run` makes no key (the
// key file, and the public key m1's helper reports, stay) and changes
// nothing else; m1 says how it would make and use its new key, m2 that
// it would swap m1's old key for the new one, named as m1's, the private
// key being never shown.
func rotateKeyDryRun(e *e2e) {
	t := e.t
	old := e.facts("m1").WireGuard.PublicKey
	before := e.dryRunState(e.lab.Inventory, "m1", "m2")
	out := e.must("--inventory", e.lab.Inventory, "machine", "rotate-key", "m1", "--dry-run")
	if d := cmp.Diff(before, e.dryRunState(e.lab.Inventory, "m1", "m2")); d != "" {
		t.Fatalf("rotate-key --dry-run changed something (-before +after):\n%s\nit printed:\n%s", d, out)
	}
	if now := e.facts("m1").WireGuard.PublicKey; now != old {
		t.Errorf("rotate-key --dry-run changed m1's public key from %s to %s", old, now)
	}
	m1, m2 := machineScript(t, out, "m1"), machineScript(t, out, "m2")
	for _, want := range []string{"# machine m1: make a new WireGuard key\n",
		"(umask 077 && wg genkey > /var/lib/butter/wireguard.key.new && mv /var/lib/butter/wireguard.key.new /var/lib/butter/wireguard.key)\n",
		"wg set btwg0 private-key /var/lib/butter/wireguard.key\n"} {
		if !strings.Contains(m1, want) {
			t.Errorf("m1's rotation lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"# machine m2: apply generation ", "wg set btwg0 peer '<new public key of m1>' endpoint ",
		"wg set btwg0 peer " + old + " remove\n"} {
		if !strings.Contains(m2, want) {
			t.Errorf("m2's plan lacks %q:\n%s", want, out)
		}
	}
	if priv := strings.TrimSpace(e.onMachine("m1", "/bin/cat", "/var/lib/butter/wireguard.key")); priv == "" || strings.Contains(out, priv) {
		t.Errorf("rotate-key --dry-run printed m1's private key (or it has none)")
	}
}

// adoptDryRun: `adopt --dry-run` from m1 prints, as YAML, the inventory
// adopt would write (the lab's own, field for field) and writes nothing:
// the lab's inventory folder stays byte for byte; a new operator's
// (another home, no inventory, no known_hosts) gets neither, although
// it trusted the machines' host keys with --accept-new-host-key.
func adoptDryRun(e *e2e, addr1 string) {
	t := e.t
	lab, err := inventory.Load(e.lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(out string) *inventory.Inventory {
		t.Helper()
		inv, err := inventory.Parse([]byte(out))
		if err != nil {
			t.Fatalf("adopt --dry-run printed no inventory: %v\n%s", err, out)
		}
		return inv
	}
	addrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	prefixes := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	args := []string{"adopt", "--address", addr1, "--identity", e.lab.Key, "--dry-run"}
	before := e.dryRunState(e.lab.Inventory)
	out := e.must(append([]string{"--inventory", e.lab.Inventory}, args...)...)
	if d := cmp.Diff(before, e.dryRunState(e.lab.Inventory)); d != "" {
		t.Errorf("adopt --dry-run changed the lab's inventory folder (-before +after):\n%s", d)
	}
	head := fmt.Sprintf("# %s would hold generation %d, adopted from ", e.lab.Inventory, lab.Generation)
	if !strings.HasPrefix(out, "# dry run of adopt: nothing changed, nothing written") || !strings.Contains(out, head) ||
		!strings.Contains(out, ": machines m1, m2, networks net1, no VMs\n") {
		t.Errorf("adopt --dry-run's head: want nothing written, %q and what it adopts:\n%s", head, out)
	}
	if d := cmp.Diff(lab, parse(out), addrs, prefixes); d != "" {
		t.Errorf("adopt --dry-run would write another inventory than the lab's (-lab +printed):\n%s", d)
	}

	home := filepath.Join(filepath.Dir(e.butter), "home-adopt")
	inv := filepath.Join(home, "inventory.yaml")
	r := e.callEnv(operatorEnv(home), append(append([]string{"--inventory", inv}, args...), "--accept-new-host-key")...)
	if r.code != 0 {
		t.Fatalf("a new operator's adopt --dry-run: %s", r)
	}
	if d := cmp.Diff(lab, parse(r.stdout), addrs, prefixes); d != "" {
		t.Errorf("a new operator's adopt --dry-run would write another inventory than the lab's (-lab +printed):\n%s", d)
	}
	for _, p := range []string{inv, filepath.Join(home, ".config", "butter", "known_hosts")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a new operator's adopt --dry-run wrote %s (%v)", p, err)
		}
	}
}

// vmCreateDryRun: `vm create --dry-run` defines no domain and changes
// nothing else; the `virsh define` it prints for m1, run as printed on
// m1, is accepted by m1's libvirtd, and so is its XML with libvirt's
// schema validation (--validate), each defined domain then undefined.
func vmCreateDryRun(e *e2e) {
	t := e.t
	domains := func() string {
		return strings.TrimSpace(e.onMachine("m1", "/usr/bin/virsh", "-c", "qemu:///system", "list", "--all", "--name"))
	}
	beforeDomains := domains()
	before := e.dryRunState(e.lab.Inventory, "m1", "m2")
	out := e.ok("vm", "create", "dry1", "--machine", "m1", "--network", "net1",
		"--image", e.lab.TinyImage, "--memory", "128M", "--dry-run").stdout
	if d := cmp.Diff(before, e.dryRunState(e.lab.Inventory, "m1", "m2")); d != "" {
		t.Fatalf("vm create --dry-run changed something (-before +after):\n%s\nit printed:\n%s", d, out)
	}
	if now := domains(); now != beforeDomains {
		t.Fatalf("vm create --dry-run defined a domain on m1: %q, was %q", now, beforeDomains)
	}
	script := machineScript(t, out, "m1")
	start := strings.Index(script, "virsh define /dev/stdin <<'EOF'\n")
	end := strings.Index(script, "\n</domain>\nEOF\n")
	if start < 0 || end < start {
		t.Fatalf("m1's plan has no virsh define with a domain:\n%s", out)
	}
	define := script[start : end+len("\n</domain>\nEOF\n")]
	for _, want := range []string{"<name>dry1</name>", "<source bridge='btbr1'/>", "<mtu size='1370'/>", "<memory unit='MiB'>128</memory>"} {
		if !strings.Contains(define, want) {
			t.Errorf("the domain printed lacks %q:\n%s", want, define)
		}
	}
	for _, cmd := range []string{define, strings.Replace(define, "virsh define ", "virsh define --validate ", 1)} {
		if r, err := e.runner("m1")(e.ctx, "/bin/sh", "-ec", cmd+"virsh undefine dry1\n"); err != nil {
			t.Errorf("m1's libvirtd refused the printed domain: %v: %s\n%s", err, r, cmd)
		} else {
			t.Logf("m1's libvirtd took the printed domain: %s", strings.TrimSpace(string(r)))
		}
	}
	// Negative control: the same XML with a unit libvirt does not know
	// is refused by the validating define.
	bad := strings.Replace(strings.Replace(define, "virsh define ", "virsh define --validate ", 1), "unit='MiB'", "unit='parsec'", 1)
	if r, err := e.runner("m1")(e.ctx, "/bin/sh", "-ec", bad+"virsh undefine dry1\n"); err == nil {
		t.Errorf("m1's libvirtd took a domain with memory in parsecs: %s", r)
	}
	if now := domains(); now != beforeDomains {
		t.Errorf("m1's domains after defining and undefining the printed one: %q, was %q", now, beforeDomains)
	}
}

// dryRunState is what a dry run must leave alone: the inventory's folder
// (every file's name, size, time and bytes) and, on each machine, its
// links, nftables ruleset and applied spec.
func (e *e2e) dryRunState(invPath string, machines ...string) map[string]string {
	e.t.Helper()
	st := map[string]string{}
	dir := filepath.Dir(invPath)
	ents, err := os.ReadDir(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ent := range ents {
		p := filepath.Join(dir, ent.Name())
		fi, err := os.Stat(p)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		st["file "+ent.Name()] = fmt.Sprintf("%d %v %q", fi.Size(), fi.ModTime(), b)
	}
	for _, m := range machines {
		st[m+" links"] = fmt.Sprint(e.links(m))
		st[m+" nft"] = e.onMachine(m, "/usr/sbin/nft", "list", "ruleset")
		st[m+" spec"] = e.onMachine(m, "/bin/cat", "/var/lib/butter/spec.json")
		st[m+" key"] = e.onMachine(m, "/bin/sh", "-c", "sha256sum /var/lib/butter/wireguard.key")
	}
	return st
}

// dryLink is what the dry-run test compares of a link of butter's.
type dryLink struct {
	Name, Kind, Master, Alias, MAC, Addrs string
	MTU                                   int
	Up, Isolated                          bool
	// Tunnels: the VNI or GRE keys, ends, device, port, learning, and a
	// VXLAN's flood list.
	ID, IKey, OKey    int
	Local, Remote     string
	Link              string
	Port              int
	Learning, PMTU    bool
	FDB               []string
	IPv6Off, AcceptRA string
}

// links reads machine m's links of butter's from the kernel, with `ip`
// and `bridge` (not butter's own code).
func (e *e2e) links(m string) []dryLink {
	e.t.Helper()
	var raw []struct {
		IfName   string   `json:"ifname"`
		MTU      int      `json:"mtu"`
		Master   string   `json:"master"`
		Flags    []string `json:"flags"`
		Address  string   `json:"address"`
		IfAlias  string   `json:"ifalias"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
		LinkInfo struct {
			InfoKind string `json:"info_kind"`
			InfoData struct {
				ID       int    `json:"id"`
				Local    string `json:"local"`
				Remote   string `json:"remote"`
				Link     string `json:"link"`
				Port     int    `json:"port"`
				Learning bool   `json:"learning"`
				IKey     any    `json:"ikey"`
				OKey     any    `json:"okey"`
				PMTUDisc bool   `json:"pmtudisc"`
			} `json:"info_data"`
			InfoSlaveData struct {
				Isolated bool `json:"isolated"`
			} `json:"info_slave_data"`
		} `json:"linkinfo"`
	}
	out := e.onMachine(m, "/usr/sbin/ip", "-d", "-j", "addr", "show")
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		e.t.Fatalf("%s: ip -j addr: %v: %s", m, err, out)
	}
	var ls []dryLink
	for _, r := range raw {
		if !strings.HasPrefix(r.IfName, "bt") || strings.HasPrefix(r.IfName, "btvm") || strings.HasPrefix(r.IfName, "btprobe") {
			continue
		}
		d := r.LinkInfo.InfoData
		l := dryLink{Name: r.IfName, Kind: r.LinkInfo.InfoKind, Master: r.Master, Alias: r.IfAlias, MTU: r.MTU,
			Up: slices.Contains(r.Flags, "UP"), Isolated: r.LinkInfo.InfoSlaveData.Isolated,
			ID: d.ID, Local: d.Local, Remote: d.Remote, Link: d.Link, Port: d.Port, Learning: d.Learning, PMTU: d.PMTUDisc,
			IKey: keyOf(d.IKey), OKey: keyOf(d.OKey)}
		var addrs []string
		for _, a := range r.AddrInfo {
			if a.Family == "inet" {
				addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
			}
		}
		l.Addrs = strings.Join(addrs, ",")
		if l.Kind == "bridge" {
			l.MAC = r.Address
		}
		if l.Kind == "vxlan" {
			var fdb []struct {
				MAC string `json:"mac"`
				Dst string `json:"dst"`
			}
			out := e.onMachine(m, "/usr/sbin/bridge", "-j", "fdb", "show", "dev", l.Name)
			if err := json.Unmarshal([]byte(out), &fdb); err != nil {
				e.t.Fatalf("%s: bridge -j fdb: %v: %s", m, err, out)
			}
			for _, f := range fdb {
				if f.MAC == "00:00:00:00:00:00" {
					l.FDB = append(l.FDB, f.Dst)
				}
			}
			slices.Sort(l.FDB)
		}
		read := func(key string) string {
			out, err := e.runner(m)(e.ctx, "/bin/cat", "/proc/sys/net/ipv6/conf/"+l.Name+"/"+key)
			if err != nil {
				return "missing"
			}
			return strings.TrimSpace(string(out))
		}
		l.IPv6Off, l.AcceptRA = read("disable_ipv6"), read("accept_ra")
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b dryLink) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// keyOf reads a GRE key as ip prints it: a number, or a dotted quad.
func keyOf(v any) int {
	switch k := v.(type) {
	case float64:
		return int(k)
	case string:
		var a, b, c, d int
		if _, err := fmt.Sscanf(k, "%d.%d.%d.%d", &a, &b, &c, &d); err == nil {
			return a<<24 | b<<16 | c<<8 | d
		}
	}
	return 0
}

// machineScript is the part of a dry run's output for machine m: the
// lines from its "# machine m:" header to the next machine's.
func machineScript(t *testing.T, out, m string) string {
	t.Helper()
	var b strings.Builder
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# machine ") {
			in = strings.HasPrefix(line, "# machine "+m+":")
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatalf("no section for machine %s in:\n%s", m, out)
	}
	return b.String()
}
