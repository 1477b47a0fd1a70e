//go:build linux

package realkernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
)

func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		guestMain() // powers the machine off; never returns
	}
	os.Exit(m.Run())
}

// guestModules are what the guests load, with their dependencies. The
// guest has no modprobe, so the kernel cannot load a module on demand as it
// does on a real machine. nf_tables is the helper's firewall; the crc32c
// it needs (through libcrc32c) is found by name, not by modules.dep.
var guestModules = []string{"virtio_pci", "virtio_net", "wireguard", "ip_gre", "vxlan", "bridge", "veth", "crc32c_generic", "nf_tables",
	// The helper's firewall: conntrack and masquerade for egress, bridge meta for
	// the gateway filter and the port guard.
	"nft_ct", "nft_chain_nat", "nft_masq", "nft_meta_bridge"}

// image is what every guest boots.
type image struct {
	vmlinux string
	initrd  string
}

var (
	imageOnce sync.Once
	imageVal  image
	imageErr  error
	imageSkip string // why the tier cannot run here, if it cannot
)

// needImage skips (or, under CI, fails) the test when this machine cannot
// run the tier, and builds the guest image once per test binary.
func needImage(t *testing.T) image {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the real-kernel tier boots qemu guests")
	}
	imageOnce.Do(func() {
		start := time.Now()
		imageVal, imageSkip, imageErr = buildImage(context.Background())
		if imageErr == nil && imageSkip == "" {
			t.Logf("guest image ready in %.1fs: %s + %s", time.Since(start).Seconds(), imageVal.vmlinux, imageVal.initrd)
		}
	})
	testbed.Require(t, imageSkip == "", "real-kernel tier: "+imageSkip)
	if imageErr != nil {
		t.Fatalf("guest image: %v", imageErr)
	}
	return imageVal
}

// buildImage checks the machine and builds the image. A missing
// prerequisite gives a reason to skip; a failure of the build an error.
func buildImage(ctx context.Context) (image, string, error) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (it caches under /var/cache/butter)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = append(missing, "qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	k, err := sim.FindKernel("/")
	if err != nil {
		missing = append(missing, "Debian's kernel (apt-get install linux-image-amd64): "+err.Error())
	}
	var mods []sim.Module
	if err == nil {
		if mods, err = k.Modules(guestModules...); err != nil {
			missing = append(missing, "the kernel's modules: "+err.Error())
		}
	}
	if len(missing) > 0 {
		return image{}, "needs " + strings.Join(missing, "; "), nil
	}

	vmlinux, err := k.Vmlinux(ctx, sim.DefaultCacheDir)
	if err != nil {
		return image{}, "", err
	}
	init, err := staticSelf(ctx)
	if err != nil {
		return image{}, "", err
	}
	var r sim.Initramfs
	var order []string
	errs := []error{
		r.AddCharDevice("dev/console", 5, 1, 0o600),
		r.AddFile("init", init, 0o755),
	}
	for _, m := range mods {
		errs = append(errs, r.AddHostFile(guestModulesDir[1:]+"/"+m.Name+".ko", m.Path, 0o644))
		order = append(order, m.Name)
	}
	errs = append(errs, r.AddFile(guestModulesDir[1:]+"/order", []byte(strings.Join(order, "\n")+"\n"), 0o644))
	if err := errors.Join(errs...); err != nil {
		return image{}, "", err
	}
	initrd, err := r.Cached(ctx, sim.DefaultCacheDir, 4)
	if err != nil {
		return image{}, "", err
	}
	return image{vmlinux: vmlinux, initrd: initrd}, "", nil
}

// staticSelf returns this test binary if it is statically linked (as with
// CGO_ENABLED=0), or else builds a static one, since /init has no dynamic
// loader to run with.
func staticSelf(ctx context.Context) ([]byte, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if static, err := sim.IsStatic(self); err == nil && static {
		return os.ReadFile(self)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("this test binary is dynamically linked and no go command is at hand to build a static one; run with CGO_ENABLED=0: %w", err)
	}
	dir, err := os.MkdirTemp("", "realkernel-init-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(ctx, goBin, "test", "-c", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build a static test binary: %w\n%s", err, b)
	}
	if static, err := sim.IsStatic(out); err != nil || !static {
		return nil, fmt.Errorf("built %s but it is not static (%v)", out, err)
	}
	return os.ReadFile(out)
}

// scenario is one boot of n machines.
type scenario struct {
	name     string
	machines int
	memory   int // MiB per guest
	timeout  time.Duration
	// spec builds machine i's spec from everyone's public keys; nil for a
	// scenario without plumbing.
	spec func(i int, pubs []string) helperapi.Spec
	// want are the checks every machine must pass.
	want []string
}

// tunnelNet is a network of a scenario: its ID and the tunnel it asks for.
type tunnelNet struct {
	id     int
	tunnel string
}

// meshSpec is machine i's part of a full mesh of n machines carrying the
// given networks, each over every peer.
func meshSpec(i int, pubs []string, nets ...tunnelNet) helperapi.Spec {
	s := helperapi.Spec{Mesh: helperapi.Mesh{Address: meshAddr(i), ListenPort: listenPort}}
	var names []string
	for j, pub := range pubs {
		if j == i {
			continue
		}
		s.Peers = append(s.Peers, helperapi.Peer{
			Name:      machineName(j),
			PublicKey: pub,
			Endpoint:  netip.AddrPortFrom(underlayAddr(j).Addr(), listenPort).String(),
			MeshIP:    meshAddr(j).Addr(),
		})
		names = append(names, machineName(j))
	}
	for _, n := range nets {
		s.Networks = append(s.Networks, helperapi.Network{
			Name: fmt.Sprintf("net%d", n.id), ID: n.id, Tunnel: n.tunnel, Peers: names,
		})
	}
	return s
}

func TestBoot(t *testing.T) {
	img := needImage(t)
	run(t, img, scenario{
		name: scenarioBoot, machines: 1, memory: 128, timeout: 60 * time.Second,
		want: []string{"modules", "link-wireguard", "link-gretap", "link-bridge", "link-veth", "facts"},
	})
}

// TestTwoMachines runs the chain assertions on a kernel with gretap: net1
// asks for auto, which this kernel's facts make gretap, net2 is forced to
// VXLAN; each guest computes both chains from its facts and checks the
// report, the kernel's links, and the MTU edge across the chain.
func TestTwoMachines(t *testing.T) {
	img := needImage(t)
	run(t, img, scenario{
		name: scenarioTwo, machines: 2, memory: 128, timeout: 120 * time.Second,
		spec: func(i int, pubs []string) helperapi.Spec {
			return meshSpec(i, pubs, tunnelNet{1, helperapi.TunnelAuto}, tunnelNet{2, helperapi.TunnelVXLAN})
		},
		want: []string{"modules", "apply", "facts-chain", "report", "check-clean", "reapply", "handshake", "facts", "facts-device",
			"ports-net1", "ports-net2", "reach-net1", "reach-net2", "isolation-control", "isolation", "tcp-throughput",
			"mtu-fits-net1", "mtu-exceeds-net1", "mtu-arrived-net1", "mtu-fits-net2", "mtu-exceeds-net2", "mtu-arrived-net2",
			"remove"},
	})
}

func TestThreeMachinesNoLoop(t *testing.T) {
	img := needImage(t)
	run(t, img, scenario{
		name: scenarioThree, machines: 3, memory: 128, timeout: 120 * time.Second,
		spec: func(i int, pubs []string) helperapi.Spec {
			return meshSpec(i, pubs, tunnelNet{1, helperapi.TunnelGretap})
		},
		want: []string{"modules", "apply", "facts-chain", "report", "check-clean", "reapply", "handshake", "facts", "facts-device",
			"ports-net1", "reach-net1", "loop-once", "loop-control", "loop-restored", "remove"},
	})
}

// machine is the host's view of one guest.
type machine struct {
	name     string
	guest    *testbed.Guest
	pub      string
	firstAt  time.Duration // first line from /init
	pubAt    time.Duration
	passed   map[string]string
	failed   map[string]string
	done     bool
	lastLine []string
}

type event struct {
	i      int
	line   testbed.SerialLine
	closed bool
}

// run boots the scenario's machines and plays the operator until every
// guest has powered off, then checks what each reported.
func run(t *testing.T, img image, sc scenario) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), sc.timeout)
	defer cancel()
	port := 20000 + rand.IntN(40000)
	hub := &testbed.SocketNetwork{Port: port}

	ms := make([]*machine, sc.machines)
	events := make(chan event)
	var forwarders sync.WaitGroup
	for i := range ms {
		m := &machine{name: machineName(i), passed: map[string]string{}, failed: map[string]string{}}
		ms[i] = m
		g, err := testbed.StartGuest(ctx, testbed.GuestOptions{
			Name:   m.name,
			Kernel: img.vmlinux,
			Initrd: img.initrd,
			Append: strings.Join([]string{
				"console=ttyS0", "panic=-1", "quiet", "random.trust_cpu=on",
				fmt.Sprintf("%s=%s", paramScenario, sc.name),
				fmt.Sprintf("%s=%d", paramIndex, i),
				fmt.Sprintf("%s=%d", paramCount, sc.machines),
				fmt.Sprintf("%s=%d", paramTimeout, int(sc.timeout.Seconds())-5),
			}, " "),
			Memory:  sc.memory,
			Network: hub,
			MAC:     machineMAC(i),
		})
		if err != nil {
			cancel()
			go func() {
				for range events { // let the started guests' forwarders end
				}
			}()
			forwarders.Wait()
			close(events)
			t.Fatal(err)
		}
		m.guest = g
		forwarders.Add(1)
		go func() {
			defer forwarders.Done()
			for l := range g.Lines() {
				events <- event{i: i, line: l}
			}
			events <- event{i: i, closed: true}
		}()
	}
	t.Logf("%s: %d guests started in %s, socket network port %d", sc.name, sc.machines, time.Since(start).Round(time.Millisecond), port)

	ready := map[string]map[int]bool{}
	sendAll := func(line string) {
		for _, m := range ms {
			if err := m.guest.Send(line); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	for open := len(ms); open > 0; {
		ev := <-events
		m := ms[ev.i]
		if ev.closed {
			open--
			if err := m.guest.Wait(); err != nil {
				t.Errorf("%s: %v", m.name, err)
			}
			if !m.done {
				cancel() // the others would wait for it at a barrier
			}
			continue
		}
		text := ev.line.Text
		t.Logf("%s %6.2fs | %s", m.name, ev.line.At.Seconds(), text)
		m.lastLine = append(m.lastLine, text)
		if len(m.lastLine) > 20 {
			m.lastLine = m.lastLine[1:]
		}
		if m.firstAt == 0 && strings.HasPrefix(text, msgInfo+" init started") {
			m.firstAt = ev.line.At
		}
		if rest, ok := field(text, msgPass); ok {
			check, detail, _ := strings.Cut(rest, " ")
			m.passed[check] = detail
		}
		if rest, ok := field(text, msgFail); ok {
			check, detail, _ := strings.Cut(rest, " ")
			m.failed[check] = detail
			t.Errorf("%s: FAIL %s: %s", m.name, check, detail)
		}
		if _, ok := field(text, msgDone); ok {
			m.done = true
		}
		if rest, ok := field(text, msgPubKey); ok && sc.spec != nil {
			m.pub = rest
			m.pubAt = ev.line.At
			if !slices.ContainsFunc(ms, func(m *machine) bool { return m.pub == "" }) {
				pubs := make([]string, len(ms))
				for i, m := range ms {
					pubs[i] = m.pub
				}
				for i, m := range ms {
					spec := sc.spec(i, pubs)
					if err := spec.Validate(); err != nil {
						t.Errorf("%s: the harness made an invalid spec: %v", m.name, err)
						cancel()
						break
					}
					b, err := json.Marshal(spec)
					if err != nil {
						t.Fatal(err)
					}
					if err := m.guest.Send(msgSpec + " " + string(b)); err != nil {
						t.Errorf("%v", err)
					}
				}
			}
		}
		if name, ok := field(text, msgReady); ok {
			if ready[name] == nil {
				ready[name] = map[int]bool{}
			}
			ready[name][ev.i] = true
			if len(ready[name]) == len(ms) {
				sendAll(msgGo + " " + name)
			}
		}
	}
	forwarders.Wait()
	elapsed := time.Since(start)

	var boots []string
	for _, m := range ms {
		boots = append(boots, fmt.Sprintf("%s %.1fs", m.name, m.firstAt.Seconds()))
		if !m.done {
			t.Errorf("%s did not finish; its last lines:\n%s", m.name, strings.Join(m.lastLine, "\n"))
			continue
		}
		for _, check := range sc.want {
			if _, ok := m.passed[check]; !ok {
				if _, failed := m.failed[check]; !failed {
					t.Errorf("%s: no result for check %q", m.name, check)
				}
			}
		}
	}
	t.Logf("%s: qemu start to /init: %s; whole scenario %.1fs", sc.name, strings.Join(boots, ", "), elapsed.Seconds())
}
