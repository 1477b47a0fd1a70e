package cloud

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/inventory"
)

// fakeMachine is a machine's helper in memory: it remembers the spec it
// was given and its VMs, and fails when told to.
type fakeMachine struct {
	mu      sync.Mutex
	name    string
	key     string
	addrs   []string
	spec    *helperapi.Spec
	applies int
	vms     map[string]helperapi.VMInfo
	failApp error
	// halfApply makes the next Apply fail part-way (once): the machine
	// stays on its previous spec, as the helper restores it.
	halfApply error
	// refuse makes Prepare and Apply refuse, as a helper refuses bad input.
	refuse    error
	prepares  int
	dryRuns   int
	rotations int
	// noLibvirt makes ListVMs fail, as a machine for networks only does.
	noLibvirt bool
	// hostKeys are the host keys CreateVM was sent, by VM.
	hostKeys map[string]helperapi.PrivateKey
	// created is the last VM request the machine was asked for.
	created helperapi.VMRequest
}

func (f *fakeMachine) PublicKey(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key, nil
}

// RotateKey makes a new key, as the helper does on the machine.
func (f *fakeMachine) RotateKey(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotations++
	f.key = base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%-32s", fmt.Sprintf("%s-rotated-%d", f.name, f.rotations))))
	return f.key, nil
}

// check refuses what the helper refuses: bad input, and a spec older
// than the one it holds.
func (f *fakeMachine) check(s helperapi.Spec) error {
	if f.refuse != nil {
		return f.refuse
	}
	if err := s.Validate(); err != nil {
		return &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
	}
	var held int64
	var digest string
	if f.spec != nil {
		held, digest = f.spec.Generation, f.spec.Desired.Digest()
	}
	return helperapi.CheckGeneration(s, held, digest)
}

func (f *fakeMachine) Prepare(ctx context.Context, s helperapi.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepares++
	return f.check(s)
}

// Apply takes the spec whole, or keeps the one it had (as the helper
// restores its previous spec when applying fails part-way).
func (f *fakeMachine) Apply(ctx context.Context, s helperapi.Spec) (helperapi.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failApp != nil {
		return helperapi.Report{}, f.failApp
	}
	if err := f.check(s); err != nil {
		return helperapi.Report{}, err
	}
	f.applies++
	if err := f.halfApply; err != nil {
		f.halfApply = nil
		return helperapi.Report{}, &helperapi.RemoteError{Code: helperapi.CodeApplyFailed, Message: err.Error() + "; back on the previous spec"}
	}
	f.spec = &s
	return helperapi.Report{}, nil
}

func (f *fakeMachine) Desired(ctx context.Context) (helperapi.Desired, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spec == nil || f.spec.Desired == nil {
		return helperapi.Desired{}, nil
	}
	return *f.spec.Desired, nil
}

// DryRun says what the spec would change, in one step, and changes
// nothing.
func (f *fakeMachine) DryRun(ctx context.Context, r helperapi.DryRunRequest) (helperapi.DryRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dryRuns++
	switch {
	case r.Remove:
		return helperapi.DryRun{Steps: []helperapi.DryRunStep{{Change: "del wireguard btwg0", Commands: []string{"ip link del dev btwg0"}}}}, nil
	case r.VM != nil:
		return helperapi.DryRun{Steps: []helperapi.DryRunStep{{Change: r.VM.Action + " vm " + r.VM.Name, Commands: []string{"virsh " + r.VM.Action + " " + r.VM.Name}}}}, nil
	case r.CreateVM != nil:
		return helperapi.DryRun{Steps: []helperapi.DryRunStep{{Change: "create vm " + r.CreateVM.Name, Commands: []string{"virsh define /dev/stdin"}}}}, nil
	case r.RotateKey:
		return helperapi.DryRun{Steps: []helperapi.DryRunStep{{Change: "make a new key", Commands: []string{"wg genkey"}}}}, nil
	}
	if err := f.check(*r.Spec); err != nil {
		return helperapi.DryRun{}, err
	}
	var steps []helperapi.DryRunStep
	for _, n := range r.Spec.Networks {
		steps = append(steps, helperapi.DryRunStep{Change: "add bridge " + n.Name, Commands: []string{fmt.Sprintf("ip link add name btbr%d type bridge", n.ID)}})
	}
	for _, p := range r.Spec.Peers {
		if f.spec == nil || !slices.ContainsFunc(f.spec.Peers, func(h helperapi.Peer) bool { return h.PublicKey == p.PublicKey }) {
			steps = append(steps, helperapi.DryRunStep{Change: "wireguard peer " + p.Name + ": [add]", Commands: []string{"wg set btwg0 peer " + p.PublicKey}})
		}
	}
	if f.spec != nil {
		for _, p := range f.spec.Peers {
			if !slices.ContainsFunc(r.Spec.Peers, func(w helperapi.Peer) bool { return w.PublicKey == p.PublicKey }) {
				steps = append(steps, helperapi.DryRunStep{Change: "wireguard remove peer " + p.PublicKey, Commands: []string{"wg set btwg0 peer " + p.PublicKey + " remove"}})
			}
		}
	}
	return helperapi.DryRun{Steps: steps}, nil
}

func (f *fakeMachine) Remove(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spec = nil
	return nil
}
func (f *fakeMachine) Facts(ctx context.Context) (helperapi.Facts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fa := helperapi.Facts{Addresses: f.addrs, Version: "v1"}
	if f.spec != nil {
		for _, n := range f.spec.Networks {
			fa.Networks = append(fa.Networks, helperapi.NetworkReport{Name: n.Name, MTU: 1370, Tunnel: "vxlan"})
		}
		for _, p := range f.spec.Peers {
			fa.Peers = append(fa.Peers, helperapi.PeerFacts{Name: p.Name, HandshakeAge: 3})
		}
	}
	return fa, nil
}
func (f *fakeMachine) CreateVM(ctx context.Context, r helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vms[r.Name]; ok {
		return helperapi.VMInfo{}, fmt.Errorf("vm %q already exists", r.Name)
	}
	info := helperapi.VMInfo{Name: r.Name, State: "running", Network: r.Network, Address: r.Address + "/24", CPUs: r.CPUs, MemoryMiB: r.MemoryMiB, Image: r.Image}
	f.vms[r.Name] = info
	if f.hostKeys == nil {
		f.hostKeys = map[string]helperapi.PrivateKey{}
	}
	f.hostKeys[r.Name] = r.HostKey
	f.created = r
	return info, nil
}
func (f *fakeMachine) ListVMs(ctx context.Context) ([]helperapi.VMInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noLibvirt {
		return nil, errors.New("connect to libvirtd at /run/libvirt/libvirt-sock: no such file or directory")
	}
	var out []helperapi.VMInfo
	for _, v := range f.vms {
		out = append(out, v)
	}
	return out, nil
}
func (f *fakeMachine) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vms[a.Name]; !ok {
		return helperapi.VMActionResult{}, fmt.Errorf("no vm %q on this machine", a.Name)
	}
	if a.Action == "remove" {
		delete(f.vms, a.Name)
	}
	return helperapi.VMActionResult{}, nil
}

// fakeLink connects to a fakeMachine.
type fakeLink struct {
	m   *fakeMachine
	via Route
}

func (l *fakeLink) Helper(ctx context.Context) (Helper, error) { return l.m, nil }
func (l *fakeLink) Console(ctx context.Context, vm string, in io.Reader, out io.Writer) error {
	return nil
}
func (l *fakeLink) Upload(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) error {
	f.SHA256 = strings.Repeat("ab", 32)
	return nil
}
func (l *fakeLink) Via() Route   { return l.via }
func (l *fakeLink) Close() error { return nil }

type fakeConnector struct {
	machines map[string]*fakeMachine // by address
	down     map[string]bool
	fail     map[string]error // a machine reached but not usable (host key, login)
}

func (c *fakeConnector) Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	fm, ok := c.machines[m.Address]
	if !ok || c.down[m.Address] {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	if err := c.fail[m.Address]; err != nil {
		return nil, err
	}
	return &fakeLink{m: fm, via: Route{Addr: m.Address}}, nil
}

const listTimeoutForTests = 5 * time.Second

func newFakeCloud(t *testing.T, n int) (*Cloud, *fakeConnector) {
	fc := &fakeConnector{machines: map[string]*fakeMachine{}, down: map[string]bool{}}
	for i := 1; i <= n; i++ {
		addr := fmt.Sprintf("192.0.2.%d", i)
		fc.machines[addr] = &fakeMachine{name: fmt.Sprintf("m%d", i), addrs: []string{addr},
			key: testbed.Key(byte('a' + i)), vms: map[string]helperapi.VMInfo{}}
	}
	return New(filepath.Join(t.TempDir(), "inventory.yaml"), fc, nil), fc
}

func addAll(t *testing.T, c *Cloud, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if _, _, err := c.AddMachine(context.Background(), NewMachine{Name: fmt.Sprintf("m%d", i),
			Address: fmt.Sprintf("192.0.2.%d", i)}, Trust{AcceptNew: true}, nil); err != nil {
			t.Fatalf("add m%d: %v", i, err)
		}
	}
}

// newWebCloud is a fake cloud of n machines, all added, with network blue
// on every one and VM web on machine on.
func newWebCloud(t *testing.T, n int, on string) (*Cloud, *fakeConnector) {
	t.Helper()
	ctx := context.Background()
	c, fc := newFakeCloud(t, n)
	addAll(t, c, n)
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVM(ctx, NewVM{Name: "web", Machine: on, Network: "blue", Image: "debian-12"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return c, fc
}

// goAway makes machine mi of a fake cloud stop answering, and the cloud
// forget it was ever reached.
func goAway(c *Cloud, fc *fakeConnector, i int) {
	fc.down[fmt.Sprintf("192.0.2.%d", i)] = true
	c.forget(fmt.Sprintf("m%d", i))
}

func TestAddMachinesMakesAMesh(t *testing.T) {
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	inv, err := c.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Machines) != 3 || inv.Machines[2].MeshIP != netip.MustParseAddr("10.99.0.3") || inv.Machines[0].NAT {
		t.Fatalf("inventory machines = %+v", inv.Machines)
	}
	for addr, m := range fc.machines {
		if m.spec == nil || len(m.spec.Peers) != 2 {
			t.Errorf("machine at %s should peer with the other two: %+v", addr, m.spec)
		}
	}
	if _, _, err := c.AddMachine(context.Background(), NewMachine{Name: "m1", Address: "192.0.2.9"}, Trust{}, nil); err == nil ||
		!strings.Contains(err.Error(), "already in the cloud") {
		t.Errorf("adding a name twice: %v", err)
	}
}

// The machine being added must take its spec; when it fails, nothing is
// recorded and no other machine was touched.
func TestAddMachineFailureLeavesNothing(t *testing.T) {
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 2)
	before := map[string]int{}
	for a, m := range fc.machines {
		before[a] = m.applies
	}
	sums := fileSums(t, c.path)
	fc.machines["192.0.2.3"].halfApply = errors.New("netlink: operation not permitted")
	_, _, err := c.AddMachine(context.Background(), NewMachine{Name: "m3", Address: "192.0.2.3"}, Trust{AcceptNew: true}, nil)
	var me MachineErrors
	if !errors.As(err, &me) || me["m3"] == nil || !strings.Contains(err.Error(), "machine m3: netlink") {
		t.Fatalf("a failure on m3 should be reported for m3: %v", err)
	}
	if fileSums(t, c.path) != sums {
		t.Errorf("the failed add changed the inventory or its .bak")
	}
	for a, m := range fc.machines {
		if a != "192.0.2.3" && m.applies != before[a] {
			t.Errorf("%s was given the half-added machine", a)
		}
	}
	if fc.machines["192.0.2.3"].spec != nil {
		t.Errorf("m3 kept a spec after a failed add")
	}
	// Running the same command again converges.
	if _, _, err := c.AddMachine(context.Background(), NewMachine{Name: "m3", Address: "192.0.2.3"}, Trust{AcceptNew: true}, nil); err != nil {
		t.Fatalf("second try: %v", err)
	}
	if got := len(peersOf(fc.machines["192.0.2.1"])); got != 2 {
		t.Errorf("m1 has %d peers after the second try, want 2", got)
	}
}

// fileSums is the sha256 of the inventory and its .bak ("-" for a file
// that is not there).
func fileSums(t *testing.T, path string) string {
	t.Helper()
	var out string
	for _, p := range []string{path, path + ".bak"} {
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			out += "- "
		case err != nil:
			t.Fatal(err)
		default:
			out += fmt.Sprintf("%x ", sha256.Sum256(b))
		}
	}
	return out
}

func peersOf(m *fakeMachine) []helperapi.Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.spec == nil {
		return nil
	}
	return m.spec.Peers
}

func TestNATDetected(t *testing.T) {
	c, fc := newFakeCloud(t, 2)
	fc.machines["192.0.2.2"].addrs = []string{"192.168.100.2"} // reached through a port forward
	addAll(t, c, 2)
	inv, _ := c.Inventory()
	if m, _ := inv.Machine("m2"); !m.NAT {
		t.Errorf("m2 is reached at an address it does not have: it is behind NAT")
	}
	if p := peersOf(fc.machines["192.0.2.1"]); p[0].Endpoint != "" {
		t.Errorf("m1 should not dial m2 behind NAT: %+v", p)
	}
}

func TestNetworksAndVMs(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	n, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue", Machines: []string{"m1", "m2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.ID != 1 || n.Subnet.Bits() != 24 || n.Tunnel != "auto" {
		t.Errorf("network = %+v", n)
	}
	if s := fc.machines["192.0.2.1"].spec; len(s.Networks) != 1 || s.Networks[0].Peers[0] != "m2" {
		t.Errorf("m1's networks = %+v", s.Networks)
	}
	if s := fc.machines["192.0.2.3"].spec; len(s.Networks) != 0 {
		t.Errorf("m3 is not a member: %+v", s.Networks)
	}
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "red", Subnet: n.Subnet}, nil); err == nil ||
		!strings.Contains(err.Error(), "overlap") {
		t.Errorf("an overlapping subnet: %v", err)
	}

	v, err := c.CreateVM(ctx, NewVM{Name: "web", Machine: "m1", Network: "blue", Image: "debian-12", CPUs: 1, MemoryMiB: 256}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.IP != n.Subnet.Addr().Next().Next().String() || v.State != "running" {
		t.Errorf("vm = %+v, want the first free address after the gateway", v)
	}
	if _, err := c.CreateVM(ctx, NewVM{Name: "db", Machine: "m3", Network: "blue", Image: "debian-12"}, nil, nil); err == nil ||
		!strings.Contains(err.Error(), `network "blue" is not on machine "m3"`) {
		t.Errorf("a VM on a machine outside its network: %v", err)
	}
	// A VM the machine refuses leaves no allocation behind.
	fc.machines["192.0.2.2"].vms["dup"] = helperapi.VMInfo{Name: "dup"}
	if _, err := c.CreateVM(ctx, NewVM{Name: "dup", Machine: "m2", Network: "blue", Image: "debian-12"}, nil, nil); err == nil {
		t.Error("the machine refused the VM but CreateVM succeeded")
	}
	inv, _ := c.Inventory()
	if _, ok := inv.VM("dup"); ok {
		t.Error("a refused VM kept its address in the inventory")
	}
	delete(fc.machines["192.0.2.2"].vms, "dup")
	if _, err := c.RemoveNetwork(ctx, "blue", nil); err == nil || !strings.Contains(err.Error(), "web") {
		t.Errorf("removing a network with VMs: %v", err)
	}
	vms, err := c.VMs(ctx, listTimeoutForTests)
	if err != nil || len(vms) != 1 || vms[0].Machine != "m1" {
		t.Errorf("vms = %+v, %v", vms, err)
	}
	if _, err := c.VMAction(ctx, "web", "remove", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveNetwork(ctx, "blue", nil); err != nil {
		t.Fatal(err)
	}
	if s := fc.machines["192.0.2.1"].spec; len(s.Networks) != 0 {
		t.Errorf("m1 kept blue: %+v", s.Networks)
	}
}

func TestRemoveMachine(t *testing.T) {
	ctx := context.Background()
	c, fc := newWebCloud(t, 3, "m3")
	if _, err := c.RemoveMachine(ctx, "m3", false, nil); err != nil {
		t.Fatal(err)
	}
	if fc.machines["192.0.2.3"].spec != nil || len(fc.machines["192.0.2.3"].vms) != 0 {
		t.Errorf("m3 was not torn down")
	}
	inv, _ := c.Inventory()
	if len(inv.Machines) != 2 || len(inv.VMs) != 0 || len(inv.Networks[0].Machines) != 2 {
		t.Errorf("inventory after remove: %+v", inv)
	}
	if p := peersOf(fc.machines["192.0.2.1"]); len(p) != 1 {
		t.Errorf("m1 still peers with m3: %+v", p)
	}
}

// A machine without libvirtd (networks only) is torn down and removed when
// the cloud has no VM on it; with one, it is refused and stays whole.
func TestRemoveMachineWithoutLibvirt(t *testing.T) {
	ctx := context.Background()
	c, fc := newWebCloud(t, 3, "m2")
	fc.machines["192.0.2.2"].noLibvirt = true
	if _, err := c.RemoveMachine(ctx, "m2", false, nil); err == nil || !strings.Contains(err.Error(), "list its VMs") {
		t.Fatalf("remove m2, which has a VM the helper cannot list: %v, want refused", err)
	}
	if fc.machines["192.0.2.2"].spec == nil {
		t.Fatal("the refused remove tore m2 down")
	}
	fc.machines["192.0.2.3"].noLibvirt = true
	var steps []string
	if _, err := c.RemoveMachine(ctx, "m3", false, func(s Step) { steps = append(steps, s.Text) }); err != nil {
		t.Fatalf("remove m3, no VM on it and no libvirtd: %v", err)
	}
	if fc.machines["192.0.2.3"].spec != nil {
		t.Error("m3 was not torn down")
	}
	if !slices.ContainsFunc(steps, func(s string) bool { return strings.Contains(s, "cannot be listed") }) {
		t.Errorf("steps %q do not say the VMs could not be listed", steps)
	}
}

func TestMachineStatus(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	c.forget("m2")
	fc.down["192.0.2.2"] = true
	ms, err := c.Machines(ctx, listTimeoutForTests)
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Status != StatusOnline || ms[1].Status != StatusOffline || !strings.Contains(ms[1].Problem, "refused") {
		t.Errorf("status = %+v", ms)
	}
}

// A bad value is refused before anything moves: the inventory and its
// .bak stay byte-identical, and no VM reaches a machine.
func TestCreateVMRefusesBadInputFirst(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue", Machines: []string{"m1", "m2"}}, nil); err != nil {
		t.Fatal(err)
	}
	sums := func() string { return fileSums(t, c.path) }
	before := sums()
	ok := NewVM{Name: "web", Machine: "m1", Network: "blue", Image: "debian-12"}
	for _, tt := range []struct {
		name   string
		change func(*NewVM)
		want   string
	}{
		{"trailing dash", func(v *NewVM) { v.Name = "web-" }, `vm name "web-"`},
		{"upper case", func(v *NewVM) { v.Name = "Web" }, `vm name "Web"`},
		{"path", func(v *NewVM) { v.Name = "../x" }, `vm name "../x"`},
		{"too little memory", func(v *NewVM) { v.MemoryMiB = 10 }, "10 MiB of memory: want at least 64"},
		{"too many CPUs", func(v *NewVM) { v.CPUs = 65 }, "65 CPUs: want 1 to 64"},
		{"unknown image", func(v *NewVM) { v.Image = "debian-99" }, `unknown catalog image "debian-99"`},
		{"bad network name", func(v *NewVM) { v.Network = "Blue" }, `network name "Blue"`},
		{"bad machine name", func(v *NewVM) { v.Machine = "m1-" }, `machine name "m1-"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nv := ok
			tt.change(&nv)
			_, err := c.CreateVM(ctx, nv, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CreateVM = %v, want an error saying %q", err, tt.want)
			}
			if after := sums(); after != before {
				t.Fatal("the refused VM changed the inventory or its .bak")
			}
			for _, m := range fc.machines {
				if len(m.vms) != 0 {
					t.Fatalf("a refused VM reached machine %s: %v", m.name, m.vms)
				}
			}
		})
	}
	// The control: the good values make the VM, and the checks above
	// would have seen that.
	if _, err := c.CreateVM(ctx, ok, nil, nil); err != nil {
		t.Fatal(err)
	}
	if sums() == before || len(fc.machines["192.0.2.1"].vms) != 1 {
		t.Fatal("a VM made no change the checks above could see")
	}
}

// A machine whose apply fails part-way stays on its previous spec and is
// behind; the change holds for the others and is recorded, and a sync
// catches the machine up once the cause is gone.
func TestFailedApplyIsBehind(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	fc.machines["192.0.2.2"].halfApply = errors.New(`add gretap "btgt3-2": operation not supported`)
	_, out, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue", Machines: []string{"m1", "m2"}}, nil)
	if err != nil {
		t.Fatalf("CreateNetwork = %v; want it recorded with m2 behind", err)
	}
	if len(out.Behind) != 1 || out.Behind[0].Machine != "m2" || out.Behind[0].Away ||
		!strings.Contains(out.Behind[0].Err.Error(), "operation not supported") || !slices.Equal(out.Applied, []string{"m1"}) {
		t.Fatalf("outcome = %+v, want m1 applied and m2 behind with its error", out)
	}
	if s := fc.machines["192.0.2.2"].spec; s == nil || len(s.Networks) != 0 {
		t.Errorf("m2 holds %+v after its failed apply, want its previous spec (no networks)", s)
	}
	if s := fc.machines["192.0.2.1"].spec; len(s.Networks) != 1 {
		t.Errorf("m1 lacks blue: %+v", s.Networks)
	}
	inv, _ := c.Inventory()
	m2, _ := inv.Machine("m2")
	if len(inv.Networks) != 1 || !inv.Pending(*m2) {
		t.Fatalf("inventory: networks %+v, m2 pending %v; want blue recorded and m2 pending", inv.Networks, inv.Pending(*m2))
	}
	out, err = c.Sync(ctx, nil, nil)
	if err != nil || !slices.Equal(out.Applied, []string{"m2"}) {
		t.Fatalf("Sync = %+v, %v; want m2 caught up", out, err)
	}
	if s := fc.machines["192.0.2.2"].spec; len(s.Networks) != 1 {
		t.Errorf("m2 lacks blue after sync: %+v", s.Networks)
	}
}
