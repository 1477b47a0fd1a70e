package cloud

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// A VM made from a disk image gets a host key made by the operator: the
// private half goes to the machine in the request and nowhere else, the
// public half into the VMs' known_hosts under the VM's name, and removing
// the VM drops the line. A kernel-boot VM (no cloud-init, no sshd of
// butter's making) gets none.
func TestVMHostKeyKeptAndDropped(t *testing.T) {
	ctx := context.Background()
	c, ac := vmCloud(t)
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	for _, f := range []string{kernel, initrd} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, nv := range []NewVM{web, {Name: "db", Machine: "m1", Network: "blue", Image: "debian-12"},
		{Name: "tiny", Machine: "m1", Network: "blue", Image: "kernel=" + kernel + ",initrd=" + initrd}} {
		if _, err := c.CreateVM(ctx, nv, nil, nil); err != nil {
			t.Fatalf("create %s: %v", nv.Name, err)
		}
	}
	known := inventory.KnownHostsPath(c.path)
	if known != c.path+".known_hosts" {
		t.Errorf("KnownHostsPath = %s, want %s.known_hosts", known, c.path)
	}
	sent := map[string]string{}
	for _, m := range ac.machines {
		for vm, k := range m.hostKeys {
			sent[vm] = string(k)
		}
	}
	for _, vm := range []string{"web", "db"} {
		priv := sent[vm]
		pub, err := inventory.VMHostKey(c.path, vm)
		if err != nil || pub == nil {
			t.Fatalf("vm %s: known host key %v, %v", vm, pub, err)
		}
		sentPub, err := helperapi.PrivateKey(priv).PublicKey()
		if err != nil {
			t.Fatalf("vm %s: the machine was sent no usable host key: %v", vm, err)
		}
		if !bytes.Equal(sentPub.Marshal(), pub.Marshal()) || pub.Type() != "ssh-ed25519" {
			t.Errorf("vm %s: known_hosts has %s, the machine was sent the private half of %s", vm, pub.Type(), sentPub.Type())
		}
		if !strings.Contains(priv, "OPENSSH PRIVATE KEY") {
			t.Errorf("vm %s: the request carried no private key", vm)
		}
	}
	if sent["web"] == sent["db"] {
		t.Error("two VMs were given the same host key")
	}
	if sent["tiny"] != "" {
		t.Error("a kernel-boot VM was sent a host key")
	}
	if k, err := inventory.VMHostKey(c.path, "tiny"); k != nil || err != nil {
		t.Errorf("a kernel-boot VM has a known host key: %v, %v", k, err)
	}
	// No private half beside the inventory.
	files, _ := filepath.Glob(c.path + "*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", f)
		}
	}
	b, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "web ssh-ed25519 ") || !strings.HasPrefix(lines[1], "db ssh-ed25519 ") {
		t.Errorf("known_hosts has:\n%s\nwant a line for web, then db", b)
	}
	if fi, err := os.Stat(known); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, %v: want 0600", fi.Mode().Perm(), err)
	}

	if _, err := c.VMAction(ctx, "web", "remove", 0); err != nil {
		t.Fatal(err)
	}
	if k, _ := inventory.VMHostKey(c.path, "web"); k != nil {
		t.Error("vm remove left web's host key in known_hosts")
	}
	if k, _ := inventory.VMHostKey(c.path, "db"); k == nil {
		t.Error("vm remove web dropped db's host key")
	}
}

// SSHTargets gives each VM's login user from its image and the VMs'
// known_hosts; a VM whose host key is unknown is refused by name, or left
// out (and named) when every VM is asked for.
func TestSSHTargets(t *testing.T) {
	ctx := context.Background()
	c, _ := vmCloud(t)
	for _, nv := range []NewVM{web, {Name: "db", Machine: "m1", Network: "blue", Image: "ubuntu-24.04"}} {
		if _, err := c.CreateVM(ctx, nv, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	known := inventory.KnownHostsPath(c.path)
	got, err := c.SSHTargets(ctx, []string{"db", "web"}, listTimeoutForTests)
	if err != nil {
		t.Fatal(err)
	}
	want := []SSHTarget{{Name: "db", User: "ubuntu", KnownHosts: known}, {Name: "web", User: "debian", KnownHosts: known}}
	for i := range got {
		if !got[i].Address.IsValid() {
			t.Errorf("vm %s: no address", got[i].Name)
		}
		got[i].Address = want[i].Address // the allocator's business
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("SSHTargets (-want +got):\n%s", diff)
	}

	if err := inventory.SetVMHostKey(ctx, c.path, "db", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SSHTargets(ctx, []string{"db"}, listTimeoutForTests); !errors.Is(err, ErrNoHostKey) || !strings.Contains(err.Error(), `vm "db"`) {
		t.Errorf("a VM with no known host key: %v, want ErrNoHostKey naming it", err)
	}
	all, err := c.SSHTargets(ctx, nil, listTimeoutForTests)
	if len(all) != 1 || all[0].Name != "web" || !errors.Is(err, ErrNoHostKey) {
		t.Errorf("every VM: %+v, %v; want web, and an error naming db", all, err)
	}
	if _, err := c.SSHTargets(ctx, []string{"nope"}, listTimeoutForTests); err == nil || !strings.Contains(err.Error(), `no vm "nope"`) {
		t.Errorf("an unknown VM: %v", err)
	}
}
