package tui

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/plumbing"
)

// fakeSide is a machine's helper in memory, served over the real JSON-RPC
// protocol by plumbing.Serve: the dashboard's calls go through the real
// helperapi.Client.
type fakeSide struct {
	name string
	// down: the machine is away: it cannot be reached (connecting fails,
	// its link finds no helper) and a facts call in flight never answers.
	down atomic.Bool

	mu       sync.Mutex
	key      string // its WireGuard public key; RotateKey makes a new one
	rotated  int
	spec     *helperapi.Spec
	vms      map[string]helperapi.VMInfo
	watchers map[chan helperapi.VMEvent]bool
}

func newFakeSide(name string, i int) *fakeSide {
	k := make([]byte, 32)
	k[0], k[1] = byte(i>>8), byte(i)
	return &fakeSide{name: name, key: base64.StdEncoding.EncodeToString(k), vms: map[string]helperapi.VMInfo{}, watchers: map[chan helperapi.VMEvent]bool{}}
}

func (f *fakeSide) PublicKey() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key, nil
}

// publicKey is the side's key now.
func (f *fakeSide) publicKey() string {
	k, _ := f.PublicKey()
	return k
}

// currentSpec is a copy of the spec the side last applied (nil: none).
func (f *fakeSide) currentSpec() *helperapi.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spec == nil {
		return nil
	}
	s := *f.spec
	return &s
}
func (f *fakeSide) Apply(ctx context.Context, s helperapi.Spec) (helperapi.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spec = &s
	return helperapi.Report{}, nil
}
func (f *fakeSide) Prepare(ctx context.Context, s helperapi.Spec) error { return s.Validate() }

// RotateKey makes a new key, as the helper does: the old one is gone.
func (f *fakeSide) RotateKey(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	f.key = base64.StdEncoding.EncodeToString(k)
	f.rotated++
	return f.key, nil
}
func (f *fakeSide) Desired(ctx context.Context) (helperapi.Desired, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spec == nil || f.spec.Desired == nil {
		return helperapi.Desired{}, nil
	}
	return *f.spec.Desired, nil
}
func (f *fakeSide) Check(ctx context.Context, s helperapi.Spec) ([]helperapi.Drift, error) {
	return nil, nil
}

// DryRun says, as the helper would, what a request changes: a bridge
// per network of a spec that is not built, a link deleted per network
// built when tearing down, virsh for a VM.
func (f *fakeSide) DryRun(ctx context.Context, r helperapi.DryRunRequest) (helperapi.DryRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	built := map[int]bool{}
	if f.spec != nil {
		for _, n := range f.spec.Networks {
			built[n.ID] = true
		}
	}
	var steps []helperapi.DryRunStep
	switch {
	case r.VM != nil:
		steps = append(steps, helperapi.DryRunStep{Change: r.VM.Action + " vm " + r.VM.Name, Commands: []string{"virsh destroy " + r.VM.Name, "virsh undefine " + r.VM.Name}})
	case r.Remove:
		for id := range built {
			steps = append(steps, helperapi.DryRunStep{Change: "del bridge", Commands: []string{fmt.Sprintf("ip link del dev btbr%d", id)}})
		}
	case r.Spec != nil:
		want := map[int]bool{}
		for _, n := range r.Spec.Networks {
			want[n.ID] = true
			if !built[n.ID] {
				steps = append(steps, helperapi.DryRunStep{Change: "add bridge", Commands: []string{fmt.Sprintf("ip link add name btbr%d type bridge", n.ID)}})
			}
		}
		for id := range built {
			if !want[id] {
				steps = append(steps, helperapi.DryRunStep{Change: "del bridge", Commands: []string{fmt.Sprintf("ip link del dev btbr%d", id)}})
			}
		}
	}
	return helperapi.DryRun{Steps: steps}, nil
}

func (f *fakeSide) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spec = nil
	return nil
}
func (f *fakeSide) Facts(ctx context.Context) (helperapi.Facts, error) {
	if f.down.Load() {
		<-ctx.Done()
		return helperapi.Facts{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fa := helperapi.Facts{Version: "v0.9.0", Addresses: []string{"192.0.2.1"},
		Load: helperapi.Load{CPUs: 4, Load1: 1, MemTotalMiB: 8192, MemAvailableMiB: 6144}}
	if f.spec != nil {
		for _, n := range f.spec.Networks {
			fa.Networks = append(fa.Networks, helperapi.NetworkReport{Name: n.Name, ID: n.ID, MTU: 1370, Tunnel: "vxlan"})
		}
		for _, p := range f.spec.Peers {
			fa.Peers = append(fa.Peers, helperapi.PeerFacts{Name: p.Name, PublicKey: p.PublicKey, HandshakeAge: 12})
		}
	}
	return fa, nil
}
func (f *fakeSide) notify(ev helperapi.VMEvent) {
	for ch := range f.watchers {
		select {
		case ch <- ev:
		default:
		}
	}
}
func (f *fakeSide) CreateVM(ctx context.Context, r helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	for i := int64(0); i <= 4; i++ {
		progress(helperapi.Progress{Name: "debian-12.qcow2", Phase: helperapi.PhaseDownload, Done: i << 20, Total: 4 << 20})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vms[r.Name]; ok {
		return helperapi.VMInfo{}, fmt.Errorf("vm %q already exists", r.Name)
	}
	info := helperapi.VMInfo{Name: r.Name, State: "running", Network: r.Network, Address: r.Address + "/24",
		CPUs: r.CPUs, MemoryMiB: r.MemoryMiB, Image: r.Image}
	f.vms[r.Name] = info
	f.notify(helperapi.VMEvent{VM: r.Name, Event: "defined", State: "shut off"})
	f.notify(helperapi.VMEvent{VM: r.Name, Event: "started", State: "running"})
	return info, nil
}
func (f *fakeSide) ListVMs(ctx context.Context) ([]helperapi.VMInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]helperapi.VMInfo, 0, len(f.vms))
	for _, v := range f.vms {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
func (f *fakeSide) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vms[a.Name]
	if !ok {
		return helperapi.VMActionResult{}, fmt.Errorf("no vm %q on this machine", a.Name)
	}
	switch a.Action {
	case "remove":
		delete(f.vms, a.Name)
		f.notify(helperapi.VMEvent{VM: a.Name, Event: "undefined", State: "shut off"})
		return helperapi.VMActionResult{}, nil
	case "stop":
		v.State = "shut off"
		f.notify(helperapi.VMEvent{VM: a.Name, Event: "stopped", State: v.State})
	case "start", "reboot":
		v.State = "running"
		f.notify(helperapi.VMEvent{VM: a.Name, Event: "started", State: v.State})
	}
	f.vms[a.Name] = v
	return helperapi.VMActionResult{}, nil
}
func (f *fakeSide) Images(ctx context.Context) ([]helperapi.Image, error) { return nil, nil }
func (f *fakeSide) WatchVMs(ctx context.Context) (<-chan helperapi.VMEvent, error) {
	ch := make(chan helperapi.VMEvent, 64)
	f.mu.Lock()
	f.watchers[ch] = true
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	}()
	return ch, nil
}

// pipeListener hands out in-process connections to plumbing.Serve.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }
func (l *pipeListener) dial() (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.conns <- b:
		return a, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// fakeCluster is machines (by address) each served by its own helper.
type fakeCluster struct {
	mu        sync.Mutex
	sides     map[string]*fakeSide
	listeners map[string]*pipeListener
	ctx       context.Context
	asked     []string // host keys the user was asked about
}

func (c *fakeCluster) add(t testing.TB, address string, side *fakeSide) {
	l := newPipeListener()
	c.mu.Lock()
	c.sides[address], c.listeners[address] = side, l
	c.mu.Unlock()
	go plumbing.Serve(c.ctx, l, side, slog.New(slog.DiscardHandler))
}

// Connect implements cloud.Connector over the in-process pipes, asking
// about the host key the way the SSH connector does.
func (c *fakeCluster) Connect(ctx context.Context, m inventory.Machine, trust cloud.Trust, steps func(cloud.Step)) (cloud.Link, error) {
	c.mu.Lock()
	l, ok := c.listeners[m.Address]
	side := c.sides[m.Address]
	c.mu.Unlock()
	if !ok {
		return nil, errors.New("dial tcp " + m.Address + ":22: connection refused")
	}
	if side.down.Load() {
		return nil, fmt.Errorf("dial tcp %s:22: %w", m.Address, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH})
	}
	if trust.Ask != nil {
		fp := "SHA256:fakefakefakefakefakefakefakefakefakefakefak"
		c.mu.Lock()
		c.asked = append(c.asked, m.Address)
		c.mu.Unlock()
		yes, err := trust.Ask(ctx, m.Address, fp)
		if err != nil {
			return nil, err
		}
		if !yes {
			return nil, errors.New("host key of " + m.Address + " not trusted")
		}
	}
	conn, err := l.dial()
	if err != nil {
		return nil, err
	}
	if steps != nil {
		steps(cloud.Step{Machine: m.Name, Text: "connected"})
	}
	return &fakeLink{client: helperapi.NewClient(c.ctx, conn), addr: m.Address, side: side}, nil
}

// fakeLink is a cloud.Link to a fake side; Upload is not faked (the
// embedded nil Link would panic), no test uploads.
type fakeLink struct {
	cloud.Link
	client *helperapi.Client
	addr   string
	side   *fakeSide
}

// Helper is the side's helper unless the machine is away: a real link
// reconnects, and fails to while the machine is away.
func (l *fakeLink) Helper(ctx context.Context) (cloud.Helper, error) {
	if l.side.down.Load() {
		return nil, fmt.Errorf("dial tcp %s:22: %w", l.addr, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH})
	}
	return l.client, nil
}
func (l *fakeLink) Via() cloud.Route { return cloud.Route{Addr: "192.0.2.1"} }
func (l *fakeLink) Close() error     { return l.client.Close() }
func (l *fakeLink) Console(ctx context.Context, vmName string, in io.Reader, out io.Writer) error {
	fmt.Fprintf(out, "%s login: ", vmName)
	go func() {
		<-ctx.Done()
	}()
	_, err := io.Copy(out, in)
	return err
}

// newFakeCluster makes machines×vms fake helpers and an inventory that
// lists them, one network across all, and the VMs.
func newFakeCluster(t testing.TB, machines, vmsPer int) (*fakeCluster, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &fakeCluster{sides: map[string]*fakeSide{}, listeners: map[string]*pipeListener{}, ctx: ctx}
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	inv := inventory.New()
	net := inventory.Network{Name: "lan", ID: 1, Subnet: netip.MustParsePrefix("10.64.0.0/16"), Tunnel: helperapi.TunnelAuto}
	vmAddr := netip.MustParseAddr("10.64.0.10")
	for i := 1; i <= machines; i++ {
		name := fmt.Sprintf("node%03d", i)
		addr := fmt.Sprintf("192.0.%d.%d", 2+i/250, i%250+1)
		side := newFakeSide(name, i)
		mesh := netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)})
		inv.Machines = append(inv.Machines, inventory.Machine{Name: name, Address: addr, Port: 22,
			MeshIP: mesh, PublicKey: side.key})
		net.Machines = append(net.Machines, name)
		for j := 1; j <= vmsPer; j++ {
			vname := fmt.Sprintf("%s-vm%02d", name, j)
			inv.VMs = append(inv.VMs, inventory.VM{Name: vname, Machine: name, Network: "lan", Address: vmAddr})
			state := "running"
			if j%7 == 0 {
				state = "shut off"
			}
			side.vms[vname] = helperapi.VMInfo{Name: vname, State: state, Network: "lan", Address: vmAddr.String() + "/16",
				CPUs: 1 + j%2, MemoryMiB: 512 * (1 + j%4), CPUTime: time.Duration(j) * time.Second, Image: "debian-12"}
			vmAddr = vmAddr.Next()
		}
		c.add(t, addr, side)
	}
	if machines > 0 {
		inv.Networks = append(inv.Networks, net)
	}
	if err := inventory.Update(ctx, path, func(i *inventory.Inventory) error {
		*i = *inv
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Give every machine its spec, as adding them would have.
	specs, err := cloud.Specs(inv)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range inv.Machines {
		s := specs[m.Name]
		c.sides[m.Address].spec = &s
	}
	return c, path
}
