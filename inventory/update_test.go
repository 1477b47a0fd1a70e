package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func addMachine(name string) func(*Inventory) error {
	return func(inv *Inventory) error {
		ip, err := inv.NextMeshIP()
		if err != nil {
			return err
		}
		inv.Machines = append(inv.Machines, Machine{Name: name, Address: name + ".example.com", MeshIP: ip})
		return nil
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUpdateCreatesAndKeepsPrevious(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "config", "butter")
	path := filepath.Join(dir, "inventory.yaml")

	if err := Update(ctx, path, addMachine("alpha")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{dir: 0o700 | fs.ModeDir, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	if fileExists(path + ".bak") {
		t.Errorf("a .bak after the first save: there was nothing before it")
	}
	first := mustRead(t, path)
	if !bytes.HasPrefix(first, []byte(header)) {
		t.Errorf("the file does not start with the header:\n%s", first)
	}

	if err := Update(ctx, path, addMachine("beta")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(mustRead(t, path+".bak"))); diff != "" {
		t.Errorf(".bak is not the previous version (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(path + ".bak"); err != nil || fi.Mode() != 0o600 {
		t.Errorf(".bak: %v, %v; want mode 0600", fi, err)
	}
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range inv.Machines {
		got = append(got, fmt.Sprintf("%s %s :%d", m.Name, m.MeshIP, m.Port))
	}
	if diff := cmp.Diff([]string{"alpha 10.99.0.1 :22", "beta 10.99.0.2 :22"}, got); diff != "" {
		t.Errorf("machines (-want +got):\n%s", diff)
	}

	// Nothing but the file, its previous version and the lock file: no
	// temporary file left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"inventory.yaml", "inventory.yaml.bak", "inventory.yaml.lock"}, names); diff != "" {
		t.Errorf("folder (-want +got):\n%s", diff)
	}
}

// TestUpdateWritesNothing: a failing change, a change that does not
// validate and no change at all leave the file and its .bak as they were.
func TestUpdateWritesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	for _, name := range []string{"alpha", "beta"} {
		if err := Update(ctx, path, addMachine(name)); err != nil {
			t.Fatal(err)
		}
	}
	before, beforeBak := mustRead(t, path), mustRead(t, path+".bak")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	errNo := errors.New("the user said no")
	tests := []struct {
		name    string
		fn      func(*Inventory) error
		wantErr string
	}{
		{"fn fails after changing", func(inv *Inventory) error {
			inv.Machines = nil
			return errNo
		}, "the user said no"},
		{"does not validate", func(inv *Inventory) error {
			inv.Machines = append(inv.Machines, Machine{Name: "alpha", Address: "x", Port: -1})
			return nil
		}, "inventory not saved: inventory " + path + ": 2 problems:\n" +
			"\tmachine \"alpha\": listed twice; give each machine one entry\n" +
			"\tmachine \"alpha\" port -1: must be between 1 and 65535"},
		{"no change", func(*Inventory) error { return nil }, ""},
		{"a change back to the same", func(inv *Inventory) error {
			m, _ := inv.Machine("alpha")
			m.Port = 2222
			m.Port = 0 // the default again
			return nil
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Update(ctx, path, tt.fn)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if tt.name == "fn fails after changing" && !errors.Is(err, errNo) {
				t.Errorf("fn's error is not returned as is: %v", err)
			}
			if !bytes.Equal(mustRead(t, path), before) || !bytes.Equal(mustRead(t, path+".bak"), beforeBak) {
				t.Errorf("the file or its .bak changed")
			}
			now, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(fi, now) {
				t.Errorf("the file was replaced")
			}
		})
	}
}

// TestUpdateFollowsSymlink: an inventory kept elsewhere through a link
// (a dotfiles repository) is updated there, and the link stays.
func TestUpdateFollowsSymlink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "dotfiles", "inventory.yaml")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Update(ctx, target, addMachine("alpha")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "inventory.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := Update(ctx, link, addMachine("beta")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", fi, err)
	}
	inv, err := Load(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Machines) != 2 {
		t.Errorf("the linked file has %d machines, want 2", len(inv.Machines))
	}
	if !fileExists(target + ".bak") {
		t.Errorf("no .bak beside the linked file")
	}
}

func TestUpdateRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inventory.yaml")
	stale := filepath.Join(dir, ".inventory.yaml.tmp-123")
	if err := os.WriteFile(stale, []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Update(context.Background(), path, addMachine("alpha")); err != nil {
		t.Fatal(err)
	}
	if fileExists(stale) {
		t.Errorf("%s left behind", stale)
	}
}

// TestUpdateLockTimeout: a held lock makes Update give up with an error
// naming the lock file and who holds it, and write nothing.
func TestUpdateLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	unlock, err := lock(context.Background(), path+".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	called := false
	err = Update(ctx, path, func(*Inventory) error { called = true; return nil })
	if err == nil || called {
		t.Fatalf("Update with the lock held: error %v, fn called %v", err, called)
	}
	want := fmt.Sprintf("inventory is in use by another butter process (pid %d): gave up waiting for the lock %s.lock after ", os.Getpid(), path)
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %q\nwant it to start %q and wrap the deadline", err, want)
	}
	if fileExists(path) {
		t.Errorf("the inventory was written without the lock")
	}
}

// network adds network prefix-i with the next free ID and subnet: an
// increment that a lost write would show as a missing network.
func network(prefix string, i int) func(*Inventory) error {
	return func(inv *Inventory) error {
		id, err := inv.NextNetworkID()
		if err != nil {
			return err
		}
		subnet, err := inv.SuggestSubnet()
		if err != nil {
			return err
		}
		inv.Networks = append(inv.Networks, Network{Name: fmt.Sprintf("%s-%d", prefix, i), Subnet: subnet, ID: id})
		return nil
	}
}

func checkNetworks(t *testing.T, path string, prefixes []string, each int) {
	t.Helper()
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range inv.Networks {
		have[n.Name] = true
	}
	var missing []string
	for _, p := range prefixes {
		for i := range each {
			if name := fmt.Sprintf("%s-%d", p, i); !have[name] {
				missing = append(missing, name)
			}
		}
	}
	if len(inv.Networks) != len(prefixes)*each || len(missing) > 0 {
		t.Errorf("%d networks, want %d; lost writes: %v", len(inv.Networks), len(prefixes)*each, missing)
	}
}

// TestUpdateConcurrentGoroutines: two goroutines, 50 changes each, none
// lost (each Update opens its own lock file description, so flock
// serialises them as it would two processes).
func TestUpdateConcurrentGoroutines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, p := range []string{"a", "b"} {
		wg.Go(func() {
			for i := range 50 {
				if err := Update(context.Background(), path, network(p, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkNetworks(t, path, []string{"a", "b"}, 50)
}

// TestUpdateConcurrentProcesses: two processes (this test binary run
// again as TestHelperProcess), 50 changes each, none lost.
func TestUpdateConcurrentProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	var cmds []*exec.Cmd
	for _, p := range []string{"p", "q"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "INVENTORY_HELPER_PATH="+path, "INVENTORY_HELPER_PREFIX="+p, "INVENTORY_HELPER_COUNT=50")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper %s:\n%s", p, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	checkNetworks(t, path, []string{"p", "q"}, 50)
}

// TestHelperProcess is the other butter of TestUpdateConcurrentProcesses;
// it does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("INVENTORY_HELPER_PATH")
	if path == "" {
		t.Skip("run by TestUpdateConcurrentProcesses")
	}
	n, err := strconv.Atoi(os.Getenv("INVENTORY_HELPER_COUNT"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := Update(context.Background(), path, network(os.Getenv("INVENTORY_HELPER_PREFIX"), i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		name      string
		inventory string
		xdg       string
		home      string
		want      string
	}{
		{name: "BUTTER_INVENTORY wins", inventory: "/srv/lab.yaml", xdg: "/x", home: "/home/op", want: "/srv/lab.yaml"},
		{name: "XDG_CONFIG_HOME", xdg: "/x", home: "/home/op", want: "/x/butter/inventory.yaml"},
		{name: "relative XDG_CONFIG_HOME is ignored", xdg: "x", home: "/home/op", want: "/home/op/.config/butter/inventory.yaml"},
		{name: "home", home: "/home/op", want: "/home/op/.config/butter/inventory.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BUTTER_INVENTORY", tt.inventory)
			t.Setenv("XDG_CONFIG_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := Path()
			if err != nil || got != tt.want {
				t.Errorf("Path() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
