package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// reserveCloud is an inventory with machine alpha, network blue
// (10.100.0.0/24) on it and VM web at 10.100.0.2, saved twice so that it
// has a .bak.
func reserveCloud(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	ctx := context.Background()
	if err := Update(ctx, path, func(inv *Inventory) error {
		inv.Machines = append(inv.Machines, Machine{Name: "alpha", Address: "alpha.example.com", MeshIP: netip.MustParseAddr("10.99.0.1")})
		inv.Networks = append(inv.Networks, Network{Name: "blue", Subnet: netip.MustParsePrefix("10.100.0.0/24"), ID: 1, Machines: []string{"alpha"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := Update(ctx, path, func(inv *Inventory) error {
		inv.VMs = append(inv.VMs, VM{Name: "web", Machine: "alpha", Network: "blue", Address: netip.MustParseAddr("10.100.0.2")})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// sums is the sha256 of the inventory and of its .bak.
func sums(t *testing.T, path string) string {
	t.Helper()
	return fmt.Sprintf("%x %x", sha256.Sum256(mustRead(t, path)), sha256.Sum256(mustRead(t, path+".bak")))
}

// mustReserve reserves VM name, with an address picked for it, in the
// inventory at path, and fails the test if it cannot.
func mustReserve(t *testing.T, ctx context.Context, path, name string) *Reservation {
	t.Helper()
	r, err := Reserve(ctx, path, next(name, ""))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// next reserves VM name on blue at addr, or at the next free address if
// addr is empty.
func next(name, addr string) func(*Inventory) (VM, error) {
	return func(inv *Inventory) (VM, error) {
		v := VM{Name: name, Machine: "alpha", Network: "blue"}
		if addr != "" {
			v.Address = netip.MustParseAddr(addr)
			return v, nil
		}
		a, err := inv.NextVMAddress("blue")
		v.Address = a
		return v, err
	}
}

func readHeld(t *testing.T, path string) []held {
	t.Helper()
	hs, err := readReservations(path)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestReserveLeavesTheInventoryAlone: reserving and releasing leave the
// inventory and its .bak byte for byte as they were; reservations take
// the sidecar file, 0600, gone when the last one is.
func TestReserveLeavesTheInventoryAlone(t *testing.T) {
	ctx := context.Background()
	path := reserveCloud(t)
	before := sums(t, path)

	a := mustReserve(t, ctx, path, "db")
	if a.VM.Address.String() != "10.100.0.3" {
		t.Errorf("first reservation got %s, want 10.100.0.3 (web has .2)", a.VM.Address)
	}
	b := mustReserve(t, ctx, path, "cache")
	if b.VM.Address.String() != "10.100.0.4" {
		t.Errorf("second reservation got %s, want 10.100.0.4: db's reservation holds .3", b.VM.Address)
	}
	if fi, err := os.Stat(reservationsPath(path)); err != nil || fi.Mode() != 0o600 {
		t.Errorf("reservations file: %v, %v; want mode 0600", fi, err)
	}
	if got := sums(t, path); got != before {
		t.Error("reserving changed the inventory or its .bak")
	}
	for _, r := range []*Reservation{a, b, a} { // a second Release does nothing
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := sums(t, path); got != before {
		t.Error("releasing changed the inventory or its .bak")
	}
	if fileExists(reservationsPath(path)) {
		t.Error("the reservations file stayed with no reservation in it")
	}
}

// TestReserveRefuses: a name or address recorded or held, a VM the
// inventory would not take and fn's own error reserve nothing.
func TestReserveRefuses(t *testing.T) {
	ctx := context.Background()
	path := reserveCloud(t)
	held := mustReserve(t, ctx, path, "db")
	defer held.Release(ctx)
	before, heldBefore := sums(t, path), mustRead(t, reservationsPath(path))
	pid := fmt.Sprintf("butter process %d on %s", os.Getpid(), hostname())
	tests := []struct {
		name string
		fn   func(*Inventory) (VM, error)
		want string
	}{
		{"name recorded", next("web", ""), `vm "web" exists; pick another name or remove it first`},
		{"name held", next("db", ""), `vm "db" is being created by ` + pid},
		{"address recorded", next("x", "10.100.0.2"), `address 10.100.0.2 is vm "web"'s`},
		{"address held", next("x", "10.100.0.3"), `address 10.100.0.3 is held for vm "db", which ` + pid},
		{"outside the subnet", next("x", "10.100.1.3"), `address 10.100.1.3: outside network "blue"'s subnet`},
		{"the gateway", next("x", "10.100.0.1"), `address 10.100.0.1: network "blue"'s gateway`},
		{"bad name", next("X", ""), `inventory: VM "X": bad name`},
		{"fn fails", func(*Inventory) (VM, error) { return VM{}, fmt.Errorf("no such image") }, "no such image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Reserve(ctx, path, tt.fn)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reserve = %+v, %v; want an error saying %q", r, err, tt.want)
			}
			if sums(t, path) != before || string(mustRead(t, reservationsPath(path))) != string(heldBefore) {
				t.Error("a refused reservation wrote something")
			}
		})
	}
}

// TestCommitRecordsOnce: Commit adds the VM to the inventory once (the
// .bak is the version before), and its reservation is gone.
func TestCommitRecordsOnce(t *testing.T) {
	ctx := context.Background()
	path := reserveCloud(t)
	old := mustRead(t, path)
	r := mustReserve(t, ctx, path, "db")
	if err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx); err != nil { // the usual deferred Release
		t.Fatal(err)
	}
	if err := r.Commit(ctx); err == nil {
		t.Error("a second Commit succeeded")
	}
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range inv.VMs {
		got = append(got, v.Name+" "+v.Address.String())
	}
	if diff := cmp.Diff([]string{"db 10.100.0.3", "web 10.100.0.2"}, got); diff != "" {
		t.Errorf("VMs (-want +got):\n%s", diff)
	}
	if string(mustRead(t, path+".bak")) != string(old) {
		t.Error(".bak is not the inventory before the commit")
	}
	if fileExists(reservationsPath(path)) {
		t.Error("the committed reservation stayed")
	}
}

// TestCommitRefusesWhatNoLongerFits: a network removed meanwhile makes
// Commit record nothing.
func TestCommitRefusesWhatNoLongerFits(t *testing.T) {
	ctx := context.Background()
	path := reserveCloud(t)
	r := mustReserve(t, ctx, path, "db")
	defer r.Release(ctx)
	if err := Update(ctx, path, func(inv *Inventory) error {
		inv.VMs, inv.Networks = nil, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := sums(t, path)
	if err := r.Commit(ctx); err == nil || !strings.Contains(err.Error(), `network "blue": no such network`) {
		t.Fatalf("Commit = %v, want the missing network", err)
	}
	if sums(t, path) != before {
		t.Error("a refused commit wrote the inventory")
	}
}

// deadPID is the ID of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestStaleReservations: a reservation of a process that is gone, or one
// older than ReservationTTL, is ignored and dropped; any other holds,
// another host's included.
func TestStaleReservations(t *testing.T) {
	now := time.Now().UTC()
	dead := deadPID(t)
	tests := []struct {
		name  string
		h     held
		holds bool
	}{
		{"a running process", held{PID: os.Getpid(), Host: hostname(), Since: now}, true},
		{"a process that is gone", held{PID: dead, Host: hostname(), Since: now}, false},
		{"too old", held{PID: os.Getpid(), Host: hostname(), Since: now.Add(-ReservationTTL - time.Minute)}, false},
		{"another host's", held{PID: dead, Host: "elsewhere.invalid", Since: now.Add(-time.Hour)}, true},
		{"another host's, too old", held{PID: dead, Host: "elsewhere.invalid", Since: now.Add(-ReservationTTL - time.Minute)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := reserveCloud(t)
			h := tt.h
			h.ID, h.Name, h.Machine, h.Network, h.Address = "old", "db", "alpha", "blue", netip.MustParseAddr("10.100.0.3")
			if err := writeReservations(path, []held{h}); err != nil {
				t.Fatal(err)
			}
			before := sums(t, path)
			r, err := Reserve(ctx, path, next("db", ""))
			switch {
			case tt.holds && err == nil:
				t.Fatalf("reserved %+v over a live reservation of the same name", r.VM)
			case tt.holds:
				r = mustReserve(t, ctx, path, "other")
				if r.VM.Address.String() != "10.100.0.4" {
					t.Errorf("got %s, which the live reservation holds", r.VM.Address)
				}
			case err != nil:
				t.Fatalf("the stale reservation blocked the name: %v", err)
			case r.VM.Address.String() != "10.100.0.3":
				t.Errorf("got %s, want 10.100.0.3, which only the stale reservation held", r.VM.Address)
			}
			ids := []string{}
			for _, x := range readHeld(t, path) {
				ids = append(ids, x.ID)
			}
			if slices.Contains(ids, "old") != tt.holds {
				t.Errorf("reservations %v: the old one should stay only if it holds", ids)
			}
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if sums(t, path) != before {
				t.Error("the inventory or its .bak changed")
			}
		})
	}
}

// TestReserveConcurrent: butters reserving at once (each with its own
// lock, as processes have) get different addresses.
func TestReserveConcurrent(t *testing.T) {
	ctx := context.Background()
	path := reserveCloud(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	for i := range 20 {
		wg.Go(func() {
			name := fmt.Sprintf("vm%d", i)
			r, err := Reserve(ctx, path, next(name, ""))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, ok := got[r.VM.Address]; ok {
				t.Errorf("%s and %s both got %s", other, name, r.VM.Address)
			}
			got[r.VM.Address] = name
		})
	}
	wg.Wait()
	if n := len(readHeld(t, path)); n != 20 {
		t.Errorf("%d reservations recorded, want 20", n)
	}
}

func TestReservationsFileUnreadable(t *testing.T) {
	path := reserveCloud(t)
	for _, data := range []string{"{not json", `{"version": 2, "reservations": []}`} {
		if err := os.WriteFile(reservationsPath(path), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Reserve(context.Background(), path, next("db", ""))
		if err == nil || !strings.Contains(err.Error(), reservationsPath(path)) || !strings.Contains(err.Error(), "remove the file") {
			t.Errorf("Reserve with %q beside the inventory: %v; want an error naming the file and what to do", data, err)
		}
	}
	var f reservationFile
	if err := json.Unmarshal([]byte(`{"version":1}`), &f); err != nil || f.Reservations != nil {
		t.Fatal("an empty reservations file should read as none")
	}
}
