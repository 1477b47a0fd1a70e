package cloud

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
	"github.com/sourcegraph/jsonrpc2"
)

// awayConnector is fakeConnector with machines that fail to connect as a
// real dial does, and helpers that can be held in CreateVM.
type awayConnector struct {
	*fakeConnector
	away map[string]error // by address
	// gate, if set, holds every CreateVM until it is closed; entered
	// gets each VM's name as it arrives.
	gate    chan struct{}
	entered chan string
}

func (c *awayConnector) Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	if err := c.away[m.Address]; err != nil {
		return nil, err
	}
	l, err := c.fakeConnector.Connect(ctx, m, trust, steps)
	if err != nil || c.gate == nil {
		return l, err
	}
	return gatedLink{l.(*fakeLink), c}, nil
}

type gatedLink struct {
	*fakeLink
	c *awayConnector
}

func (l gatedLink) Helper(ctx context.Context) (Helper, error) { return gatedHelper{l.m, l.c}, nil }

type gatedHelper struct {
	*fakeMachine
	c *awayConnector
}

func (h gatedHelper) CreateVM(ctx context.Context, r helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	h.c.entered <- r.Name
	<-h.c.gate
	return h.fakeMachine.CreateVM(ctx, r, progress)
}

// dialError is what remote.Dial returns for a machine that does not
// answer: the connect's *net.OpError, wrapped.
func dialError(addr string, err error) error {
	return fmt.Errorf("connect to %s:22: %w", addr,
		&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 22}, Err: err})
}

// vmCloud is three machines with network blue on m1 and m2, reached
// through an awayConnector.
func vmCloud(t *testing.T) (*Cloud, *awayConnector) {
	t.Helper()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	if _, _, err := c.CreateNetwork(context.Background(), NewNetwork{Name: "blue", Machines: []string{"m1", "m2"}}, nil); err != nil {
		t.Fatal(err)
	}
	ac := &awayConnector{fakeConnector: fc, away: map[string]error{}}
	return New(c.path, ac, nil), ac
}

func noReservations(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path + ".reservations"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a reservation stayed behind: %v", err)
	}
}

var web = NewVM{Name: "web", Machine: "m2", Network: "blue", Image: "debian-12"}

// A vm create on a machine that does not answer fails at once with an
// error naming the machine, the reason and what to do, and leaves the
// inventory and its .bak byte for byte as they were. A machine that
// answers and refuses the login is not "away".
func TestCreateVMOnAwayMachine(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantAway bool
		want     string
	}{
		{"dial timeout", dialError("192.0.2.2", os.ErrDeadlineExceeded), true,
			"machine m2 is away (connect to 192.0.2.2:22: dial tcp 192.0.2.2:22: i/o timeout): vm create needs it; " +
				"try again when it is back, or pick another machine with --machine"},
		{"refused", dialError("192.0.2.2", syscall.ECONNREFUSED), true, "machine m2 is away (connect to 192.0.2.2:22: dial tcp 192.0.2.2:22: connection refused)"},
		{"connect timeout", fmt.Errorf("connect to m2: %w", context.DeadlineExceeded), true, "machine m2 is away (connect to m2: context deadline exceeded)"},
		{"jump host cannot reach it", fmt.Errorf("reach m2 through jump host j:22: %w", &ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: "No route to host"}), true,
			"machine m2 is away (reach m2 through jump host j:22: ssh: rejected: connect failed (No route to host))"},
		{"login refused", &remote.AuthError{User: "root", Host: "192.0.2.2:22"}, false, `machine "m2": log in to 192.0.2.2:22 as "root": refused`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ac := vmCloud(t)
			before := fileSums(t, c.path)
			ac.away["192.0.2.2"] = tt.err
			_, err := c.CreateVM(context.Background(), web, nil, nil)
			var away *AwayError
			if errors.As(err, &away) != tt.wantAway || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CreateVM = %v\nwant an error saying %q (away: %v)", err, tt.want, tt.wantAway)
			}
			if tt.wantAway && (away.Machine != "m2" || !errors.Is(err, errors.Unwrap(tt.err))) {
				t.Errorf("AwayError %+v: want machine m2 and the reason wrapped", away)
			}
			if fileSums(t, c.path) != before {
				t.Error("the failed create changed the inventory or its .bak")
			}
			noReservations(t, c.path)
			// Once the machine is back, the same command works.
			delete(ac.away, "192.0.2.2")
			if _, err := c.CreateVM(context.Background(), web, nil, nil); err != nil {
				t.Fatalf("again, with the machine back: %v", err)
			}
		})
	}
}

// A VM the machine's helper refuses leaves the inventory and its .bak
// byte for byte as they were, and the error names the machine.
func TestCreateVMRefusedByTheMachine(t *testing.T) {
	c, ac := vmCloud(t)
	ac.machines["192.0.2.2"].vms["web"] = helperapi.VMInfo{Name: "web"} // made by hand there
	before := fileSums(t, c.path)
	_, err := c.CreateVM(context.Background(), web, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `machine "m2": vm "web" already exists`) {
		t.Fatalf("CreateVM = %v, want the machine's refusal, naming it", err)
	}
	var away *AwayError
	if errors.As(err, &away) {
		t.Errorf("a machine that answered is not away: %v", err)
	}
	if fileSums(t, c.path) != before {
		t.Error("the refused create changed the inventory or its .bak")
	}
	noReservations(t, c.path)
}

// An explicit address the network cannot give a VM (its gateway, network
// or broadcast address) is refused by the one rule before anything moves:
// no reservation, no call to the machine, the inventory untouched.
func TestCreateVMRefusesReservedAddresses(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"10.100.0.1", `vm "web": address 10.100.0.1: network "blue"'s gateway`},
		{"10.100.0.0", `vm "web": address 10.100.0.0: network "blue"'s network address`},
		{"10.100.0.255", `vm "web": address 10.100.0.255: network "blue"'s broadcast address`},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			c, ac := vmCloud(t)
			before := fileSums(t, c.path)
			nv := web
			nv.Address = netip.MustParseAddr(tt.addr)
			_, err := c.CreateVM(context.Background(), nv, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CreateVM at %s = %v, want an error saying %q", tt.addr, err, tt.want)
			}
			if fileSums(t, c.path) != before {
				t.Error("the refused create changed the inventory or its .bak")
			}
			noReservations(t, c.path)
			if n := len(ac.machines["192.0.2.2"].vms); n != 0 {
				t.Errorf("the machine got %d VMs, want none", n)
			}
		})
	}
	// The control: the next address is fine, and the VM is told the
	// gateway as its default route and name server.
	c, ac := vmCloud(t)
	nv := web
	nv.Address = netip.MustParseAddr("10.100.0.2")
	if _, err := c.CreateVM(context.Background(), nv, nil, nil); err != nil {
		t.Fatalf("CreateVM at 10.100.0.2: %v", err)
	}
	if r := ac.machines["192.0.2.2"].created; r.Address != "10.100.0.2" || r.Gateway != "10.100.0.1" || !slices.Equal(r.DNS, []string{"10.100.0.1"}) {
		t.Errorf("the machine was asked for %+v; want address 10.100.0.2, gateway and name server 10.100.0.1", r)
	}
}

// A create that succeeds records the VM once, keeps the file's mode, and
// it reaches the machines' copies of the desired state as a generation.
func TestCreateVMRecordsOnce(t *testing.T) {
	c, _ := vmCloud(t)
	if err := os.Chmod(c.path, 0o644); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVM(context.Background(), web, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := c.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.VMs) != 1 || inv.VMs[0].Name != "web" || inv.VMs[0].Address.String() != v.IP {
		t.Errorf("inventory VMs = %+v, want web once at %s", inv.VMs, v.IP)
	}
	// Two writes: the VM recorded, then the generation that carries it
	// to the machines' copies; the .bak is the first.
	bak, err := inventory.Load(c.path + ".bak")
	if err != nil || len(bak.VMs) != 1 || bak.Generation != inv.Generation-1 {
		t.Errorf(".bak = %+v, %v; want the VM recorded one generation before the inventory's %d", bak, err, inv.Generation)
	}
	if string(old) == "" {
		t.Fatal("no inventory before the create")
	}
	if fi, err := os.Stat(c.path); err != nil || fi.Mode() != 0o644 {
		t.Errorf("inventory: %v, %v; want its mode 0644 kept", fi, err)
	}
	noReservations(t, c.path)
}

// Two creates at once get different addresses: while both are on their
// machines, their reservations (not the inventory) keep them apart.
func TestCreateVMConcurrent(t *testing.T) {
	c, ac := vmCloud(t)
	ac.gate, ac.entered = make(chan struct{}), make(chan string, 2)
	before := fileSums(t, c.path)
	var wg sync.WaitGroup
	got := make([]VMStatus, 2)
	errs := make([]error, 2)
	for i, nv := range []NewVM{{Name: "a", Machine: "m1"}, {Name: "b", Machine: "m2"}} {
		nv.Network, nv.Image = "blue", "debian-12"
		wg.Go(func() { got[i], errs[i] = c.CreateVM(context.Background(), nv, nil, nil) })
	}
	<-ac.entered
	<-ac.entered
	if fileSums(t, c.path) != before {
		t.Error("the inventory changed before any VM was made")
	}
	close(ac.gate)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got[0].IP == got[1].IP {
		t.Fatalf("both VMs got %s", got[0].IP)
	}
	inv, _ := c.Inventory()
	if len(inv.VMs) != 2 {
		t.Errorf("inventory VMs = %+v, want both", inv.VMs)
	}
	// Each VM was published under the change lock: the machines hold the
	// inventory's generation, and their copy of the cloud has both VMs.
	for _, fm := range ac.machines {
		fm.mu.Lock()
		spec := fm.spec
		fm.mu.Unlock()
		if spec == nil || spec.Generation != int64(inv.Generation) || spec.Desired == nil || len(spec.Desired.VMs) != 2 {
			t.Errorf("%s holds %+v; want generation %d with both VMs", fm.name, spec, inv.Generation)
		}
	}
	noReservations(t, c.path)
}

// A change made from an inventory that moved before the change began
// (another butter, a VM recorded alongside) moves nothing on the machines
// and records nothing.
func TestChangeFromAMovedInventoryMovesNothing(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	prev, err := c.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	next := clone(prev)
	next.Networks = append(next.Networks, inventory.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.100.0.0/24"),
		Tunnel: "auto", Machines: []string{"m1", "m2"}})
	// Meanwhile another butter records a VM-less change of its own.
	if err := inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
		inv.Machines[0].Accel = "tcg"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	applies := fc.machines["192.0.2.1"].applies
	sums := fileSums(t, c.path)
	if _, err := c.change(ctx, prev, next, nil, nil); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("change from a moved inventory = %v, want nothing changed", err)
	}
	if fc.machines["192.0.2.1"].applies != applies || fileSums(t, c.path) != sums {
		t.Error("a change from a moved inventory applied on a machine or wrote the inventory")
	}
	// The control: made again from the inventory as it is, it takes.
	prev, _ = c.Inventory()
	next = clone(prev)
	next.Networks = append(next.Networks, inventory.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.100.0.0/24"),
		Tunnel: "auto", Machines: []string{"m1", "m2"}})
	if _, err := c.change(ctx, prev, next, nil, nil); err != nil {
		t.Fatalf("the same change from the current inventory: %v", err)
	}
}

// vm start, stop, remove and console on a machine that does not answer
// fail at once, naming it and what to do, and change nothing.
func TestVMVerbsOnAwayMachine(t *testing.T) {
	ctx := context.Background()
	c, ac := vmCloud(t)
	if _, err := c.CreateVM(ctx, web, nil, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	ac.away["192.0.2.2"] = dialError("192.0.2.2", os.ErrDeadlineExceeded)
	before := fileSums(t, c.path)
	const reason = "(connect to 192.0.2.2:22: dial tcp 192.0.2.2:22: i/o timeout)"
	for _, tt := range []struct {
		verb string
		run  func() error
		want string
	}{
		{"start", func() error { _, err := c.VMAction(ctx, "web", "start", 0); return err },
			"machine m2 is away " + reason + ": vm start needs it; vm web is there: try again when it is back"},
		{"stop", func() error { _, err := c.VMAction(ctx, "web", "stop", 0); return err },
			"machine m2 is away " + reason + ": vm stop needs it; vm web is there: try again when it is back"},
		{"remove", func() error { _, err := c.VMAction(ctx, "web", "remove", 0); return err },
			"machine m2 is away " + reason + ": vm remove needs it; try again when it is back, or take the machine and its VMs out of the cloud with `butter machine remove m2`"},
		{"console", func() error { return c.Console(ctx, "web", strings.NewReader(""), new(strings.Builder)) },
			"machine m2 is away " + reason + ": vm console needs it; try again when it is back"},
	} {
		t.Run(tt.verb, func(t *testing.T) {
			err := tt.run()
			var away *AwayError
			if !errors.As(err, &away) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("vm %s = %v\nwant an *AwayError starting %q", tt.verb, err, tt.want)
			}
			if fileSums(t, c.path) != before {
				t.Error("the inventory or its .bak changed")
			}
		})
	}
}

// vm list: machines that do not answer are named, the VMs the inventory
// has on them are listed as unknown, and only when none answers is it
// ErrNoAnswer; a recorded VM its answering machine lacks is missing.
func TestVMsWithMachinesAway(t *testing.T) {
	ctx := context.Background()
	down := func(addr string) error { return dialError(addr, syscall.ECONNREFUSED) }
	tests := []struct {
		name       string
		away       []string // addresses
		lost       string   // a VM the machine lost
		want       string   // name machine state, …
		wantAway   []string // machines named in the error
		wantNoneOK bool     // ErrNoAnswer
	}{
		{name: "all answer", want: "db m1 running, web m2 running"},
		{name: "m2 away", away: []string{"192.0.2.2"}, want: "db m1 running, web m2 unknown", wantAway: []string{"m2"}},
		{name: "m3 away, no VM there", away: []string{"192.0.2.3"}, want: "db m1 running, web m2 running", wantAway: []string{"m3"}},
		{name: "all away", away: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, want: "db m1 unknown, web m2 unknown",
			wantAway: []string{"m1", "m2", "m3"}, wantNoneOK: true},
		{name: "a VM its machine lost", lost: "web", want: "db m1 running, web m2 missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ac := vmCloud(t)
			for _, nv := range []NewVM{{Name: "db", Machine: "m1"}, web} {
				nv.Network, nv.Image = "blue", "debian-12"
				if _, err := c.CreateVM(ctx, nv, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			for _, a := range tt.away {
				ac.away[a] = down(a)
			}
			if tt.lost != "" {
				delete(ac.machines["192.0.2.2"].vms, tt.lost)
			}
			vms, err := c.VMs(ctx, listTimeoutForTests)
			var got []string
			for _, v := range vms {
				got = append(got, v.Name+" "+v.Machine+" "+v.State)
			}
			if strings.Join(got, ", ") != tt.want {
				t.Errorf("VMs = %s, want %s", strings.Join(got, ", "), tt.want)
			}
			var me MachineErrors
			errors.As(err, &me)
			names := slices.Sorted(maps.Keys(me))
			if !slices.Equal(names, tt.wantAway) || (len(tt.wantAway) == 0) != (err == nil) {
				t.Errorf("error %v: want machines %v named", err, tt.wantAway)
			}
			if errors.Is(err, ErrNoAnswer) != tt.wantNoneOK {
				t.Errorf("error %v: ErrNoAnswer %v, want %v", err, errors.Is(err, ErrNoAnswer), tt.wantNoneOK)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"dial timeout", dialError("192.0.2.1", os.ErrDeadlineExceeded), true},
		{"refused", dialError("192.0.2.1", syscall.ECONNREFUSED), true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "m1.invalid", IsNotFound: true}, true},
		{"deadline", fmt.Errorf("connect: %w", context.DeadlineExceeded), true},
		{"connection closed", fmt.Errorf("list vms: %w", remote.ErrClosed), true},
		{"protocol connection dropped mid-call", fmt.Errorf("helper.apply: %w", jsonrpc2.ErrClosed), true},
		{"no route from a jump host", &ssh.OpenChannelError{Reason: ssh.ConnectionFailed}, true},
		{"a jump host forbids it", &ssh.OpenChannelError{Reason: ssh.Prohibited}, false},
		{"host key changed", fmt.Errorf("ssh: %w", remote.ErrHostKeyChanged), false},
		{"login refused", &remote.AuthError{User: "root", Host: "m1:22"}, false},
		{"cancelled", context.Canceled, false},
		{"the helper's error", errors.New(`vm "web" already exists`), false},
	} {
		if got := unreachable(tt.err); got != tt.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// A VM made on its machine that the inventory will no longer take (its
// network went meanwhile) is removed from the machine again, and the
// inventory stays as the other change left it.
func TestCreateVMUnmadeWhenNotRecorded(t *testing.T) {
	ctx := context.Background()
	c, ac := vmCloud(t)
	ac.gate, ac.entered = make(chan struct{}), make(chan string, 1)
	done := make(chan error)
	go func() {
		_, err := c.CreateVM(ctx, web, nil, nil)
		done <- err
	}()
	<-ac.entered
	other := New(c.path, ac.fakeConnector, nil)
	if _, err := other.RemoveNetwork(ctx, "blue", nil); err != nil {
		t.Fatal(err)
	}
	before := fileSums(t, c.path)
	close(ac.gate)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), `vm "web" not created: the inventory would not record it, so it was removed from machine "m2" again`) {
		t.Fatalf("CreateVM = %v, want it undone", err)
	}
	if len(ac.machines["192.0.2.2"].vms) != 0 {
		t.Errorf("the unrecorded VM stayed on m2: %v", ac.machines["192.0.2.2"].vms)
	}
	if fileSums(t, c.path) != before {
		t.Error("the failed create changed the inventory or its .bak")
	}
	noReservations(t, c.path)
}
