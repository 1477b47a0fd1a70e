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
	if f.WireGuard == nil || f.WireGuard.Userspace || f.Uplink != "eth0" || f.UplinkMTU != 1500 {
		g.fail("facts-device", "wireguard %+v uplink %q mtu %d; want a kernel device and eth0 at 1500",
			f.WireGuard, f.Uplink, f.UplinkMTU)
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

// checkReport compares Apply's report with what this setup must give:
// kernel WireGuard at 1420 on a 1500 uplink, gretap networks at 1378, one
// port per peer.
func (g *guest) checkReport(spec helperapi.Spec, rep helperapi.Report) {
	var errs []error
	if rep.WireGuard.Userspace {
		errs = append(errs, errors.New("wireguard is userspace, want the kernel's"))
	}
	if rep.WireGuard.MTU != wantWireGuardMTU {
		errs = append(errs, fmt.Errorf("wireguard MTU %d, want %d", rep.WireGuard.MTU, wantWireGuardMTU))
	}
	if len(rep.Networks) != len(spec.Networks) {
		errs = append(errs, fmt.Errorf("%d networks reported, want %d", len(rep.Networks), len(spec.Networks)))
	}
	for i, n := range rep.Networks {
		if i < len(spec.Networks) && n.ID != spec.Networks[i].ID {
			errs = append(errs, fmt.Errorf("network %d reported as id %d", spec.Networks[i].ID, n.ID))
		}
		if n.Tunnel != helperapi.TunnelGretap || n.MTU != wantNetworkMTU {
			errs = append(errs, fmt.Errorf("network %d: %s at MTU %d, want gretap at %d", n.ID, n.Tunnel, n.MTU, wantNetworkMTU))
		}
		if n.Bridge != plumbing.BridgeName(n.ID) {
			errs = append(errs, fmt.Errorf("network %d: bridge %q, want %q", n.ID, n.Bridge, plumbing.BridgeName(n.ID)))
		}
		if i < len(spec.Networks) && len(n.Ports) != len(spec.Networks[i].Peers) {
			errs = append(errs, fmt.Errorf("network %d: ports %q, want one per peer (%d)", n.ID, n.Ports, len(spec.Networks[i].Peers)))
		}
	}
	g.expect("report", errors.Join(errs...), "kernel wireguard mtu %d, %d gretap networks at mtu %d",
		rep.WireGuard.MTU, len(rep.Networks), wantNetworkMTU)
}

// checkPorts reads the bridge of a network back from the kernel: every
// port carries the network MTU (a smaller one drops big frames silently)
// and every tunnel port is isolated (otherwise three machines make a loop).
func (g *guest) checkPorts(n helperapi.NetworkReport) {
	check := fmt.Sprintf("ports-net%d", n.ID)
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		g.fail(check, "%v", err)
		return
	}
	all, err := netlink.LinkList()
	if err != nil {
		g.fail(check, "%v", err)
		return
	}
	var errs []error
	if br.Attrs().MTU != n.MTU {
		errs = append(errs, fmt.Errorf("bridge %s MTU %d, want %d", n.Bridge, br.Attrs().MTU, n.MTU))
	}
	var tunnels []string
	for _, l := range all {
		a := l.Attrs()
		if a.MasterIndex != br.Attrs().Index || !strings.HasPrefix(a.Name, plumbing.Prefix) {
			continue
		}
		tunnels = append(tunnels, a.Name)
		if a.MTU != n.MTU {
			errs = append(errs, fmt.Errorf("port %s MTU %d, want %d", a.Name, a.MTU, n.MTU))
		}
		if l.Type() != "gretap" {
			errs = append(errs, fmt.Errorf("port %s is a %s, want gretap", a.Name, l.Type()))
		}
		pi, err := netlink.LinkGetProtinfo(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", a.Name, err))
		} else if !pi.Isolated {
			errs = append(errs, fmt.Errorf("port %s is not isolated", a.Name))
		}
	}
	slices.Sort(tunnels)
	want := slices.Sorted(slices.Values(n.Ports))
	if !slices.Equal(tunnels, want) {
		errs = append(errs, fmt.Errorf("tunnel ports on %s are %q, report says %q", n.Bridge, tunnels, want))
	}
	g.expect(check, errors.Join(errs...), "%d isolated gretap ports at mtu %d", len(tunnels), n.MTU)
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
// network, and the network MTU is exactly what fits.
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
		rtt, err := probes[id].Ping(dst, 56, false, 5)
		g.expect(fmt.Sprintf("reach-net%d", id), err, "probe %s reached %s in %s", probeAddr(id, g.index).Addr(), dst, rtt)
	}

	// Isolation: from this machine's probe on one network to the other
	// machine's probe on the other network, in the same /24. Machine 1
	// tries net1 → net2, machine 2 net2 → net1.
	from, to := ids[g.index%2], ids[(g.index+1)%2]
	dst := probeAddr(to, other).Addr()
	if _, err := probes[from].Ping(dst, 56, false, 2); err == nil {
		g.fail("isolation", "probe on net%d reached net%d's %s", from, to, dst)
	} else {
		g.pass("isolation", "probe on net%d cannot reach net%d's %s (%v)", from, to, dst, err)
	}

	// MTU: a DF echo that fills the network MTU passes without any
	// fragmenting on the way; one byte more does not pass.
	id := ids[0]
	dst = probeAddr(id, other).Addr()
	before, err := fragCounters()
	if err != nil {
		return err
	}
	rtt, err := probes[id].Ping(dst, wantMaxPingPayload, true, 3)
	after, ferr := fragCounters()
	if err == nil {
		err = ferr
	}
	if err == nil && after != before {
		err = fmt.Errorf("echo of %d bytes passed but the underlay fragmented: %+v → %+v", wantMaxPingPayload, before, after)
	}
	g.expect("mtu-fits", err, "DF echo with %d bytes of payload (a %d-byte packet) to %s in %s, no fragments",
		wantMaxPingPayload, wantMaxPingPayload+28, dst, rtt)
	if _, err := probes[id].Ping(dst, wantMaxPingPayload+1, true, 2); err == nil {
		g.fail("mtu-exceeds", "DF echo with %d bytes of payload passed; the network MTU is larger than %d", wantMaxPingPayload+1, wantNetworkMTU)
	} else {
		g.pass("mtu-exceeds", "DF echo with %d bytes of payload fails: %v", wantMaxPingPayload+1, err)
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
