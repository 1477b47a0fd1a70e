//go:build linux

package realkernel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// guestModulesDir holds the .ko files in the image and the file "order"
// naming them, one a line, in the order to load them.
const guestModulesDir = "/modules"

// guestMain runs the scenario named on the kernel command line and powers
// the machine off. It is what the test binary does as /init.
func guestMain() {
	g := &guest{start: time.Now(), in: make(chan string, 16)}
	defer g.powerOff()
	defer func() {
		if r := recover(); r != nil {
			g.fail("panic", "%v\n%s", r, debug.Stack())
		}
	}()
	if err := g.init(); err != nil {
		g.fail("init", "%v", err)
		return
	}
	go g.watchdog()
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	var err error
	switch g.scenario {
	case scenarioBoot:
		err = g.runBoot(ctx)
	case scenarioTwo, scenarioThree:
		err = g.runMesh(ctx)
	default:
		err = fmt.Errorf("unknown scenario %q (kernel parameter %s)", g.scenario, paramScenario)
	}
	if err != nil {
		g.fail("scenario", "%v", err)
		return
	}
	g.printf("%s %d failures", msgDone, g.failures)
}

type guest struct {
	start    time.Time
	scenario string
	index    int
	count    int
	timeout  time.Duration
	in       chan string // lines from the serial console

	mu       sync.Mutex // serializes console output
	failures int

	h *plumbing.Helper
	// What this machine's chains must be, computed from its facts.
	wgMTU int
	want  map[int]chainWant // by network ID
}

// chainWant is what testbed.ExpectedChain says one network must be here.
type chainWant struct {
	kind  string
	mtu   int
	ports int
}

func (g *guest) printf(format string, a ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// One write per line: the kernel's own messages may interleave with
	// lines, never split them.
	os.Stdout.WriteString(fmt.Sprintf(format, a...) + "\n")
}

func (g *guest) info(format string, a ...any) { g.printf(msgInfo+" "+format, a...) }

func (g *guest) pass(check, format string, a ...any) {
	g.printf("%s %s %s", msgPass, check, oneLine(fmt.Sprintf(format, a...)))
}

func (g *guest) fail(check, format string, a ...any) {
	g.mu.Lock()
	g.failures++
	g.mu.Unlock()
	g.printf("%s %s %s", msgFail, check, oneLine(fmt.Sprintf(format, a...)))
}

// expect reports check as passed if err is nil, failed otherwise.
func (g *guest) expect(check string, err error, format string, a ...any) {
	if err != nil {
		g.fail(check, "%v", err)
		return
	}
	g.pass(check, format, a...)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (g *guest) watchdog() {
	time.Sleep(g.timeout + 5*time.Second)
	g.fail("watchdog", "still running after %s", g.timeout)
	g.powerOff()
}

func (g *guest) powerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Still here: reboot, which qemu -no-reboot turns into an exit.
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// init makes the initramfs a place to run in: file systems, the console
// in raw mode, the kernel modules, the underlay's eth0.
func (g *guest) init() error {
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/var/lib/butter"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, m := range []struct{ src, dir, fs string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := unix.Mount(m.src, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	uptime, _ := os.ReadFile("/proc/uptime")
	g.info("init started, kernel uptime %s s", strings.Fields(string(uptime) + " ?")[0])

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	params := map[string]string{}
	for _, f := range strings.Fields(string(cmdline)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			params[k] = v
		}
	}
	g.scenario = params[paramScenario]
	g.index, _ = strconv.Atoi(params[paramIndex])
	g.count, _ = strconv.Atoi(params[paramCount])
	secs, _ := strconv.Atoi(params[paramTimeout])
	if secs <= 0 {
		secs = 90
	}
	g.timeout = time.Duration(secs) * time.Second

	if err := rawConsole(); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			g.in <- strings.TrimRight(sc.Text(), "\r")
		}
		close(g.in)
	}()

	t0 := time.Now()
	n, err := loadModules()
	g.expect("modules", err, "%d loaded in %.2fs", n, time.Since(t0).Seconds())
	if err != nil {
		return err
	}
	if g.scenario == scenarioBoot {
		return nil
	}
	return underlay(g.index)
}

// rawConsole turns off echo and line editing on the serial console, so
// that a long spec line neither comes back as output nor hits the 4 KiB
// limit of a canonical-mode line.
func rawConsole() error {
	t, err := unix.IoctlGetTermios(0, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Iflag &^= unix.ICRNL | unix.IXON
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	return unix.IoctlSetTermios(0, unix.TCSETS, t)
}

func loadModules() (int, error) {
	order, err := os.ReadFile(guestModulesDir + "/order")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range strings.Fields(string(order)) {
		f, err := os.Open(guestModulesDir + "/" + name + ".ko")
		if err != nil {
			return n, err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return n, fmt.Errorf("load module %s: %w", name, err)
		}
		n++
	}
	return n, nil
}

// underlay brings up lo and eth0, the guest's NIC on the socket network.
func underlay(index int) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	var eth netlink.Link
	for deadline := time.Now().Add(10 * time.Second); ; {
		eth, err = netlink.LinkByName("eth0")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no eth0 after 10s: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(underlayAddr(index))}); err != nil {
		return fmt.Errorf("eth0 address: %w", err)
	}
	return netlink.LinkSetUp(eth)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// await waits for the host's next line starting with keyword and returns
// the rest of it.
func (g *guest) await(ctx context.Context, keyword string) (string, error) {
	for {
		select {
		case line, ok := <-g.in:
			if !ok {
				return "", fmt.Errorf("console closed while waiting for %s", keyword)
			}
			if rest, ok := field(line, keyword); ok {
				return rest, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s: %w", keyword, ctx.Err())
		}
	}
}

// barrier waits until every machine has reached it.
func (g *guest) barrier(ctx context.Context, name string) error {
	g.printf("%s %s", msgReady, name)
	for {
		rest, err := g.await(ctx, msgGo)
		if err != nil {
			return fmt.Errorf("barrier %s: %w", name, err)
		}
		if rest == name {
			return nil
		}
	}
}

// runBoot proves the kernel side alone: the modules load and the links
// the product needs can be made.
func (g *guest) runBoot(ctx context.Context) error {
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	links := []netlink.Link{
		&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "wgboot"}},
		&netlink.Gretap{LinkAttrs: netlink.LinkAttrs{Name: "gtboot"}, IKey: 7, OKey: 7,
			Local: net.IPv4(127, 0, 0, 1), Remote: net.IPv4(127, 0, 0, 2)},
		&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "brboot"}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vbooth"}, PeerName: "vbootp"},
	}
	for _, l := range links {
		err := netlink.LinkAdd(l)
		if err == nil {
			got, lerr := netlink.LinkByName(l.Attrs().Name)
			if lerr != nil {
				err = lerr
			} else if got.Type() != l.Type() {
				err = fmt.Errorf("made a %s, read back a %s", l.Type(), got.Type())
			}
			netlink.LinkDel(l)
		}
		g.expect("link-"+l.Type(), err, "made %s", l.Attrs().Name)
	}
	h, err := plumbing.New(plumbing.Options{StateDir: "/var/lib/butter"})
	if err != nil {
		return err
	}
	defer h.Close()
	f, err := h.Facts(ctx)
	if err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	g.checkCapabilities(f)
	return nil
}

func (g *guest) checkCapabilities(f helperapi.Facts) {
	if f.KernelWireGuard && f.Gretap {
		g.pass("facts", "kernel_wireguard=true gretap=true")
	} else {
		g.fail("facts", "kernel_wireguard=%t gretap=%t, want both true", f.KernelWireGuard, f.Gretap)
	}
}

// runMesh is the product's path: key, spec, Apply, and then what the
// private networks must do.
func (g *guest) runMesh(ctx context.Context) error {
	h, err := plumbing.New(plumbing.Options{StateDir: "/var/lib/butter"})
	if err != nil {
		return fmt.Errorf("plumbing.New: %w", err)
	}
	defer h.Close()
	g.h = h
	pub, err := h.PublicKey()
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	g.printf("%s %s", msgPubKey, pub)

	line, err := g.await(ctx, msgSpec)
	if err != nil {
		return err
	}
	spec, err := helperapi.ParseSpec([]byte(line))
	if err != nil {
		return fmt.Errorf("spec from the host: %w", err)
	}
	t0 := time.Now()
	rep, err := h.Apply(ctx, spec)
	if err != nil {
		return fmt.Errorf("apply: %w (changes so far: %q)", err, rep.Changes)
	}
	g.pass("apply", "%d changes in %.2fs", len(rep.Changes), time.Since(t0).Seconds())
	if b, err := json.Marshal(rep); err == nil {
		g.info("report %s", b)
	}
	if err := g.expectFromFacts(ctx, spec); err != nil {
		return err
	}
	g.checkReport(spec, rep)

	drift, err := h.Check(ctx, spec)
	switch {
	case err != nil:
		g.fail("check-clean", "%v", err)
	case len(drift) > 0:
		g.fail("check-clean", "drift right after Apply: %+v", drift)
	default:
		g.pass("check-clean", "no drift")
	}
	again, err := h.Apply(ctx, spec)
	switch {
	case err != nil:
		g.fail("reapply", "%v", err)
	case len(again.Changes) > 0:
		g.fail("reapply", "a second Apply of the same spec changed %q", again.Changes)
	default:
		g.pass("reapply", "no changes")
	}

	if err := g.barrier(ctx, "applied"); err != nil {
		return err
	}
	if err := g.waitHandshakes(ctx, spec); err != nil {
		return err
	}
	f, err := h.Facts(ctx)
	if err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	g.checkCapabilities(f)
	kernelMTU := 0 // btwg0's MTU as the kernel has it, not as the helper says
	if wg, err := netlink.LinkByName(plumbing.WireGuardName); err == nil {
		kernelMTU = wg.Attrs().MTU
	}
	if f.WireGuard == nil || f.WireGuard.Userspace || f.WireGuard.MTU != g.wgMTU || kernelMTU != g.wgMTU ||
		f.Uplink != "eth0" || f.UplinkMTU != 1500 {
		g.fail("facts-device", "wireguard %+v (the kernel's %s at mtu %d) uplink %q mtu %d; want a kernel device at mtu %d and eth0 at 1500",
			f.WireGuard, plumbing.WireGuardName, kernelMTU, f.Uplink, f.UplinkMTU, g.wgMTU)
	} else {
		g.pass("facts-device", "kernel device %s mtu %d, uplink %s mtu %d", f.WireGuard.Name, f.WireGuard.MTU, f.Uplink, f.UplinkMTU)
	}

	probes := map[int]*probe{}
	for _, n := range rep.Networks {
		p, err := makeProbe(n.ID, probeAddr(n.ID, g.index), n.MTU, n.Bridge)
		if err != nil {
			return fmt.Errorf("probe on network %d: %w", n.ID, err)
		}
		defer p.Close()
		probes[n.ID] = p
		g.checkPorts(n)
	}
	if err := g.barrier(ctx, "probes"); err != nil {
		return err
	}
	switch g.scenario {
	case scenarioTwo:
		err = g.runTwo(ctx, probes)
	case scenarioThree:
		err = g.runThree(ctx, spec, probes)
	}
	if err != nil {
		return err
	}
	if err := g.barrier(ctx, "checked"); err != nil {
		return err
	}
	for _, p := range probes {
		p.Close()
	}
	err = h.Remove(ctx)
	if err == nil {
		err = noLinksLeft()
	}
	g.expect("remove", err, "no %s* links left", plumbing.Prefix)
	return nil
}

// expectFromFacts computes what each network must be on this machine from
// its facts, as the namespace tier and e2e do (testbed.FactsForChain and
// ExpectedChain), after checking the facts it uses against the kernel
// without the helper: gretap by making a link, the uplink's MTU in /sys.
func (g *guest) expectFromFacts(ctx context.Context, spec helperapi.Spec) error {
	f, err := g.h.Facts(ctx)
	if err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	var errs []error
	if gretap, err := kernelGretap(); err != nil {
		errs = append(errs, err)
	} else if gretap != f.Gretap {
		errs = append(errs, fmt.Errorf("facts say gretap=%t, the kernel says %t", f.Gretap, gretap))
	}
	if b, err := os.ReadFile("/sys/class/net/" + f.Uplink + "/mtu"); err != nil {
		errs = append(errs, fmt.Errorf("uplink %q: %w", f.Uplink, err))
	} else if mtu, _ := strconv.Atoi(strings.TrimSpace(string(b))); mtu != f.UplinkMTU {
		errs = append(errs, fmt.Errorf("facts say uplink %s has MTU %d, /sys says %d", f.Uplink, f.UplinkMTU, mtu))
	}
	cf, err := testbed.FactsForChain(f, spec.Mesh.MTU)
	if err != nil {
		g.fail("facts-chain", "%v", err)
		return err
	}
	g.wgMTU = cf.WireGuardMTU
	g.want = map[int]chainWant{}
	var wants []string
	for _, n := range spec.Networks {
		kind, mtu, ports := testbed.ExpectedChain(cf, n.Tunnel, len(n.Peers))
		g.want[n.ID] = chainWant{kind: kind, mtu: mtu, ports: ports}
		wants = append(wants, fmt.Sprintf("net%d (asks %q): %s mtu %d, %d tunnel ports", n.ID, n.Tunnel, kind, mtu, ports))
	}
	g.expect("facts-chain", errors.Join(errs...), "gretap=%t uplink %s mtu %d, wireguard mtu %d; %s",
		cf.Gretap, f.Uplink, f.UplinkMTU, cf.WireGuardMTU, strings.Join(wants, "; "))
	return nil
}

// kernelGretap asks the kernel, without the helper, whether it makes
// gretap links (testbed.KernelGretap's question, in netlink: the guest has
// no ip command).
func kernelGretap() (bool, error) {
	l := &netlink.Gretap{LinkAttrs: netlink.LinkAttrs{Name: "tbgtprobe"},
		Local: net.IPv4(192, 0, 2, 2), Remote: net.IPv4(192, 0, 2, 1)}
	if err := netlink.LinkAdd(l); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return false, nil
		}
		return false, fmt.Errorf("probe for gretap: %w", err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return true, fmt.Errorf("delete the gretap probe: %w", err)
	}
	return true, nil
}

// checkReport compares Apply's report with what this machine's facts say
// it must build: kernel WireGuard at the WireGuard MTU, and each network's
// tunnel kind, MTU and tunnel ports as expectFromFacts computed them.
func (g *guest) checkReport(spec helperapi.Spec, rep helperapi.Report) {
	var errs []error
	if rep.WireGuard.Userspace {
		errs = append(errs, errors.New("wireguard is userspace, want the kernel's"))
	}
	if rep.WireGuard.MTU != g.wgMTU {
		errs = append(errs, fmt.Errorf("wireguard MTU %d, want %d", rep.WireGuard.MTU, g.wgMTU))
	}
	if len(rep.Networks) != len(spec.Networks) {
		errs = append(errs, fmt.Errorf("%d networks reported, want %d", len(rep.Networks), len(spec.Networks)))
	}
	var got []string
	for i, n := range rep.Networks {
		if i < len(spec.Networks) && n.ID != spec.Networks[i].ID {
			errs = append(errs, fmt.Errorf("network %d reported as id %d", spec.Networks[i].ID, n.ID))
		}
		w, ok := g.want[n.ID]
		if !ok {
			errs = append(errs, fmt.Errorf("network %d reported, not in the spec", n.ID))
			continue
		}
		if n.Tunnel != w.kind || n.MTU != w.mtu || len(n.Ports) != w.ports {
			errs = append(errs, fmt.Errorf("network %d: %s at MTU %d with ports %q, want %s at %d with %d ports",
				n.ID, n.Tunnel, n.MTU, n.Ports, w.kind, w.mtu, w.ports))
		}
		if n.Bridge != plumbing.BridgeName(n.ID) {
			errs = append(errs, fmt.Errorf("network %d: bridge %q, want %q", n.ID, n.Bridge, plumbing.BridgeName(n.ID)))
		}
		got = append(got, fmt.Sprintf("net%d %s mtu %d", n.ID, n.Tunnel, n.MTU))
	}
	g.expect("report", errors.Join(errs...), "kernel wireguard mtu %d; %s", rep.WireGuard.MTU, strings.Join(got, ", "))
}

// checkPorts reads the bridge of a network back from the kernel: the
// bridge and its tunnel ports are of the kind and number the facts call
// for, every one carries the network MTU (a smaller one drops big frames
// silently), and gretap ports are isolated (otherwise three machines make
// a loop; a network's one VXLAN port needs no isolation).
func (g *guest) checkPorts(n helperapi.NetworkReport) {
	check := fmt.Sprintf("ports-net%d", n.ID)
	w := g.want[n.ID]
	tunnels, err := chainPorts(n.Bridge, w)
	if err == nil {
		want := slices.Sorted(slices.Values(n.Ports))
		if !slices.Equal(tunnels, want) {
			err = fmt.Errorf("tunnel ports on %s are %q, report says %q", n.Bridge, tunnels, want)
		}
	}
	g.expect(check, err, "%d %s ports at mtu %d", len(tunnels), w.kind, w.mtu)
}

// chainPorts checks bridge and its tunnel ports against w in the kernel
// and returns the tunnel ports' names, sorted.
func chainPorts(bridge string, w chainWant) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, err
	}
	all, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var errs []error
	if br.Attrs().MTU != w.mtu {
		errs = append(errs, fmt.Errorf("bridge %s MTU %d, want %d", bridge, br.Attrs().MTU, w.mtu))
	}
	var tunnels []string
	for _, l := range all {
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, plumbing.Prefix) {
			continue
		}
		tunnels = append(tunnels, a.Name)
		if a.MTU != w.mtu {
			errs = append(errs, fmt.Errorf("port %s MTU %d, want %d", a.Name, a.MTU, w.mtu))
		}
		if l.Type() != w.kind {
			errs = append(errs, fmt.Errorf("port %s is a %s, want %s", a.Name, l.Type(), w.kind))
		}
		if l.Type() != helperapi.TunnelGretap {
			continue
		}
		pi, err := netlink.LinkGetProtinfo(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", a.Name, err))
		} else if !pi.Isolated {
			errs = append(errs, fmt.Errorf("port %s is not isolated", a.Name))
		}
	}
	if len(tunnels) != w.ports {
		errs = append(errs, fmt.Errorf("%s has tunnel ports %q, want %d %s", bridge, tunnels, w.ports, w.kind))
	}
	slices.Sort(tunnels)
	return tunnels, errors.Join(errs...)
}

// waitHandshakes sends a datagram to the mesh address of every peer with a
// higher number, which makes WireGuard start a handshake with it, and waits
// until Facts shows a handshake with every peer. Every machine has applied
// its spec by now (a barrier), so no initiation is lost to a peer without
// WireGuard. Only one side of a pair starts: when both do at once, each
// takes the other's initiation as the responder, drops the response to its
// own, and the pair waits out WireGuard's 5 s REKEY_TIMEOUT.
func (g *guest) waitHandshakes(ctx context.Context, spec helperapi.Spec) error {
	t0 := time.Now()
	deadline := t0.Add(25 * time.Second)
	for i := 0; ; i++ {
		if i%10 == 0 { // every second
			for _, p := range spec.Peers {
				if machineIndex(p.MeshIP) < g.index {
					continue
				}
				if c, err := net.Dial("udp4", netip.AddrPortFrom(p.MeshIP, 9).String()); err == nil {
					c.Write([]byte("handshake, please"))
					c.Close()
				}
			}
		}
		f, err := g.h.Facts(ctx)
		if err != nil {
			return fmt.Errorf("facts: %w", err)
		}
		waiting := []string{}
		for _, p := range f.Peers {
			if p.HandshakeAge < 0 {
				waiting = append(waiting, p.Name)
			}
		}
		if len(f.Peers) == len(spec.Peers) && len(waiting) == 0 {
			g.pass("handshake", "with %d peers after %.2fs", len(f.Peers), time.Since(t0).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			g.fail("handshake", "%d peers in facts (want %d); no handshake with %q after %s",
				len(f.Peers), len(spec.Peers), waiting, time.Since(t0).Round(time.Millisecond))
			return errors.New("no handshake")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runTwo: both networks reach the other machine, neither reaches the other
// network, and on each network the MTU edge holds across the chain.
func (g *guest) runTwo(ctx context.Context, probes map[int]*probe) error {
	other := 1 - g.index
	ids := slices.Sorted(func(yield func(int) bool) {
		for id := range probes {
			if !yield(id) {
				return
			}
		}
	})
	if len(ids) != 2 {
		return fmt.Errorf("scenario two wants 2 networks, have %v", ids)
	}
	for _, id := range ids {
		dst := probeAddr(id, other).Addr()
		rtt, err := probes[id].Ping(dst, 56, false, pingTries)
		g.expect(fmt.Sprintf("reach-net%d", id), err, "probe %s reached %s in %s", probeAddr(id, g.index).Addr(), dst, rtt)
	}

	// Isolation: from this machine's probe on one network to the other
	// machine's probe on the other network, in the same /24. Machine 1
	// tries net1 → net2, machine 2 net2 → net1. The control, in the same
	// check: the same probe reaches its own network on the other machine,
	// and the target answers a probe of its own network, so a target that
	// never came up cannot pass for isolation.
	from, to := ids[g.index%2], ids[(g.index+1)%2]
	dst := probeAddr(to, other).Addr()
	own := probeAddr(from, other).Addr()
	_, errOwn := probes[from].Ping(own, 56, false, pingTries)
	_, errTarget := probes[to].Ping(dst, 56, false, pingTries)
	if err := errors.Join(errOwn, errTarget); err != nil {
		g.fail("isolation-control", "%v", err)
		return nil
	}
	g.pass("isolation-control", "probe on net%d reaches %s on its own network; %s answers net%d's probe", from, own, dst, to)
	if _, err := probes[from].Ping(dst, 56, false, pingTries); err == nil {
		g.fail("isolation", "probe on net%d reached net%d's %s", from, to, dst)
	} else {
		g.pass("isolation", "probe on net%d cannot reach net%d's %s in %d tries (%v)", from, to, dst, pingTries, err)
	}

	if err := g.runThroughput(ctx, ids[0], probes[ids[0]]); err != nil {
		return err
	}
	for _, id := range ids {
		if err := g.mtuEdge(ctx, id, probes[id], other); err != nil {
			return err
		}
	}
	return nil
}

// pingTries is how many echoes (a second each) a ping gets, whether it
// must be answered or must not be.
const pingTries = 5

// mtuEdge proves network id's MTU across the chain, not on the probe's
// own link: the probe's eth0 and its bridge port are raised to bigProbeMTU
// while the bridge and tunnels keep the network MTU. Then a don't-fragment
// echo that fills the network MTU crosses (answered, nothing fragmented on
// the way), and one byte more leaves the probe, enters the bridge, gets no
// answer, and never arrives at the other machine's probe. Both machines do
// it at once, each towards the other; each reports what arrived at its
// own probe (mtu-arrived), which is the far side of the other's pings.
func (g *guest) mtuEdge(ctx context.Context, id int, p *probe, other int) error {
	w := g.want[id]
	if bigProbeMTU <= w.mtu {
		g.fail(fmt.Sprintf("mtu-fits-net%d", id), "the network MTU %d is not below the big probe MTU %d", w.mtu, bigProbeMTU)
		return nil
	}
	if err := p.SetMTU(bigProbeMTU); err != nil {
		return fmt.Errorf("net%d: raise the probe to %d: %w", id, bigProbeMTU, err)
	}
	defer func() {
		if err := p.SetMTU(w.mtu); err != nil {
			g.fail(fmt.Sprintf("mtu-fits-net%d", id), "put the probe back at %d: %v", w.mtu, err)
		}
	}()
	// The network's own links keep the network MTU.
	if _, err := chainPorts(plumbing.BridgeName(id), w); err != nil {
		g.fail(fmt.Sprintf("mtu-fits-net%d", id), "with the probe at %d: %v", bigProbeMTU, err)
	}
	self := probeAddr(id, g.index).Addr()
	dst := probeAddr(id, other).Addr()
	arriving, err := countEchoRequests(p.socket, p.ifindex, dst, self) // at this probe, from the other's
	if err != nil {
		return err
	}
	entering, err := countEchoRequests(rootSocket, p.hostIndex, self, dst) // this probe's, into the bridge
	if err != nil {
		arriving.stop()
		return err
	}
	if err := g.barrier(ctx, fmt.Sprintf("mtu-listen-net%d", id)); err != nil {
		arriving.stop()
		entering.stop()
		return err
	}

	payload := w.mtu - 28 // IPv4 20 + ICMP 8
	before, err := fragCounters()
	if err != nil {
		arriving.stop()
		entering.stop()
		return err
	}
	rtt, errFit := p.Ping(dst, payload, true, pingTries)
	after, ferr := fragCounters()
	_, errOver := p.Ping(dst, payload+1, true, pingTries)
	berr := g.barrier(ctx, fmt.Sprintf("mtu-sent-net%d", id))
	time.Sleep(200 * time.Millisecond)
	arrived, entered := arriving.stop(), entering.stop()
	if berr != nil {
		return berr
	}

	check := fmt.Sprintf("mtu-fits-net%d", id)
	switch {
	case errFit != nil:
		g.fail(check, "DF echo of a %d-byte packet (the network MTU, %s) to %s: %v", w.mtu, w.kind, dst, errFit)
	case ferr != nil:
		g.fail(check, "%v", ferr)
	case after != before:
		g.fail(check, "DF echo of a %d-byte packet passed but the underlay fragmented: %+v → %+v", w.mtu, before, after)
	default:
		g.pass(check, "DF echo of a %d-byte packet (the %s network MTU) from a probe at %d to %s in %s, no fragments",
			w.mtu, w.kind, bigProbeMTU, dst, rtt)
	}

	// One byte more must leave the probe and enter the bridge; then it gets
	// no answer. The chain may say so: a VXLAN port answers a bridged
	// packet too big for its underlay with "fragmentation needed" (the
	// bridge lets a frame 4 bytes over a port's MTU through to it), after
	// which the probe refuses the next send with EMSGSIZE. A refusal
	// before any such packet entered the bridge says nothing of the chain.
	check = fmt.Sprintf("mtu-exceeds-net%d", id)
	switch {
	case errOver == nil:
		g.fail(check, "DF echo of a %d-byte packet got an answer; the network MTU is %d", w.mtu+1, w.mtu)
	case entered[w.mtu+1] == 0:
		g.fail(check, "no %d-byte echo request entered the bridge (entering by size %v; %v): the test did not reach the chain",
			w.mtu+1, entered, errOver)
	default:
		g.pass(check, "%d DF echo requests of %d bytes entered the bridge, none answered (%v)", entered[w.mtu+1], w.mtu+1, errOver)
	}

	check = fmt.Sprintf("mtu-arrived-net%d", id)
	var over []string
	for size, k := range arrived {
		if size > w.mtu {
			over = append(over, fmt.Sprintf("%d of %d bytes", k, size))
		}
	}
	switch {
	case len(over) > 0:
		g.fail(check, "echo requests over the network MTU %d arrived from %s: %s", w.mtu, machineName(other), strings.Join(over, ", "))
	case arrived[w.mtu] == 0:
		g.fail(check, "no %d-byte echo request from %s arrived (arrived by size %v): the check cannot see what crosses", w.mtu, machineName(other), arrived)
	default:
		g.pass(check, "from %s: echo requests by size %v, none over %d", machineName(other), arrived, w.mtu)
	}
	return nil
}

type frags struct{ Creates, ReasmReqds int64 }

// fragCounters reads IP fragmentation counters of this machine's root
// namespace (where WireGuard and gretap live).
func fragCounters() (frags, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return frags{}, err
	}
	var names, values []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Ip: "); ok {
			if names == nil {
				names = strings.Fields(rest)
			} else {
				values = strings.Fields(rest)
			}
		}
	}
	var f frags
	for i, n := range names {
		if i >= len(values) {
			break
		}
		v, _ := strconv.ParseInt(values[i], 10, 64)
		switch n {
		case "FragCreates":
			f.Creates = v
		case "ReasmReqds":
			f.ReasmReqds = v
		}
	}
	return f, nil
}

// runThree: one broadcast from machine 1's probe arrives exactly once at
// every other probe and never comes back. Then, as a control, with the
// tunnel ports' isolation turned off, the same broadcast loops.
func (g *guest) runThree(ctx context.Context, spec helperapi.Spec, probes map[int]*probe) error {
	if len(probes) != 1 {
		return fmt.Errorf("scenario three wants 1 network, have %d", len(probes))
	}
	var id int
	var p *probe
	for id, p = range probes {
	}
	next := (g.index + 1) % g.count
	dst := probeAddr(id, next).Addr()
	rtt, err := p.Ping(dst, 56, false, 5)
	g.expect(fmt.Sprintf("reach-net%d", id), err, "probe reached %s (%s) in %s", dst, machineName(next), rtt)

	count := func(round string, window time.Duration, max int) (int, error) {
		l, err := p.Listen(loopEtherType)
		if err != nil {
			return 0, err
		}
		defer l.Close()
		if err := g.barrier(ctx, round); err != nil {
			return 0, err
		}
		payload := []byte("butter loop check " + round)
		if g.index == 0 {
			if err := p.Broadcast(loopEtherType, payload); err != nil {
				return 0, err
			}
		}
		return l.Count(payload, window, max)
	}

	n, err := count("loop", 2*time.Second, 1000)
	if err != nil {
		return err
	}
	switch {
	case g.index == 0 && n == 0:
		g.pass("loop-once", "own broadcast did not come back")
	case g.index == 0:
		g.fail("loop-once", "own broadcast came back %d times: a loop", n)
	case n == 1:
		g.pass("loop-once", "broadcast from %s arrived exactly once", machineName(0))
	default:
		g.fail("loop-once", "broadcast from %s arrived %d times, want 1", machineName(0), n)
	}

	// The control: the same check must see a loop when the tunnel ports
	// forward to each other, or it could not have seen one above.
	bridge := plumbing.BridgeName(id)
	if err := setTunnelIsolation(bridge, false); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	n, err = count("loop-control", 2*time.Second, 100)
	if err != nil {
		return err
	}
	if rerr := setTunnelIsolation(bridge, true); rerr != nil {
		return fmt.Errorf("control: restore isolation: %w", rerr)
	}
	if g.index != 0 && n <= 1 {
		g.fail("loop-control", "without isolation the broadcast arrived %d times; the check cannot see a loop", n)
	} else {
		g.pass("loop-control", "without isolation the broadcast arrived %d times (counting stops at 100)", n)
	}
	// Isolation is back: the product's state again.
	drift, err := g.h.Check(ctx, spec)
	if err == nil && len(drift) > 0 {
		err = fmt.Errorf("drift after restoring isolation: %+v", drift)
	}
	g.expect("loop-restored", err, "isolation restored, no drift")
	return nil
}

func setTunnelIsolation(bridge string, on bool) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return err
	}
	all, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range all {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "gretap" {
			if err := netlink.LinkSetIsolated(l, on); err != nil {
				return fmt.Errorf("isolated %t on %s: %w", on, l.Attrs().Name, err)
			}
		}
	}
	return nil
}

func noLinksLeft() error {
	all, err := netlink.LinkList()
	if err != nil {
		return err
	}
	var left []string
	for _, l := range all {
		if strings.HasPrefix(l.Attrs().Name, plumbing.Prefix) {
			left = append(left, l.Attrs().Name)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("links left after Remove: %q", left)
	}
	return nil
}
