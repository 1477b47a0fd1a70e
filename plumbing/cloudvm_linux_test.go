package plumbing_test

// The real cloud-init path through the product: the lab's Debian 12 image
// (debootstrap, cloud-init, GRUB on an MBR disk, cached between runs) is
// handed to `butter helper vm create` as a file, and the helper does the
// rest as for any cloud image: it caches the base, makes a qcow2 overlay
// grown to the requested size, writes the NoCloud seed and defines a
// libvirt domain that boots the disk through SeaBIOS under TCG. From a
// probe on the network's bridge the test then logs in over SSH, with the
// key the seed carried and the host key the guest printed on its console
// pinned, and checks what cloud-init applied: host name, the key, the
// static address, the default route, the MTU, the grown root partition.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing/vm"
)

var cloudVMNetwork = helperapi.Network{Name: "teal", ID: 9, Tunnel: helperapi.TunnelVXLAN,
	Subnet: netip.MustParsePrefix("10.30.0.0/24")}

const (
	// Under TCG the guest needed 56–67 s from qemu's start to cloud-init's
	// end by direct kernel boot; SeaBIOS and GRUB add a few seconds, other
	// tests share the two cores: leave room, but not forever.
	cloudVMBootTimeout = 4 * time.Minute
	// cloudVMDiskGiB is bigger than the image's 2 GiB, so that cloud-init
	// has a partition to grow.
	cloudVMDiskGiB = 3
)

func TestCloudVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Debian with cloud-init through libvirt under TCG (~2 min warm, ~5 min cold); not in -short")
	}
	needVMLab(t)
	testbed.NeedCloudImageTools(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	begin := time.Now()

	img, err := testbed.BuildCloudImage(ctx, "", testbed.LogWriter{T: t, Prefix: "image: "})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s ready after %s", img.Dir, time.Since(begin).Round(100*time.Millisecond))

	dir := t.TempDir()
	butter := buildButter(t, ctx, dir)
	l := testbed.NewLab(t, "cvm", sim.Config{Machines: 1})
	var logs bytes.Buffer
	logW := &lockedWriter{mu: new(sync.Mutex), w: &logs}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- libvirtd and helper logs:\n%s", logs.String())
		}
	})
	m := l.Machines[0]
	if _, err := m.StartLibvirt(ctx, logW); err != nil {
		t.Fatal(err)
	}
	bin := testbed.Butter{Path: butter, DaemonArgs: []string{"--accel", "tcg"}}
	helpers, err := bin.StartMesh(ctx, l, testbed.Mesh{Networks: []helperapi.Network{cloudVMNetwork}},
		func(*sim.Machine) io.Writer { return logW })
	if err != nil {
		t.Fatal(err)
	}
	var nr helperapi.NetworkReport
	for _, r := range helpers.Reports[m.Name].Networks {
		if r.Name == cloudVMNetwork.Name {
			nr = r
		}
	}
	if nr.Bridge == "" || nr.MTU == 0 {
		t.Fatalf("the helper reports no bridge for %s: %+v", cloudVMNetwork.Name, helpers.Reports[m.Name])
	}
	t.Logf("network %s: bridge %s, MTU %d", nr.Name, nr.Bridge, nr.MTU)

	// The operator's key, which the seed authorizes.
	key := testbed.NewUserKey(t)
	signer := key.Signer
	// The VM's host key, made here as the operator makes it: the guest
	// must present it, not one of its own.
	hostPriv, seededHostKey, err := helperapi.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	hostKeyFile := filepath.Join(dir, "host_key")
	if err := os.WriteFile(hostKeyFile, []byte(hostPriv), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519.pub")
	if err := os.WriteFile(keyFile, append(bytes.TrimSpace(key.Authorized()), " butter-test\n"...), 0o644); err != nil {
		t.Fatal(err)
	}

	// The VM's gateway is the network's, on the machine's bridge; the
	// probe stands in for the rest of the network.
	gateway := netip.PrefixFrom(helperapi.GatewayAddr(cloudVMNetwork.Subnet), cloudVMNetwork.Subnet.Bits())
	address := netip.MustParseAddr("10.30.0.20")
	const name, hostname = "deb1", "deb1.lab.test"
	probe, err := l.AddProbe(ctx, m, nr.Bridge, netip.MustParsePrefix("10.30.0.2/24"), nr.MTU)
	if err != nil {
		t.Fatal(err)
	}

	createStart := time.Now()
	out, err := m.Run(ctx, butter, "helper", "vm", "create", name, "--network", cloudVMNetwork.Name,
		"--address", address.String(), "--gateway", gateway.Addr().String(), "--hostname", hostname,
		"--image", img.Disk, "--memory-mib", "512", "--cpus", "2", "--disk-gib", strconv.Itoa(cloudVMDiskGiB),
		"--ssh-key", keyFile, "--host-key", hostKeyFile)
	if err != nil {
		t.Fatalf("vm create: %v: %s", err, out)
	}
	created := time.Since(createStart)
	var info helperapi.VMInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("vm create: %v: %s", err, out)
	}
	t.Logf("vm create (upload of the %s image included) returned after %s: %+v", filepath.Base(img.Disk),
		created.Round(100*time.Millisecond), info)
	if info.State != "running" || info.Address != address.String()+"/24" || info.Network != cloudVMNetwork.Name {
		t.Errorf("vm create says %+v, want running on %s at %s/24", info, cloudVMNetwork.Name, address)
	}

	// The guest's own account of its boot: the console log libvirt keeps.
	boot, err := testbed.WaitCloudInit(ctx, m.Run, filepath.Join(vm.DefaultLogDir, name+".console.log"), cloudVMBootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cloud-init finished %s after vm create returned (%s after it started)",
		(time.Since(createStart) - created).Round(100*time.Millisecond), time.Since(createStart).Round(100*time.Millisecond))
	for _, c := range boot.Complaints {
		t.Errorf("cloud-init complained on the console: %s", c)
	}
	hostKey, err := testbed.GuestHostKey(boot.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the guest printed the host key %s", ssh.FingerprintSHA256(hostKey))
	if !bytes.Equal(hostKey.Marshal(), seededHostKey.Marshal()) {
		t.Fatalf("the guest's host key is %s, not the seed's %s", ssh.FingerprintSHA256(hostKey), ssh.FingerprintSHA256(seededHostKey))
	}
	logW.mu.Lock()
	inLogs := strings.Contains(logs.String(), "PRIVATE KEY")
	logW.mu.Unlock()
	if inLogs {
		t.Error("the private host key appears in the helper's or libvirtd's log")
	}
	if strings.Contains(boot.Log, "PRIVATE KEY") {
		t.Error("the private host key appears on the guest's console")
	}
	if out, err := m.Run(ctx, "/bin/sh", "-c", "grep -rl 'PRIVATE KEY' /var/lib/butter /var/log/libvirt 2>/dev/null; true"); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("the private host key is in the helper's state or libvirt's logs: %s %v", out, err)
	}

	// The image's default user: the seed names none.
	config := testbed.GuestSSHConfig("debian", signer, hostKey)
	nsPath := filepath.Join(sim.NetnsDir, probe.Netns())
	target := net.JoinHostPort(address.String(), "22")
	client, err := testbed.DialGuestSSH(ctx, nsPath, target, config, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	guest, err := testbed.RunSSH(ctx, client, strings.Join([]string{
		"hostname", "hostname --fqdn", "id -un",
		"ip -o -4 addr show dev eth0",
		"cat /sys/class/net/eth0/mtu",
		"ip -4 route show default",
		"cloud-init status",
		"cat /proc/cmdline",
		"lsblk -bno SIZE /dev/vda1",
		"ping -n -c 1 -W 2 -M do -s " + strconv.Itoa(nr.MTU-28) + " " + gateway.Addr().String() + " >/dev/null && echo ok",
	}, "; echo ---; "))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the guest says:\n%s", guest)
	parts := strings.Split(guest, "---\n")
	if len(parts) != 10 {
		t.Fatalf("guest output has %d parts, want 10:\n%s", len(parts), guest)
	}
	field := func(i int) string { return strings.TrimSpace(parts[i]) }
	size, _ := strconv.ParseInt(field(8), 10, 64)
	for _, c := range []struct {
		what, got string
		ok        bool
	}{
		{"hostname", field(0), field(0) == "deb1"},
		{"FQDN", field(1), field(1) == hostname},
		{"default user", field(2), field(2) == "debian"},
		{"address on eth0", field(3), strings.Contains(field(3), " eth0 ") &&
			strings.Contains(field(3), "inet "+address.String()+"/24 ")},
		{"MTU", field(4), field(4) == strconv.Itoa(nr.MTU)},
		{"default route", field(5), strings.HasPrefix(field(5), "default via "+gateway.Addr().String()+" dev eth0")},
		{"cloud-init status", field(6), field(6) == "status: done"},
		// GRUB puts BOOT_IMAGE first and the domain has no <kernel> of
		// its own: the proof that the disk booted itself (SeaBIOS's and
		// GRUB's banners do not reach libvirt's console log here).
		{"booted by GRUB from the disk", field(7), strings.HasPrefix(field(7), "BOOT_IMAGE=/vmlinuz root=UUID=")},
		{"root partition grown to the disk", field(8), size > (cloudVMDiskGiB-1)<<30+512<<20},
		{"full-size DF ping to the gateway", field(9), field(9) == "ok"},
	} {
		if !c.ok {
			t.Errorf("%s: guest says %q", c.what, c.got)
		}
	}

	// From the network's side: a full-size frame reaches the guest
	// unfragmented. This lab has one machine and no tunnel, so nothing
	// here is a chain whose MTU edge could be proven: "one byte more"
	// would only be refused by the probe's own interface. The edge across
	// the chain is TestChain's, TestVMs' ("MTU edge across the chain", to
	// a VM) and the real-kernel tier's (TestTwoMachines).
	if err := waitPing(ctx, probe, address, probeBudget, "-M", "do", "-s", strconv.Itoa(nr.MTU-28)); err != nil {
		t.Errorf("DF ping of %d bytes (a %d-byte packet) from the probe: %v", nr.MTU-28, nr.MTU, err)
	}

	if out, err := m.Run(ctx, butter, "helper", "vm", "remove", name); err != nil {
		t.Errorf("vm remove: %v: %s", err, out)
	}
	t.Logf("whole test: %s", time.Since(begin).Round(100*time.Millisecond))
}
