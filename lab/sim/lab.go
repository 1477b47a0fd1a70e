package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// StateRoot holds one folder per lab with its mount namespace files.
	StateRoot = "/run/butter-lab"
	// NetnsDir is where iproute2 keeps named network namespaces.
	NetnsDir = "/run/netns"
	// UnderlayBridge is the bridge, inside the underlay namespace, that
	// every machine's eth0 is plugged into.
	UnderlayBridge = "ul0"
	// MachineUplink is a machine's link to the underlay.
	MachineUplink = "eth0"

	maxMachines = 32
	maxIfName   = 15
)

// Defaults for Config.
var (
	DefaultUnderlay = netip.MustParsePrefix("10.250.0.0/24")
	DefaultLAN      = netip.MustParsePrefix("192.168.100.0/24")
	DefaultLAN2     = netip.MustParsePrefix("192.168.101.0/24")
	DefaultMTU      = 1500
)

// MachineMounts are the folders each machine gets its own empty tmpfs on.
// Up makes them on the host if they are missing (as empty folders) and
// leaves them there, since other labs may use them.
var MachineMounts = []string{"/run", "/var/lib/butter", "/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt"}

// Config describes a lab.
type Config struct {
	// Name names the lab and everything in it: 1 to 8 lower-case letters
	// and digits, starting with a letter, not with "bt" (the helper's
	// prefix).
	Name string
	// Machines is how many machines sit on the shared underlay.
	Machines int
	// Underlay is the underlay's prefix; machine i (from 1) gets host
	// number i. Default 10.250.0.0/24.
	Underlay netip.Prefix
	// MTU is the underlay MTU. Default 1500.
	MTU int
	// NAT is how many more machines sit behind one NAT router: a
	// namespace <lab>-r1 whose eth0 takes the last host number of
	// Underlay and which masquerades a private LAN. They are numbered
	// after the underlay's machines.
	NAT int
	// LAN is the private prefix behind the router; the router is host 1,
	// the machines behind it hosts 2, 3, … Default 192.168.100.0/24.
	LAN netip.Prefix
	// NAT2 is how many more machines sit behind a second NAT router, r2,
	// on a LAN of their own: they reach the underlay's machines, but
	// neither they nor the machines behind r1 can reach the others first.
	// r2's eth0 takes the second-to-last host number of Underlay; its
	// machines are numbered after r1's. It needs NAT > 0.
	NAT2 int
	// LAN2 is the private prefix behind r2, numbered as LAN is. Default
	// 192.168.101.0/24.
	LAN2 netip.Prefix
}

var labNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// CheckName checks a lab's name: 1 to 8 lower-case letters and digits,
// starting with a letter, not with "bt" (the helper's link prefix), so that
// every namespace and link name made from it fits.
func CheckName(name string) error {
	if !labNameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: use 1 to 8 lower-case letters and digits, starting with a letter", name)
	}
	if strings.HasPrefix(name, "bt") {
		return fmt.Errorf("lab name %q: must not start with %q, the helper's own link prefix", name, "bt")
	}
	return nil
}

// withDefaults fills in defaults and reports every problem at once.
func (c Config) withDefaults() (Config, error) {
	if !c.Underlay.IsValid() {
		c.Underlay = DefaultUnderlay
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.NAT > 0 && !c.LAN.IsValid() {
		c.LAN = DefaultLAN
	}
	if c.NAT2 > 0 && !c.LAN2.IsValid() {
		c.LAN2 = DefaultLAN2
	}
	var errs []error
	if err := CheckName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Machines < 1 || c.Machines > maxMachines {
		errs = append(errs, fmt.Errorf("lab %q: %d machines: want 1 to %d", c.Name, c.Machines, maxMachines))
	}
	if c.NAT < 0 || c.Machines+c.NAT > maxMachines {
		errs = append(errs, fmt.Errorf("lab %q: %d machines behind NAT: want 0 to %d in all with the others", c.Name, c.NAT, maxMachines))
	}
	if c.NAT2 < 0 || c.Machines+c.NAT+c.NAT2 > maxMachines {
		errs = append(errs, fmt.Errorf("lab %q: %d machines behind the second NAT: want 0 to %d in all with the others", c.Name, c.NAT2, maxMachines))
	}
	if c.NAT2 > 0 && c.NAT <= 0 {
		errs = append(errs, fmt.Errorf("lab %q: %d machines behind a second NAT router but none behind the first: use NAT first", c.Name, c.NAT2))
	}
	underlay := namedPrefix{"the underlay", c.Underlay}
	if c.NAT2 > 0 {
		if err := c.lanProblem("LAN2", c.LAN2, DefaultLAN2, c.NAT2, underlay, namedPrefix{"the first router's LAN", c.LAN}); err != nil {
			errs = append(errs, err)
		}
	}
	if c.NAT > 0 {
		if err := c.lanProblem("LAN", c.LAN, DefaultLAN, c.NAT, underlay); err != nil {
			errs = append(errs, err)
		}
	}
	if !c.Underlay.Addr().Is4() || c.Underlay != c.Underlay.Masked() {
		errs = append(errs, fmt.Errorf("lab %q underlay %s: want an IPv4 network prefix such as %s", c.Name, c.Underlay, DefaultUnderlay))
	} else if c.Machines > 0 && c.NAT2 > 0 && c.Machines > hostCount(c.Underlay)-2 {
		errs = append(errs, fmt.Errorf("lab %q underlay %s: too small for %d machines and two routers", c.Name, c.Underlay, c.Machines))
	} else if c.Machines > 0 && c.Machines > hostCount(c.Underlay)-1 {
		errs = append(errs, fmt.Errorf("lab %q underlay %s: too small for %d machines and a router", c.Name, c.Underlay, c.Machines))
	}
	if c.MTU < 1280 || c.MTU > 9000 {
		errs = append(errs, fmt.Errorf("lab %q MTU %d: want 1280 to 9000", c.Name, c.MTU))
	}
	return c, errors.Join(errs...)
}

// hostCount is how many host numbers a prefix has (no network, no broadcast).
func hostCount(p netip.Prefix) int {
	bits := 32 - p.Bits()
	if bits >= 16 {
		return 1<<16 - 2
	}
	return 1<<bits - 2
}

// HostAddr is the host number n of prefix p, with p's length.
func HostAddr(p netip.Prefix, n int) netip.Prefix {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), p.Bits())
}

// Lab is a set of simulated machines on one underlay.
type Lab struct {
	// Name is the lab's name, the prefix of all its namespaces.
	Name string
	// Dir holds the lab's mount namespace files.
	Dir string
	// Underlay is the underlay prefix and MTU.
	Underlay netip.Prefix
	MTU      int
	// Machines are the lab's machines, m1 first; those behind the NAT
	// routers come last, r1's before r2's.
	Machines []*Machine
	// Router is the (first) NAT router, r1, if the lab has machines
	// behind NAT.
	Router *Router
	// Routers are all the NAT routers: r1, then r2 if Config.NAT2 > 0.
	Routers []*Router

	tools tools

	mu     sync.Mutex
	probes []*Probe
	procs  map[*Process]bool
}

// UnderlayNetns is the name of the namespace holding the underlay bridge.
func (l *Lab) UnderlayNetns() string { return l.Name + "-ul" }

// UnderlayCommand runs a program in the underlay's network namespace
// (tcpdump on UnderlayBridge, say).
func (l *Lab) UnderlayCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return l.tools.nsCommand(ctx, netnsPath(l.UnderlayNetns()), "", name, args...)
}

// UnderlayStart starts a program in the background in the underlay's
// network namespace; see Machine.Start.
func (l *Lab) UnderlayStart(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return l.start(ctx, "underlay", netnsPath(l.UnderlayNetns()), "", out, name, args)
}

// Machine returns the machine called name (m1, m2, …), or nil.
func (l *Lab) Machine(name string) *Machine {
	for _, m := range l.Machines {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func netnsPath(name string) string { return filepath.Join(NetnsDir, name) }

// Up builds a lab. On error it removes what it had built.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t, err := lookTools()
	if err != nil {
		return nil, err
	}
	if left, err := Leftovers(cfg.Name); err != nil {
		return nil, err
	} else if len(left) > 0 {
		return nil, fmt.Errorf("lab %q already exists or a crashed run left %s: take it down or clean it first", cfg.Name, strings.Join(left, ", "))
	}
	l := &Lab{
		Name:     cfg.Name,
		Dir:      filepath.Join(StateRoot, cfg.Name),
		Underlay: cfg.Underlay,
		MTU:      cfg.MTU,
		tools:    t,
		procs:    map[*Process]bool{},
	}
	defer func() {
		if err != nil {
			if derr := clean(context.WithoutCancel(ctx), t, l.Name); derr != nil {
				err = errors.Join(err, fmt.Errorf("remove the half-built lab: %w", derr))
			}
		}
	}()
	if err := l.makeDir(ctx); err != nil {
		return nil, err
	}
	if err := l.makeUnderlay(ctx); err != nil {
		return nil, err
	}
	for i := 1; i <= cfg.Machines; i++ {
		m, err := l.addMachine(ctx, i, HostAddr(l.Underlay, i), nil)
		if err != nil {
			return nil, err
		}
		l.Machines = append(l.Machines, m)
	}
	// The routers take the underlay's last host numbers, r1 the last.
	groups := []struct {
		n   int
		lan netip.Prefix
	}{{cfg.NAT, cfg.LAN}, {cfg.NAT2, cfg.LAN2}}
	next := cfg.Machines + 1
	for g, grp := range groups {
		if grp.n <= 0 {
			continue
		}
		r := &Router{
			Name: "r" + strconv.Itoa(g+1),
			Addr: HostAddr(l.Underlay, hostCount(l.Underlay)-g),
			LAN:  HostAddr(grp.lan, 1),
			lab:  l,
		}
		if err := l.makeRouter(ctx, r); err != nil {
			return nil, err
		}
		if l.Router == nil {
			l.Router = r
		}
		l.Routers = append(l.Routers, r)
		for j := 1; j <= grp.n; j++ {
			m, err := l.addMachine(ctx, next, HostAddr(grp.lan, 1+j), r)
			if err != nil {
				return nil, err
			}
			l.Machines = append(l.Machines, m)
			next++
		}
	}
	return l, nil
}

// makeDir makes the lab's state folder a private bind mount of itself, so
// that mount namespaces can be bound to files in it.
func (l *Lab) makeDir(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(l.Dir, "ns"), 0o700); err != nil {
		return fmt.Errorf("lab %q: %w", l.Name, err)
	}
	if _, err := Output(exec.CommandContext(ctx, l.tools.mount, "--bind", l.Dir, l.Dir)); err != nil {
		return fmt.Errorf("lab %q: %w", l.Name, err)
	}
	if _, err := Output(exec.CommandContext(ctx, l.tools.mount, "--make-private", l.Dir)); err != nil {
		return fmt.Errorf("lab %q: %w", l.Name, err)
	}
	// The bind mount hides what MkdirAll made; make ns again on top.
	if err := os.MkdirAll(filepath.Join(l.Dir, "ns"), 0o700); err != nil {
		return fmt.Errorf("lab %q: %w", l.Name, err)
	}
	for _, dir := range MachineMounts {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("lab %q: mount point: %w", l.Name, err)
		}
	}
	return nil
}

// addNetns makes a named network namespace with loopback up and, if
// noIPv6, IPv6 off for every link made in it later.
func (l *Lab) addNetns(ctx context.Context, name string, noIPv6 bool) error {
	if err := l.tools.runIP(ctx, "netns", "add", name); err != nil {
		return err
	}
	if err := l.tools.runIP(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if noIPv6 {
		return l.sysctl(ctx, netnsPath(name), "", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	return nil
}

// sysctl sets keys (k=v) inside a namespace: /proc/sys/net belongs to the
// network namespace of whoever opens it.
func (l *Lab) sysctl(ctx context.Context, netns, mntns string, kv ...string) error {
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		cmd := l.tools.nsCommand(ctx, netns, mntns, l.tools.sh, "-c", `printf '%s\n' "$1" > "$2"`, "sh", v, path)
		if _, err := Output(cmd); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	return nil
}

func (l *Lab) makeUnderlay(ctx context.Context) error {
	ns := l.UnderlayNetns()
	if err := l.addNetns(ctx, ns, true); err != nil {
		return fmt.Errorf("lab %q underlay: %w", l.Name, err)
	}
	mtu := strconv.Itoa(l.MTU)
	if err := l.tools.runIP(ctx, "-n", ns, "link", "add", UnderlayBridge, "mtu", mtu, "type", "bridge"); err != nil {
		return fmt.Errorf("lab %q underlay: %w", l.Name, err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "link", "set", UnderlayBridge, "up"); err != nil {
		return fmt.Errorf("lab %q underlay: %w", l.Name, err)
	}
	return nil
}

// Down stops the lab's processes and removes every trace of the lab. It
// tolerates what is already gone.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	procs := make([]*Process, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			stopCtx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_ = p.Stop(stopCtx) // clean kills whatever is left
		})
	}
	wg.Wait()
	return clean(ctx, l.tools, l.Name)
}

// namedPrefix is an address range and how a problem names it.
type namedPrefix struct {
	what string
	p    netip.Prefix
}

// lanProblem is what is wrong with a NAT router's LAN (the Config field
// named field, default def) for the router and n machines behind it, or
// nil: an IPv4 network prefix with room for them that overlaps none of
// avoid (those that are set).
func (c Config) lanProblem(field string, lan, def netip.Prefix, n int, avoid ...namedPrefix) error {
	switch {
	case !lan.Addr().Is4() || lan != lan.Masked():
		return fmt.Errorf("lab %q %s %s: want an IPv4 network prefix such as %s", c.Name, field, lan, def)
	case n > hostCount(lan)-1:
		return fmt.Errorf("lab %q %s %s: too small for a router and %d machines", c.Name, field, lan, n)
	}
	for _, a := range avoid {
		if a.p.IsValid() && lan.Overlaps(a.p) {
			return fmt.Errorf("lab %q %s %s: overlaps %s %s", c.Name, field, lan, a.what, a.p)
		}
	}
	return nil
}
